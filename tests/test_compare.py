"""`gankit compare` over real and damaged run folders: files written atomically (a full disk keeps the old ones),
damaged sweep.json and run files, and summary.md showing names and values as text."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from helpers import one_error, snapshot

from gankit.cli import main


def test_compare_disk_full_keeps_the_old_files(
    a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gankit.core.io as gio

    cmp = tmp_path / "cmp"
    assert main(["compare", str(a_run), "--out", str(cmp)]) == 0
    before = snapshot(cmp)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gio.os, "fsync", full)
    one_error(
        capsys,
        ["compare", str(a_run), "--out", str(cmp), "--force"],
        str(cmp / "losses.png"),
        "No space left on device",
        "disk full",
    )
    monkeypatch.undo()
    assert snapshot(cmp) == before  # no truncated picture, no temp file left


@pytest.mark.parametrize(
    "sweep",
    [
        '{"runs": 3}',
        '{"runs": ["run"]}',
        '{"runs": [{"dir": 5}]}',
        '{"runs": [{"dir": "../elsewhere"}]}',
        '{"runs": [{"dir": "/etc"}]}',
        "[1]",
        '{"runs": [{"nodir": 1}]}',
        "not json",
    ],
)
def test_compare_over_a_damaged_sweep_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], sweep: str) -> None:
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep.json").write_bytes(sweep.encode())
    one_error(capsys, ["compare", str(tmp_path / "sw"), "--out", str(tmp_path / "c")], "sweep.json is damaged")
    assert not (tmp_path / "c").exists()


def test_compare_and_resume_over_junk_in_run_files(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "metrics.json").write_bytes(b"\xff\xfe not utf-8 \x80")
    with open(run_copy / "metrics.jsonl", "ab") as f:
        f.write(
            b'[1, 2]\n"text"\n3\nnull\n{"step": "ten", "loss/d": 1.0}\n{"step": 2, "loss/d": "high"}\n'
            b'{"step": 2, "loss/g": [1]}\n{"step": 2, "loss/d": NaN}\n{"step": true, "eval/fd": {}}\n\xff\xff\n'
        )
    assert main(["compare", str(run_copy), "--out", str(tmp_path / "c")]) == 0
    assert "metrics.json is damaged" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_copy), "--steps", "3", "--no-progress"]) == 0  # its end plots losses.png
    assert main(["report", str(run_copy), "--no-interpolation"]) == 0


def test_compare_escapes_names_and_values(a_run: Path, tmp_path: Path) -> None:
    evil, newline = tmp_path / "<img src=x onerror=alert(1)>", tmp_path / "a\n# injected [link](http://x)"
    for d, seed in ((evil, '"<b>bold</b>|x"'), (newline, '"line\\n## heading"')):
        shutil.copytree(a_run, d)
        cfg = d / "config.yaml"
        cfg.write_text(cfg.read_text().replace("seed: 0", f"seed: {seed}"))
    assert "seed: " in (evil / "config.yaml").read_text()
    assert main(["compare", str(evil), str(newline), "--out", str(tmp_path / "c")]) == 0
    md = (tmp_path / "c" / "summary.md").read_text()
    assert "<img" not in md and "<b>" not in md and "&lt;img src=x onerror=alert\\(1\\)&gt;" in md
    lines = md.splitlines()
    # compare's own headings only (the two runs differ only by seed, so the over-seeds section is there too)
    assert not [x for x in lines if x.startswith("#") and x not in ("# Comparison", "## Over seeds")], md
    lines = lines[: lines.index("## Over seeds")] if "## Over seeds" in lines else lines
    rows = [x for x in lines if x.startswith("| ")]
    assert len(rows) == 3 and all(len(r.replace("\\|", "").split("|")) == len(rows[0].split("|")) for r in rows), md
