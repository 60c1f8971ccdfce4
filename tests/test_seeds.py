"""Seeds with spread: `gankit sweep --seeds K` and mean ± std in `gankit compare`."""

from __future__ import annotations

import json

import pytest

from gankit.cli import main
from gankit.compare import compare
from gankit.core.errors import GankitError
from gankit.sweep import add_seeds


def _run(d, seed, fd, lr="0.0002"):
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"seed: {seed}\noptim:\n  lr_g: {lr}\n")
    (d / "metrics.json").write_text(json.dumps({"fd": fd, "precision": 0.5}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "eval/fd": fd * 2}) + "\n")


def test_compare_shows_mean_and_std_over_seeds(tmp_path):
    for i, fd in enumerate([1.0, 2.0, 4.0]):
        _run(tmp_path / f"a{i}", i, fd)
    _run(tmp_path / "b0", 0, 10.0, lr="0.001")  # another config: its own group of one, no spread
    files = compare([str(tmp_path / n) for n in ("a0", "a1", "a2", "b0")], tmp_path / "cmp")
    md = files["summary"].read_text()
    # mean 7/3, sample std sqrt(((1-7/3)^2 + (2-7/3)^2 + (4-7/3)^2) / 2) = 1.528
    assert "## Over seeds" in md and r"2.333 ± 1.5 \(n=3\)" in md and r"4.667 ± 3.1 \(n=3\)" in md
    assert r"optim.lr\_g=0.0002" in md and "| 0, 1, 2 |" in md
    assert "10 ±" not in md  # a single run has no spread
    html = files["report"].read_text()
    assert "Over seeds" in html and "2.333 ± 1.5 (n=3)" in html


def test_no_spread_section_without_seed_groups(tmp_path):
    _run(tmp_path / "a", 0, 1.0)
    _run(tmp_path / "b", 0, 2.0, lr="0.001")
    files = compare([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp")
    assert "Over seeds" not in files["summary"].read_text()


def test_add_seeds_checks():
    assert add_seeds({"optim.name": ["adam"]}, 3, 5) == {"optim.name": ["adam"], "seed": [5, 6, 7]}
    with pytest.raises(GankitError, match="2 or more"):
        add_seeds({}, 1)
    with pytest.raises(GankitError, match="give one of them"):
        add_seeds({"seed": [1, 2]}, 2)


def test_sweep_seeds_trains_each_seed(tmp_path, tiny_overrides, capsys):
    sets = sum((["--set", f"{k}={v}"] for k, v in tiny_overrides.items()), [])
    rc = main(["sweep", "--seeds", "2", "--seed", "7", "--steps", "1", "--out", str(tmp_path / "sw"), *sets])
    assert rc == 0
    runs = json.loads((tmp_path / "sw" / "sweep.json").read_text())["runs"]
    assert [r["overrides"] for r in runs] == [{"seed": 7}, {"seed": 8}] and all(r["status"] == "done" for r in runs)
    rc = main(["compare", str(tmp_path / "sw"), "--out", str(tmp_path / "cmp")])
    assert rc == 0 and "| seed=7, seed=8 |" not in (tmp_path / "cmp" / "summary.md").read_text()
    assert "Over seeds" in (tmp_path / "cmp" / "summary.md").read_text()
