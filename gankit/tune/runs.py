"""A fixed list of ordinary runs trained on N worker processes: `gankit sweep` trains its grid with it, and
`gankit tune --best-seeds` the best trial's recipe on more seeds.

Every run is a folder ``OUT/<name>`` trained from a config file and dotted overrides. Workers (gankit.workers: spawned
processes with their share of the threads, Ctrl-C passed on once) walk the list in order and take each unfinished run
by a claim lock in ``OUT/.claims/<name>`` (gankit.training.rundir.RunDir's lock: a claim whose process is gone is taken
over), so two workers, or two commands on one folder, never train the same run. A finished run (``summary.json``) is
skipped; an unfinished one with a checkpoint is continued from it. A worker that dies (``kill -9``, out of memory)
leaves its run claimed by a dead process: a new round of workers continues it, up to ``ROUNDS`` rounds per call, and
the same command later continues whatever is left.

What a run ended as goes to an optional ledger (a JSON file with a ``runs`` list of entries keyed by ``name``, such as
a sweep's sweep.json), written under a file lock because several workers report at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import DivergedError, GankitError, Interrupted
from ..core.io import write_json

CLAIMS = ".claims"
ROUNDS = 3  # a round after a worker died continues its run; a run that kills its worker every time stops after this


@dataclass(frozen=True)
class PlannedRun:
    """One run of the list: its folder name under the list's folder, its config file (None: the defaults) and the
    dotted overrides layered on it (``train.threads`` is set by the worker that trains it)."""

    name: str
    config: str | None
    overrides: dict[str, Any] = field(default_factory=dict)


def finished(folder: Path) -> bool:
    """A run that reached the end of its budget (or was stopped cleanly by its caller) wrote summary.json."""
    return (folder / "summary.json").is_file()


def outcome(folder: Path) -> dict[str, Any]:
    """A finished run's step, epoch and stopped_by, read back from its summary.json; the keys that file lacks or holds
    damaged are left out."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(summary, dict):
        return {}
    kinds = {"step": int, "epoch": (int, float), "stopped_by": str}
    return {
        k: summary[k]
        for k, kind in kinds.items()
        if isinstance(summary.get(k), kind) and not isinstance(summary.get(k), bool)
    }


def train_in(cfg: Any, folder: Path, on_scores: Any = None) -> Any:
    """Train ``cfg`` into ``folder``: continue its newest checkpoint when it has one, else start a new run there.
    (A trial, a sweep's run and a seed run are all trained through this.)"""
    from ..training.checkpoint import candidates
    from ..training.loop import train

    resume = folder.is_dir() and bool(candidates(folder / "checkpoints"))
    return train(cfg, out=None if resume else folder, resume=folder if resume else None, on_scores=on_scores)


# ---------------------------------------------------------------------------------------------------------------------
# the ledger


