"""Several worker processes on one machine, each with its share of the cores, started, watched and stopped together.

`gankit tune --workers N` runs N Optuna workers and `gankit reproduce --workers N` runs N of a report's runs at once
through :func:`run_workers`. Each worker is a fresh ``spawn`` process (never ``fork``: the parent may already hold
torch's thread pools, which a forked child would inherit half-initialised) in a process group of its own, so a
terminal's Ctrl-C reaches it exactly once, passed on by the parent: a worker's training loop treats a second SIGINT
as "stop now, without a checkpoint", which is what a doubled delivery would look like.

What the parent guarantees:
- threads: each worker uses ``threads`` (default: the usable cores split evenly, at least one each);
- SIGINT/SIGTERM to the parent go to every live worker once; the parent then waits for them to checkpoint and exit;
- a worker that dies (``kill -9``, out of memory) does not stop the others; its exit is reported;
- a worker whose parent died (``kill -9`` of the parent) stops itself with SIGTERM, so no orphan trains on unseen.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ORPHAN_POLL_SECONDS = 1.0


def usable_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS says), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, threads: int = 0) -> int:
    """Threads for each of ``workers`` processes: ``threads`` when given (> 0), else the usable cores split evenly."""
    if threads > 0:
        return threads
    return max(1, usable_cores() // max(1, workers))


@dataclass(frozen=True)
class WorkerExit:
    """How one worker ended: ``exitcode`` 0 finished, > 0 its own exit code, < 0 killed by that signal."""

    index: int
    pid: int | None
    exitcode: int | None

    @property
    def killed(self) -> bool:
        return self.exitcode is not None and self.exitcode < 0

    def describe(self) -> str:
        if self.exitcode is None:
            return f"worker {self.index} did not end"
        if self.exitcode < 0:
            return f"worker {self.index} (pid {self.pid}) was killed by {signal.Signals(-self.exitcode).name}"
        return f"worker {self.index} (pid {self.pid}) exited with code {self.exitcode}"


def _stop_if_orphaned(parent: int) -> None:
    while True:
        time.sleep(ORPHAN_POLL_SECONDS)
        if os.getppid() != parent:  # re-parented: the launching process is gone
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _entry(target: Callable[..., int | None], index: int, threads: int, parent: int, args: tuple[Any, ...]) -> None:
    os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the parent only; it passes the signal on once
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:  # (a Ctrl-C passed on while the worker still imports torch ends it quietly too, not with a traceback)
        import torch
        from tqdm import tqdm

        torch.set_num_threads(threads)
        # tqdm's default lock holds a multiprocessing semaphore, registered with the parent's resource tracker; a
        # worker killed by SIGKILL never releases it, and the tracker then warns of a "leaked semaphore" at the end
        # of the command. A worker's bars are its own, so a thread lock is all they need.
        tqdm.set_lock(threading.RLock())
        threading.Thread(target=_stop_if_orphaned, args=(parent,), daemon=True).start()
        code = target(index, threads, *args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(int(code or 0))


def run_workers(
    n: int,
    target: Callable[..., int | None],
    args: tuple[Any, ...] = (),
    *,
    threads: int = 0,
    tick: Callable[[], None] | None = None,
    tick_seconds: float = 2.0,
) -> tuple[list[WorkerExit], int | None]:
    """Run ``target(index, threads, *args)`` in ``n`` spawned processes and wait for all of them.

    ``target`` must be a module-level function (it is pickled by reference); its return value is the worker's exit
    code. ``tick`` is called about every ``tick_seconds`` while workers run (a progress line). Returns each worker's
    exit and the signal number that stopped the parent (SIGINT/SIGTERM, passed on to the workers), or None.
    """
    per = threads_per_worker(n, threads)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_entry, args=(target, i, per, os.getpid(), args), name=f"gankit-worker-{i}")
        for i in range(n)
    ]
    stopped: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        stopped.append(signum)
        for p in procs:
            if p.pid is not None and p.is_alive():
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:
                    pass

    old = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            old[s] = signal.signal(s, forward)
        except ValueError:  # not the main thread: the caller handles signals
            pass
    try:
        for p in procs:
            p.start()
            if stopped and p.pid is not None:  # a signal came while the workers were starting: this one gets it too
                os.kill(p.pid, stopped[0])
        while any(p.is_alive() for p in procs):
            deadline = time.monotonic() + tick_seconds
            for p in procs:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
            if tick is not None:
                tick()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:  # an exception in tick(): do not leave workers behind
            if p.is_alive():
                forward(signal.SIGTERM, None)
                p.join()
    return [WorkerExit(i, p.pid, p.exitcode) for i, p in enumerate(procs)], (stopped[0] if stopped else None)
