"""The command line (gankit.cli): --help and argument errors answer without importing torch, and one-line errors for
run files a user edited or damaged (resume, sample, eval)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error, snapshot

ROOT = Path(__file__).resolve().parent.parent


def test_every_help_and_argument_error_skips_torch() -> None:
    from gankit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = sorted(sub.choices)
    script = f"""
import sys, time
t = time.perf_counter()
from gankit.cli import main
for argv in [["--help"], *[[c, "--help"] for c in {commands!r}], *[[c, "--bad-flag"] for c in {commands!r}]]:
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc in (0, 2), (argv, rc)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "matplotlib", "PIL", "safetensors"))
print("HEAVY", heavy, "SECONDS", round(time.perf_counter() - t, 2))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY [] "), last
    assert {"train", "sample", "eval", "translate", "sweep", "compare", "report", "export", "list"} <= set(commands)


def test_resume_after_the_optimizer_was_edited(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = run_copy / "config.yaml"
    cfg.write_text(cfg.read_text().replace("name: adam", "name: sgd"))
    before = snapshot(run_copy)
    one_error(capsys, ["train", "--resume", str(run_copy), "--steps", "4"], "optim.name='adam'", "'sgd'", str(cfg))
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("damage", ["meta-string", "meta-list", "no-image-shape", "config-string"])
def test_sample_with_a_damaged_state_json(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    for sj in (run_copy / "checkpoints").glob("*/state.json"):
        s = json.loads(sj.read_text())
        if damage == "meta-string":
            s["meta"] = "oops"
        elif damage == "meta-list":
            s["meta"] = [1, 2]
        elif damage == "no-image-shape":
            del s["meta"]["image_shape"]
        else:
            s["config"] = "oops"
        sj.write_text(json.dumps(s))
    one_error(capsys, ["sample", str(run_copy), "--out", str(tmp_path / "g.png")], str(run_copy))
    assert not (tmp_path / "g.png").exists()


def test_npz_as_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "s.npz", a=np.zeros((4, 16, 16, 1), np.uint8))
    one_error(
        capsys, ["eval", "--samples", str(tmp_path / "s.npz"), "--data", "digits"], "s.npz", ".npz archive", "np.save"
    )