@contextmanager
def _locked(ledger: Path) -> Iterator[None]:
    # flock on the ledger's folder: it leaves no lock file behind (the ledger itself is replaced on every write, so
    # a lock on its inode would not hold), and the kernel releases it when a holder dies, so none goes stale.
    fd = os.open(ledger.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (closing releases the lock)


def read_ledger(ledger: Path) -> dict[str, Any]:
    """The ledger's data (``{}`` when there is none); a damaged one is a one-line GankitError."""
    if not ledger.exists():
        return {}
    try:
        data = json.loads(ledger.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(r["name"], str) for r in data.get("runs", [])):
            raise TypeError
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise GankitError(f"{ledger} is damaged; remove it (the run folders are kept) and run again") from None
    return data


def update_ledger(ledger: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read the ledger, apply ``change`` to its data and write it back, with no other process in between."""
    with _locked(ledger):
        data = read_ledger(ledger)
        change(data)
        write_json(ledger, data)
    return data


def record(ledger: Path | None, name: str, **fields: Any) -> None:
    """Set ``fields`` on run ``name``'s ledger entry (dropping those given as None)."""
    if ledger is None:
        return

    def change(data: dict[str, Any]) -> None:
        for entry in data.get("runs", []):
            if entry["name"] == name:
                entry.update({k: v for k, v in fields.items() if v is not None})
                for k in [k for k, v in fields.items() if v is None]:
                    entry.pop(k, None)

    update_ledger(ledger, change)


# ---------------------------------------------------------------------------------------------------------------------
# the workers


def walk(
    out: Path,
    runs: list[PlannedRun],
    threads: int,
    ledger: Path | None,
    say: Callable[[str], None],
    skip: frozenset[str] = frozenset(),
) -> None:
    """Train every run of ``runs`` that is not finished, not named in ``skip`` and not held by another process, one
    after another, in this process. ``threads`` > 0 sets each run's train.threads (this worker's share). Raises
    Interrupted (after the run saved its checkpoint) and GankitError (bad input a run met); a diverged run is recorded
    and the walk goes on."""
    from ..config.layering import resolve
    from ..training.rundir import RunDir

    for i, run in enumerate(runs):
        folder = out / run.name
        if run.name in skip or finished(folder):
            continue
        claim = RunDir(out / CLAIMS / run.name, rank=0)
        try:
            claim.lock(say=lambda m: None)
        except GankitError:
            continue  # another worker has it
        try:
            if finished(folder):  # it finished between the look and the claim
                continue
            tag = f"[{i + 1}/{len(runs)}] {run.name}"
            say(f"{tag}: {'resuming' if (folder / 'config.yaml').is_file() else 'training'}")
            threads_key = {"train.threads": threads} if threads > 0 else {}
            cfg = resolve(file=run.config, overrides={**run.overrides, **threads_key})
            record(ledger, run.name, status="running", error=None)
            try:
                done = train_in(cfg, folder)
            except DivergedError as e:
                record(ledger, run.name, status="diverged", error=str(e))
                say(f"{tag}: {e}")
                continue
            except BaseException:
                record(ledger, run.name, status="interrupted")
                raise
            record(
                ledger, run.name, status="done", step=done.step, epoch=round(done.epoch, 4), stopped_by=done.stopped_by
            )
        finally:
            claim.close()


def _worker(index: int, threads: int, out: str, runs_json: str, ledger: str, label: str, skip: list[str]) -> int:
    """One spawned worker (module level: spawned processes import it by name); its exit code says how it ended."""
    runs = [PlannedRun(**r) for r in json.loads(runs_json)]

    def say(msg: str) -> None:
        print(f"{label}[{index}]: {msg}", file=sys.stderr, flush=True)

    try:
        walk(Path(out), runs, threads, Path(ledger) if ledger else None, say, frozenset(skip))
    except Interrupted as e:  # the run's checkpoint is written; the same command continues it
        return e.exit_code
    except GankitError as e:
        print(f"gankit: error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return e.exit_code
    return 0


@dataclass
class Ended:
    """How a call of :func:`train_runs` ended: the signal that stopped it (or None), and each dead worker's line."""

    stopped: int | None = None
    bad_input: bool = False  # a worker met bad input (exit 2) and said which in one line
    deaths: list[str] = field(default_factory=list)


def train_runs(
    out: Path,
    runs: list[PlannedRun],
    *,
    workers: int,
    threads: int = 0,
    ledger: Path | None = None,
    skip: frozenset[str] = frozenset(),
    spawn: bool = False,
    label: str = "runs",
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> Ended:
    """Train the unfinished runs of ``runs`` (but those named in ``skip``) into ``out/<name>``: in this process when
    ``workers`` <= 1 and not ``spawn`` (exceptions propagate as from train()), else in ``workers`` spawned processes,
    each with ``threads`` threads (0: the usable cores split between them)."""
    try:
        if workers <= 1 and not spawn:
            walk(out, runs, threads, ledger, say, skip)
            return Ended()
        return _rounds(out, runs, workers, threads, ledger, skip, label, say)
    finally:
        _tidy_claims(out)


def _rounds(
    out: Path,
    runs: list[PlannedRun],
    workers: int,
    threads: int,
    ledger: Path | None,
    skip: frozenset[str],
    label: str,
    say: Callable[[str], None],
) -> Ended:
    from ..workers import run_workers

    ended = Ended()
    runs_json = json.dumps([asdict(r) for r in runs])
    for _ in range(ROUNDS):
        if ledger is not None:  # a run that diverged in an earlier round is that run's result, not a lost worker's
            diverged = {r["name"] for r in read_ledger(ledger).get("runs", []) if r.get("status") == "diverged"}
            skip = skip | diverged
        todo = [r for r in runs if r.name not in skip and not finished(out / r.name)]
        if not todo:
            break
        n = max(1, min(workers, len(todo)))
        args = (str(out), runs_json, str(ledger or ""), label, sorted(skip))
        exits, ended.stopped = run_workers(n, _worker, args, threads=threads)
        ended.bad_input = ended.bad_input or any(e.exitcode == 2 for e in exits)
        killed = [e for e in exits if e.killed and not (ended.stopped and -e.exitcode == ended.stopped)]
        for e in killed:
            ended.deaths.append(e.describe())
            say(f"{label}: {e.describe()}; its run continues from its last checkpoint")
        if ended.stopped or ended.bad_input or not killed:
            break
    return ended


def _tidy_claims(out: Path) -> None:
    """Remove the claims folder once no claim is held: a claim taken over from a dead worker leaves its empty folder,
    and a sweep folder should hold runs and sweep.json only."""
    claims = out / CLAIMS
    if not claims.is_dir():
        return
    for d in claims.iterdir():
        try:
            d.rmdir()  # only an empty one: a claim that is held has its lock file inside
        except OSError:
            pass
    try:
        claims.rmdir()
    except OSError:
        pass
