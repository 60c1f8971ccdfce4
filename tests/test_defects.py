"""Issue #14's remaining cases, each by its class: outputs written atomically and never over an existing file without
--force, one writer per run folder, one-line errors for damaged run files, escaped summaries, a bounded progress.gif,
and a command line that answers --help without importing torch."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gankit.cli import main
from gankit.core.errors import GankitError
from gankit.training import checkpoint
from gankit.training.rundir import RunDir

TINY = ["--set", "data.image_size=16", "--set", "model.g_channels=8", "--set", "model.d_channels=8",
        "--set", "model.z_dim=8", "--set", "train.threads=1", "--set", "train.batch_size=4", "--set", "data.limit=16",
        "--no-progress"]
ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="module")
def a_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("defects") / "run"
    assert main(["train", "--out", str(run), "--steps", "2", *TINY]) == 0
    return run


@pytest.fixture
def run_copy(a_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(a_run, run)
    return run


# ---------------------------------------------------------------------------------------------------------------------
# 4. one overwrite rule: an existing output file is replaced only with --force


def _existing(path: Path, text: str = "the user's own file") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["sample-png", "sample-npy", "interpolate", "eval-out", "eval-samples-default",
                                  "translate", "report-out", "export", "compare"])
def test_outputs_are_not_replaced_without_force(a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                case: str) -> None:
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
        "translate": (tmp_path / "t" / "photo.png", ["translate", str(a_run), str(photo), "--out", str(tmp_path / "t")]),
        "report-out": (tmp_path / "r.html", ["report", str(a_run), "--out", str(tmp_path / "r.html")]),
        "export": (tmp_path / "g.pt", ["export", str(a_run), "--format", "torchscript", "--out", str(tmp_path / "g.pt")]),
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


# ---------------------------------------------------------------------------------------------------------------------
# 3. compare writes its files atomically; a full disk names the file and keeps the old one


def test_compare_disk_full_keeps_the_old_files(a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import gankit.core.io as gio

    cmp = tmp_path / "cmp"
    assert main(["compare", str(a_run), "--out", str(cmp)]) == 0
    before = snapshot(cmp)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gio.os, "fsync", full)
    one_error(capsys, ["compare", str(a_run), "--out", str(cmp), "--force"], str(cmp / "losses.png"),
              "No space left on device", "disk full")
    monkeypatch.undo()
    assert snapshot(cmp) == before  # no truncated picture, no temp file left


def test_no_direct_writes_of_outputs_in_the_package() -> None:
    """Every file gankit writes for a user goes through gankit.core.io (temp file + rename). Writes straight to a
    final path (savefig(path), Image.save(path), write_text, open(..., "w")) are allowed only into a private temp
    folder that is renamed into place as a whole (caches) or for the append-only metrics log."""
    import re

    allowed = {"core/io.py", "data/memmap.py", "metrics/features.py", "training/checkpoint.py", "training/rundir.py"}
    pattern = re.compile(r"savefig\((?!buf)|\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wa]b?['\"]|"
                         r"\b(sheet|img|im|image|fig)\.save\((?!buf)")
    bad = []
    for f in sorted((ROOT / "gankit").rglob("*.py")):
        rel = f.relative_to(ROOT / "gankit").as_posix()
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if pattern.search(line) and rel not in allowed:
                bad.append(f"{rel}:{i}: {line.strip()}")
    assert not bad, bad


# ---------------------------------------------------------------------------------------------------------------------
# 6. one writer per run folder


@pytest.fixture
def live_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p.pid
    p.kill()
    p.wait()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _hold(run: Path, pid: int, host: str | None = None) -> bytes:
    raw = json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2024-01-01T00:00:00"}).encode()
    (run / ".lock").write_bytes(raw)
    return raw


def test_a_second_train_on_a_locked_run_is_refused(run_copy: Path, live_pid: int,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _hold(run_copy, live_pid)
    before = snapshot(run_copy)
    one_error(capsys, ["train", "--resume", str(run_copy), "--steps", "4"], "in use by another gankit train",
              f"PID {live_pid}", socket.gethostname(), str(run_copy / ".lock"))
    assert snapshot(run_copy) == before  # nothing written, the holder's lock kept


def test_a_lock_from_another_host_is_never_guessed_stale(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _hold(run_copy, _dead_pid(), host="some-other-machine")
    one_error(capsys, ["train", "--resume", str(run_copy), "--steps", "3"], "on host some-other-machine")


def test_a_stale_lock_is_taken_over_and_released(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _hold(run_copy, _dead_pid())
    assert main(["train", "--resume", str(run_copy), "--steps", "3", "--no-progress"]) == 0
    assert "took over the lock" in capsys.readouterr().err
    assert not (run_copy / ".lock").exists()


def test_lock_in_process(tmp_path: Path) -> None:
    """Two writers in one process conflict too; the loser's close() leaves the winner's lock alone; a new folder
    that stayed empty is removed again."""
    first, second = RunDir(tmp_path / "a" / "run", rank=0), RunDir(tmp_path / "a" / "run", rank=0)
    first.lock()
    with pytest.raises(GankitError, match=f"PID {os.getpid()}"):
        second.lock()
    second.close()
    assert (tmp_path / "a" / "run" / ".lock").is_file()
    first.close()
    assert not (tmp_path / "a").exists()
    RunDir(tmp_path / "b", rank=1).lock()  # other ranks never write, never lock
    assert not (tmp_path / "b").exists()


def test_tidy_never_touches_a_live_process_files(run_copy: Path, live_pid: int) -> None:
    ck = run_copy / "checkpoints"
    live = ck / f".tmp-step-0000009-{live_pid}"
    live.mkdir()
    (live / "g.safetensors").write_bytes(b"being written")
    live_part = ck / f".latest.{live_pid}.abc.part"
    live_part.write_bytes(b"x")
    dead = ck / f".tmp-step-0000008-{_dead_pid()}"
    dead.mkdir()
    checkpoint.prune(ck, keep_last=1, protect={"final"})
    assert (live / "g.safetensors").read_bytes() == b"being written" and live_part.exists()
    assert not dead.exists()


# ---------------------------------------------------------------------------------------------------------------------
# 10. one-line errors for damaged run files


def test_resume_after_the_optimizer_was_edited(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = run_copy / "config.yaml"
    cfg.write_text(cfg.read_text().replace("name: adam", "name: sgd"))
    before = snapshot(run_copy)
    one_error(capsys, ["train", "--resume", str(run_copy), "--steps", "4"], "optim.name='adam'", "'sgd'",
              str(cfg))
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("damage", ["meta-string", "meta-list", "no-image-shape", "config-string"])
def test_sample_with_a_damaged_state_json(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          damage: str) -> None:
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
    one_error(capsys, ["eval", "--samples", str(tmp_path / "s.npz"), "--data", "digits"], "s.npz", ".npz archive",
              "np.save")


@pytest.mark.parametrize("sweep", ['{"runs": 3}', '{"runs": ["run"]}', '{"runs": [{"dir": 5}]}',
                                   '{"runs": [{"dir": "../elsewhere"}]}', '{"runs": [{"dir": "/etc"}]}', '[1]',
                                   '{"runs": [{"nodir": 1}]}', "not json"])
def test_compare_over_a_damaged_sweep_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], sweep: str) -> None:
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep.json").write_bytes(sweep.encode())
    one_error(capsys, ["compare", str(tmp_path / "sw"), "--out", str(tmp_path / "c")], "sweep.json is damaged")
    assert not (tmp_path / "c").exists()


def test_compare_and_resume_over_junk_in_run_files(run_copy: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (run_copy / "metrics.json").write_bytes(b"\xff\xfe not utf-8 \x80")
    with open(run_copy / "metrics.jsonl", "ab") as f:
        f.write(b'[1, 2]\n"text"\n3\nnull\n{"step": "ten", "loss/d": 1.0}\n{"step": 2, "loss/d": "high"}\n'
                b'{"step": 2, "loss/g": [1]}\n{"step": 2, "loss/d": NaN}\n{"step": true, "eval/fd": {}}\n\xff\xff\n')
    assert main(["compare", str(run_copy), "--out", str(tmp_path / "c")]) == 0
    assert "metrics.json is damaged" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_copy), "--steps", "3", "--no-progress"]) == 0  # its end plots losses.png
    assert main(["report", str(run_copy), "--no-interpolation"]) == 0


# ---------------------------------------------------------------------------------------------------------------------
# 11. compare's summary.md shows names and values as text


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
    lines = lines[:lines.index("## Over seeds")] if "## Over seeds" in lines else lines
    rows = [x for x in lines if x.startswith("| ")]
    assert len(rows) == 3 and all(len(r.replace("\\|", "").split("|")) == len(rows[0].split("|")) for r in rows), md


# ---------------------------------------------------------------------------------------------------------------------
# 14. progress.gif stays small however long the run trained


def test_progress_gif_is_bounded(tmp_path: Path) -> None:
    import io

    import torch

    from gankit.viz import GIF_FRAMES, gif_bytes, grid_png

    # Noise grids are the worst case for GIF compression; 6 different grids named as 200 frames. A bound of 800 kB
    # for these 276-px grids plays the part of the default 3 MB for 530-px ones (64 images of 64x64), 3.7x the pixels.
    g = torch.Generator().manual_seed(0)
    files = []
    for i in range(6):
        f = tmp_path / f"g{i}.png"
        f.write_bytes(grid_png(torch.rand(16, 3, 32, 32, generator=g) * 2 - 1))
        files.append(f)
    frames = [files[i % 6] for i in range(200)]
    data = gif_bytes(frames, max_bytes=800_000)
    assert data is not None and len(data) <= 800_000
    with Image.open(io.BytesIO(data)) as im, Image.open(files[0]) as full:
        assert im.n_frames == GIF_FRAMES
        assert full.width // 4 < im.width < full.width  # shrunk (noise: the most), not to a thumbnail
    assert gif_bytes([]) is None
    with Image.open(io.BytesIO(gif_bytes(files[:3]))) as im, Image.open(files[0]) as full:
        assert im.size == full.size and im.n_frames == 3  # a short run keeps its frames whole


# ---------------------------------------------------------------------------------------------------------------------
# 15. --help and argument errors answer without importing torch


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


# ---------------------------------------------------------------------------------------------------------------------
# 16. sweep takes the same data flags as train


def test_sweep_takes_the_data_flags() -> None:
    from gankit.cli import build_parser
    from gankit.cli.common import overrides

    argv = ["--data", "mnist", "--data-dir", "some/where", "--split", "test", "--steps", "5"]
    for cmd in (["sweep", "--out", "s"], ["train"]):
        args = build_parser().parse_args([*cmd, *argv])
        over = overrides(args)
        assert (over["data.name"], over["data.dir"], over["data.split"], over["train.steps"]) == \
            ("mnist", "some/where", "test", 5)
