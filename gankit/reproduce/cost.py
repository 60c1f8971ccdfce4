"""What a reproduction cost: CPU time, wall time and the machine's load, per call and per run.

    DIR/cost.json                       one entry per call of `gankit reproduce` that ran something, so a
                                        reproduction resumed three times adds its three calls up
    DIR/runs/<job>/reproduce-cost.json  the CPU and wall seconds that job's training and evaluation took

Why CPU time: on a machine shared with other jobs, wall time measures how busy the others were (report 002's quick
budget took 44 minutes at load 10-19 and would take far less alone), while the CPU seconds the command and its worker
processes spent barely move with the load. Divided by the cores the command used, they estimate the wall time on an
idle machine with that many cores. The estimate is low by the parts that keep only one core busy (planning, training
an evaluation classifier, a last run that one worker finishes while the other has nothing left).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.io import write_json

COST_FILE = "cost.json"
JOB_COST_FILE = "reproduce-cost.json"
LOAD_SAMPLE_SECONDS = 15.0

try:
    import resource
except ImportError:  # pragma: no cover - Windows: no getrusage; worker processes then go uncounted
    resource = None  # type: ignore[assignment]


def cpu_seconds() -> tuple[float, float]:
    """(this process, its ended and waited-for child processes): user + system CPU seconds so far, every thread."""
    if resource is None:  # pragma: no cover
        return time.process_time(), 0.0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def self_cpu_seconds() -> float:
    """This process's user + system CPU seconds so far (every thread)."""
    return cpu_seconds()[0]


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover
        return None


@dataclass
class Stopwatch:
    """CPU (self + children), wall time and load samples from ``start()`` on; ``record()`` says what they were."""

    started: str = ""
    wall0: float = 0.0
    cpu0: tuple[float, float] = (0.0, 0.0)
    loads: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Stopwatch:
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.wall0 = time.monotonic()
        self.cpu0 = cpu_seconds()
        self._sample()
        self._thread = threading.Thread(target=self._sampler, name="gankit-load-sampler", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        v = load_average()
        if v is not None:
            self.loads.append(v)

    def _sampler(self) -> None:
        while not self._stop.wait(LOAD_SAMPLE_SECONDS):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def record(self, **facts: Any) -> dict[str, Any]:
        """This call's figures so far plus ``facts`` (workers, threads, cores used, runs unfinished)."""
        self._sample()
        me, kids = cpu_seconds()
        return {
            "started": self.started,
            "wall_s": round(time.monotonic() - self.wall0, 2),
            "cpu_s": round(me - self.cpu0[0] + kids - self.cpu0[1], 2),
            "cpu_workers_s": round(kids - self.cpu0[1], 2),
            "load_mean": round(sum(self.loads) / len(self.loads), 2) if self.loads else None,
            "load_max": round(max(self.loads), 2) if self.loads else None,
            **facts,
        }


@contextmanager
def job_clock(folder: Path, phase: str) -> Iterator[None]:
    """Add this process's CPU and wall seconds for the block to ``folder/reproduce-cost.json`` under ``phase``
    ("train" or "eval"), also when the block is interrupted (a resumed run adds its second part)."""
    wall0, cpu0 = time.monotonic(), self_cpu_seconds()
    try:
        yield
    finally:
        if folder.is_dir():
            had = read_job_cost(folder)
            had[f"{phase}_cpu_s"] = round(had.get(f"{phase}_cpu_s", 0.0) + self_cpu_seconds() - cpu0, 2)
            had[f"{phase}_wall_s"] = round(had.get(f"{phase}_wall_s", 0.0) + time.monotonic() - wall0, 2)
            write_json(folder / JOB_COST_FILE, had)


def read_job_cost(folder: Path) -> dict[str, float]:
    try:
        got = json.loads((folder / JOB_COST_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in got.items() if isinstance(v, (int, float))} if isinstance(got, dict) else {}


def read_calls(out: Path) -> list[dict[str, Any]]:
    """The calls recorded in DIR/cost.json; a damaged file is kept aside (renamed), not overwritten."""
    p = out / COST_FILE
    if not p.is_file():
        return []
    try:
        calls = json.loads(p.read_text())["calls"]
        if isinstance(calls, list) and all(isinstance(c, dict) for c in calls):
            return calls
    except (OSError, ValueError, KeyError, TypeError):
        pass
    p.rename(p.with_name(f"{COST_FILE}.damaged-{int(time.time())}"))
    return []


def add_call(out: Path, call: dict[str, Any]) -> list[dict[str, Any]]:
    calls = [*read_calls(out), call]
    write_json(out / COST_FILE, {"calls": calls})
    return calls


def summarize(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the calls; the idle estimate adds each call's CPU seconds over the cores it used."""
    cpu = sum(float(c.get("cpu_s", 0.0)) for c in calls)
    wall = sum(float(c.get("wall_s", 0.0)) for c in calls)
    idle = sum(float(c.get("cpu_s", 0.0)) / max(1, int(c.get("cores", 1))) for c in calls)
    loads = [(float(c["wall_s"]), float(c["load_mean"])) for c in calls if c.get("load_mean") is not None]
    weight = sum(w for w, _ in loads)
    return {
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "idle_estimate_s": round(idle, 1),
        "cores": sorted({int(c.get("cores", 1)) for c in calls}),
        "n_calls": len(calls),
        "load_mean": round(sum(w * v for w, v in loads) / weight, 1) if weight > 0 else None,
    }


def describe(summary: dict[str, Any]) -> str:
    """``N CPU-minutes; about M minutes on an idle C-core machine (...)``, the line the command ends with."""
    if not summary["n_calls"]:
        return "no CPU time recorded (every run was already finished)"
    cores = summary["cores"]
    machine = f"an idle {cores[0]}-core machine" if len(cores) == 1 else "an idle machine with those cores"
    load = f" at load {summary['load_mean']:g}" if summary["load_mean"] is not None else ""
    idle = summary["idle_estimate_s"] / 60
    return (
        f"{summary['cpu_s'] / 60:.1f} CPU-minutes; about {idle:.{1 if idle < 10 else 0}f} minutes on {machine} "
        f"(an estimate: CPU time / {'/'.join(map(str, cores))} cores used); {summary['wall_s'] / 60:.1f} minutes "
        f"wall here{load} over {summary['n_calls']} call{'s' if summary['n_calls'] > 1 else ''}"
    )
