"""gankit/workers.py: worker processes with split threads, a killed worker reported, signals passed on once."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from gankit.workers import run_workers, threads_per_worker


def _record(index: int, threads: int, folder: str) -> int:
    import torch

    Path(folder, f"w{index}").write_text(f"{threads} {torch.get_num_threads()} {os.getpgid(0) == os.getpid()}")
    if index == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # a worker lost mid-work must not take the others down
    return 0


def _wait_for_signals(index: int, threads: int, folder: str) -> int:
    got: list[int] = []
    signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    Path(folder, f"ready{index}").write_text("")
    t0 = time.monotonic()
    while not got and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    time.sleep(0.5)  # a doubled delivery would arrive in this window
    Path(folder, f"got{index}").write_text(str(len(got)))
    return 130 if got else 0


def test_threads_split_between_workers() -> None:
    assert threads_per_worker(2, 3) == 3
    assert threads_per_worker(1) >= 1
    assert threads_per_worker(10_000) == 1


def test_workers_get_their_threads_and_a_killed_worker_is_reported(tmp_path: Path) -> None:
    exits, stopped = run_workers(2, _record, (str(tmp_path),), threads=1, tick_seconds=0.2)
    assert stopped is None
    assert (tmp_path / "w0").read_text() == "1 1 True"  # its own process group, one thread
    assert exits[0].exitcode == 0 and not exits[0].killed
    assert exits[1].killed and "SIGKILL" in exits[1].describe()


def test_sigint_to_the_parent_reaches_each_worker_once(tmp_path: Path) -> None:
    def interrupt_when_ready() -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            if (tmp_path / "ready0").exists() and (tmp_path / "ready1").exists():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    threading.Thread(target=interrupt_when_ready, daemon=True).start()
    exits, stopped = run_workers(2, _wait_for_signals, (str(tmp_path),), threads=1, tick_seconds=0.2)
    assert stopped == signal.SIGINT
    assert [(tmp_path / f"got{i}").read_text() for i in range(2)] == ["1", "1"]
    assert [e.exitcode for e in exits] == [130, 130]


def _bar_then_killed(index: int, threads: int) -> int:
    from tqdm import tqdm

    tqdm(total=1, disable=True).close()  # a progress bar, as every training run makes one
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


KILLED = """
import sys
sys.path.insert(0, sys.argv[1])
from test_workers import _bar_then_killed
from gankit.workers import run_workers
exits, _ = run_workers(1, _bar_then_killed)
print(exits[0].describe())
"""


def test_a_killed_worker_leaves_no_leaked_semaphore_warning() -> None:
    """A `kill -9` of a worker that drew a progress bar: the command's stderr says nothing of leaked semaphores
    (tqdm's default lock is a multiprocessing semaphore that the killed process never releases)."""
    import subprocess
    import sys

    here = str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", KILLED, here], capture_output=True, text=True, timeout=120, cwd=here)
    assert out.returncode == 0, out.stderr
    assert "killed by SIGKILL" in out.stdout
    assert "leaked" not in out.stderr and "resource_tracker" not in out.stderr, out.stderr
