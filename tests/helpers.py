"""Small helpers shared by test files: a tiny DCGAN and a tiny pix2pix as command-line flags or overrides, the check
of gankit's one-line errors, and a byte snapshot of a folder. Fixtures built on them are in conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gankit.cli import main

TINY = [
    "--set",
    "data.image_size=16",
    "--set",
    "model.g_channels=8",
    "--set",
    "model.d_channels=8",
    "--set",
    "model.z_dim=8",
    "--set",
    "train.threads=1",
    "--set",
    "train.batch_size=4",
    "--set",
    "data.limit=16",
    "--no-progress",
]
PIX2PIX = {
    "model.name": "pix2pix",
    "data.image_size": 32,
    "data.limit": 12,
    "model.g_channels": 8,
    "model.d_channels": 8,
    "train.batch_size": 4,
    "train.log_every": 2,
    "train.threads": 1,
    "train.progress": False,
}


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    """exit code 2 and a one-line `gankit: error:` (the last stderr line) holding every needle, no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert lines and lines[-1].startswith("gankit: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines[-1]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
