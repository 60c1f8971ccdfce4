"""gankit.core.io's rules seen from the command line: an existing output file is replaced only with --force, gankit's
own files in a run folder are refreshed, and every file gankit writes for a user goes through an atomic write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import one_error
from PIL import Image

from gankit.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _existing(path: Path, text: str = "the user's own file") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "case",
    [
        "sample-png",
        "sample-npy",
        "interpolate",
        "eval-out",
        "eval-samples-default",
        "translate",
        "report-out",
        "export",
        "compare",
    ],
)
def test_outputs_are_not_replaced_without_force(
    a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    npy = tmp_path / "s.npy"
    np.save(npy, np.zeros((4, 16, 16, 1), np.uint8))
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.new("RGB", (16, 16)).save(photo)
    target, argv = {
        "sample-png": (tmp_path / "g.png", ["sample", str(a_run), "--out", str(tmp_path / "g.png")]),
        "sample-npy": (tmp_path / "g.npy", ["sample", str(a_run), "--out", str(tmp_path / "g.npy")]),
        "interpolate": (tmp_path / "i.png", ["interpolate", str(a_run), "--out", str(tmp_path / "i.png")]),
        "eval-out": (tmp_path / "m.json", ["eval", str(a_run), "--out", str(tmp_path / "m.json")]),
        "eval-samples-default": (tmp_path / "s.metrics.json", ["eval", "--samples", str(npy), "--data", "digits"]),
        "translate": (
            tmp_path / "t" / "photo.png",
            ["translate", str(a_run), str(photo), "--out", str(tmp_path / "t")],
        ),
        "report-out": (tmp_path / "r.html", ["report", str(a_run), "--out", str(tmp_path / "r.html")]),
        "export": (
            tmp_path / "g.pt",
            ["export", str(a_run), "--format", "torchscript", "--out", str(tmp_path / "g.pt")],
        ),
        "compare": (tmp_path / "cmp" / "losses.png", ["compare", str(a_run), "--out", str(tmp_path / "cmp")]),
    }[case]
    _existing(target)
    one_error(capsys, argv, str(target), "already exists", "--force")
    assert target.read_text() == "the user's own file"
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_force_replaces_and_run_files_are_refreshed(a_run: Path, run_copy: Path, tmp_path: Path) -> None:
    out = _existing(tmp_path / "g.png")
    assert main(["sample", str(a_run), "--n", "4", "--out", str(out), "--force"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    cmp = tmp_path / "cmp"
    assert main(["compare", str(a_run), "--out", str(cmp)]) == 0
    assert main(["compare", str(a_run), "--out", str(cmp), "--force"]) == 0
    # gankit's own files in a run folder are refreshed without --force
    (run_copy / "report.html").write_text("old")
    assert main(["report", str(run_copy), "--no-interpolation"]) == 0
    assert (run_copy / "report.html").read_text() != "old"


def test_no_direct_writes_of_outputs_in_the_package() -> None:
    """Every file gankit writes for a user goes through gankit.core.io (temp file + rename). Writes straight to a
    final path (savefig(path), Image.save(path), write_text, open(..., "w")) are allowed only into a private temp
    folder that is renamed into place as a whole (caches) or for the append-only metrics log."""
    import re

    allowed = {
        "core/io.py",
        "data/memmap.py",
        "metrics/features/classifier.py",
        "training/checkpoint.py",
        "training/rundir.py",
    }
    pattern = re.compile(
        r"savefig\((?!buf)|\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wa]b?['\"]|"
        r"\b(sheet|img|im|image|fig)\.save\((?!buf)"
    )
    bad = []
    for f in sorted((ROOT / "gankit").rglob("*.py")):
        rel = f.relative_to(ROOT / "gankit").as_posix()
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if pattern.search(line) and rel not in allowed:
                bad.append(f"{rel}:{i}: {line.strip()}")
    assert not bad, bad
