# `make run`: set up .venv with pinned dependencies and train the default model on the embedded digits data.
# `make test`: same set-up, then the whole test suite (tests/ and benchmarks/tests/, pyproject's testpaths).
# `make lint`: ruff's checks and `ruff format --check`; `make lint-rules`: the checks alone; `make format`: reformat
# (all configured in pyproject.toml).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A quiet install: no "new pip available" notice, no prompts. (The pages of setuptools licence warnings came from
# `license = {text = ...}` in pyproject.toml, now an SPDX string.)
PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 $(BIN)/pip
PY_PATHS := gankit tests benchmarks conftest.py  # what ruff checks and formats

.PHONY: run test lint lint-rules format bench clean

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt -r requirements-test.txt
	PYTHONWARNINGS=ignore $(PIP) install --quiet --no-deps --no-build-isolation -e .  # no "editable install" banner
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gankit train

test: $(STAMP)
	$(BIN)/python -m pytest

lint: lint-rules
	$(BIN)/ruff format --check $(PY_PATHS)

lint-rules: $(STAMP)
	$(BIN)/ruff check $(PY_PATHS)

format: $(STAMP)
	$(BIN)/ruff format $(PY_PATHS)

bench: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
