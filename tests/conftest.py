"""Fixtures of the unit suite. What every test of the repository shares (the private cache, one thread, the machine in
the report) is in the repository's conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import TINY

from gankit.cli import main


@pytest.fixture(scope="session")
def a_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run of the tiny DCGAN, trained through the command line; tests that change it take run_copy."""
    run = tmp_path_factory.mktemp("cli-run") / "run"
    assert main(["train", "--out", str(run), "--steps", "2", *TINY]) == 0
    return run


@pytest.fixture
def run_copy(a_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(a_run, run)
    return run


@pytest.fixture
def tiny_overrides() -> dict:
    """A DCGAN small enough that a step takes milliseconds."""
    return {
        "data.limit": 128,
        "data.image_size": 16,
        "model.g_channels": 8,
        "model.d_channels": 8,
        "model.z_dim": 8,
        "train.batch_size": 16,
        "train.progress": False,
        "train.log_every": 2,
        "train.threads": 1,
    }
