"""One writer per run folder (gankit.training.rundir): a second `gankit train` on a locked run is refused, a lock from
another host is never guessed stale, a dead process's lock is taken over, and tidying never touches a live process's
files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_error, snapshot

from gankit.cli import main
from gankit.core.errors import GankitError
from gankit.training import checkpoint
from gankit.training.rundir import RunDir


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


def test_a_second_train_on_a_locked_run_is_refused(
    run_copy: Path, live_pid: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _hold(run_copy, live_pid)
    before = snapshot(run_copy)
    one_error(
        capsys,
        ["train", "--resume", str(run_copy), "--steps", "4"],
        "in use by another gankit train",
        f"PID {live_pid}",
        socket.gethostname(),
        str(run_copy / ".lock"),
    )
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
