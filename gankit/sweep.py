"""Sweeps: a grid of runs, on one or more worker processes, resumable. A thin front to gankit.tune's machinery.

``--grid KEY=V1,V2`` is the choice ``KEY: choice(V1, V2)`` of a tune space, and the sweep trains the points that
`gankit tune --sampler grid` walks (gankit.tune.space.grid_of / grid_points), in order, first key slowest, on the
runs' workers of gankit.tune.runs (``--workers N``: N processes, the threads split between them). What a sweep keeps
of its own is what a grid of runs needs and a search does not: no score (so no held-out reference and no Optuna
study: a sweep needs neither the `tune` extra nor a metric), run folders named by their overrides
(``optim.name=adam,model.z_dim=10``), grid values that may be YAML lists, and several config files as one more axis
(their file names name the runs: report 001's optimizer comparison is five configs with their own learning rates).

A sweep folder holds the run folders and ``sweep.json``: the config(s), the grid and every run's overrides and status.
Re-running the same sweep skips finished runs (``summary.json`` present) and continues an interrupted one from its last
checkpoint, so a sweep survives Ctrl-C, a killed worker and reboots.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config.schema import fmt_value, resume_change
from .core.errors import GankitError
from .tune.runs import PlannedRun, finished, outcome, read_ledger, train_runs, update_ledger
from .tune.space import choice_of, grid_points, split_args

SWEEP_FILE = "sweep.json"

# ---------------------------------------------------------------------------------------------------------------------
# grid


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["optim.name=adam,sgd", "model.z_dim=10,100"]`` -> ``{"optim.name": ["adam", "sgd"], "model.z_dim": [10, 100]}``

    Each ``KEY=V1,V2`` is read as the tune space's ``KEY: choice(V1, V2)`` (values as ``--set`` reads them; commas
    inside brackets or quotes do not split), except that a value may be a YAML list (``model.g_hidden=[64,64],[128]``);
    a malformed spec is a one-line GankitError."""

    grid: dict[str, list[Any]] = {}
    for spec in specs:
        if "=" not in spec:
            raise GankitError(f"--grid {spec!r}: expected KEY=V1,V2,..., e.g. --grid optim.name=adam,sgd")
        key, raw = (s.strip() for s in spec.split("=", 1))
        if not key:
            raise GankitError(f"--grid {spec!r}: the key is empty; e.g. --grid model.z_dim=10,100")
        if key in grid:
            raise GankitError(f"--grid {key} is given twice; put all its values in one --grid {key}=V1,V2")
        grid[key] = choice_of(key, split_args(raw), f"--grid {spec!r}", scalars=False).grid_values(key)
    return grid


def add_seeds(grid: dict[str, list[Any]], seeds: int, first: int = 0) -> dict[str, list[Any]]:
    """The grid with a last (fastest) axis ``seed`` = first .. first + seeds - 1: every point trained on ``seeds``
    seeds, so `gankit compare` can show each metric's mean and spread over them."""
    if seeds < 2:
        raise GankitError(f"--seeds {seeds}: give 2 or more seeds (a spread needs at least two runs)")
    if "seed" in grid:
        raise GankitError("--seeds and --grid seed=... both set the seeds; give one of them")
    return {**grid, "seed": list(range(first, first + seeds))}


def run_name(point: dict[str, Any]) -> str:
    """A safe folder name for a grid point: ``optim.name=adam,model.z_dim=10`` (odd characters become '_')."""
    text = ",".join(f"{k}={fmt_value(v)}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:200] or "run"


# ---------------------------------------------------------------------------------------------------------------------
# sweep


def config_files(configs: list[str] | str | Path | None) -> list[str | None]:
    """The config file axis: one file, several, or [None] for the built-in defaults."""
    files = [configs] if configs is None or isinstance(configs, (str, Path)) else list(configs)
    return [str(f) if f else None for f in files] or [None]


def plan(configs: list[str] | str | None, grid: dict[str, list[Any]], base: dict[str, Any]) -> list[PlannedRun]:
    """Every (config file, grid point) pair as a run, named by its file's stem (when there are several) and its
    point; numbered ``000-`` ... when two names would be the same."""
    files = config_files(configs)
    if not grid and len(files) < 2:
        raise GankitError("sweep needs a --grid KEY=V1,V2 (e.g. --grid optim.name=adam,sgd) or two or more configs")
    overlap = sorted(set(base) & set(grid))
    if overlap:
        raise GankitError(f"{overlap[0]} is both a --grid key and a --set/flag override; give it in one place")
    pairs = [(f, p) for f in files for p in grid_points(grid)]
    names = [
        ",".join(x for x in (Path(f).stem if len(files) > 1 and f else "", run_name(p) if p else "") if x)
        for f, p in pairs
    ]
    if len(set(names)) < len(names):  # the same config twice, or two points alike once made safe
        names = [f"{i:03d}-{n}" for i, n in enumerate(names)]
    return [PlannedRun(n, f, {**base, **p}) for n, (f, p) in zip(names, pairs)]


def run_sweep(
    configs: list[str] | str | None,
    grid: dict[str, list[Any]],
    out: Path,
    base: dict[str, Any] | None = None,
    say: Callable[[str], None] = print,
    *,
    workers: int = 1,
    threads: int = 0,
) -> dict[str, Any]:
    """Train every (config file, grid point) pair with ``base`` overrides into ``out/<name>``, on ``workers``
    processes (1: in this process) with ``threads`` threads each (0: the usable cores split between them).

    ``configs``: one YAML file (or None for the defaults), or several - e.g. report 001's five optimizer configs, each
    with its own learning rates - whose stems then name the runs. Finished runs are skipped, interrupted ones
    resumed, diverged ones recorded and skipped on later calls. Every run's config is resolved (and checked against
    the run it would continue) before anything trains, so a bad value fails at once. Returns the sweep.json data and,
    under ``"ended"``, how the workers ended (gankit.tune.runs.Ended)."""
    from .config.layering import resolve
    from .training.finetune import resolve_source
    from .training.rundir import is_run_dir, load_run_config

    base = dict(base or {})
    if workers < 1:
        raise GankitError(f"--workers {workers}: give the number of worker processes (1 or more)")
    runs = plan(configs, grid, base)
    if out.exists() and not out.is_dir():
        raise GankitError(f"--out {out} is a file; choose a folder path")
    for i, run in enumerate(runs):
        cfg = resolve(file=run.config, overrides=run.overrides)
        if cfg.train.init_from:  # train.init_from as its run records it (the checkpoint folder): a resume sees the same
            runs[i] = run = PlannedRun(
                run.name, run.config, {**run.overrides, "train.init_from": str(resolve_source(cfg.train.init_from))}
            )
            cfg = resolve(file=run.config, overrides=run.overrides)
        folder = out / run.name
        if is_run_dir(folder) and not finished(folder):
            change = resume_change(load_run_config(folder).to_dict(), cfg.to_dict())
            if change:
                raise GankitError(f"{folder} was trained with another config ({change}); use another --out")

    out.mkdir(parents=True, exist_ok=True)
    ledger = out / SWEEP_FILE

    def start(data: dict[str, Any]) -> None:
        """sweep.json for this call: what an earlier call said of each run carried over (done, from its folder)."""
        before = {r["name"]: r for r in data.get("runs", [])}
        data.clear()
        data.update(configs=config_files(configs), overrides=base, grid=grid, runs=[])
        for run in runs:
            point = {k: run.overrides[k] for k in grid}
            entry = {"name": run.name, "dir": run.name, "config": run.config, "overrides": point}
            data["runs"].append({**entry, **_carried(out / run.name, before.get(run.name, {}))})

    read_ledger(ledger)  # a damaged sweep.json: one line, before anything changes
    state = update_ledger(ledger, start)
    diverged = frozenset(r["name"] for r in state["runs"] if r["status"] == "diverged")
    for i, r in enumerate(state["runs"]):
        tag = f"[{i + 1}/{len(runs)}] {r['name']}"
        if r["status"] == "done":
            say(f"{tag}: finished, skipped")
        elif r["name"] in diverged:
            say(f"{tag}: diverged earlier, skipped (delete {out / r['name']} to try again)")

    ended = train_runs(
        out, runs, workers=workers, threads=threads, ledger=ledger, skip=diverged, label="sweep", say=say
    )
    state = update_ledger(ledger, lambda data: _settle(out, data))
    return {**state, "ended": ended}


def _carried(folder: Path, before: dict[str, Any]) -> dict[str, Any]:
    """A run's status as this call starts: done (with its numbers) when its folder says so; diverged when an earlier
    call said so and its folder is still there (deleting it tries again); else what it was, or pending."""
    if finished(folder):
        return {"status": "done", **outcome(folder)}
    status = before.get("status", "pending")
    if status == "diverged" and not folder.exists():
        return {"status": "pending"}
    if status in ("done", "running"):  # its summary is gone: stopped before its end, or by a worker that died
        status = "interrupted"
    return {"status": status, **({"error": before["error"]} if isinstance(before.get("error"), str) else {})}


def _settle(out: Path, data: dict[str, Any]) -> None:
    """After the workers: every run as its folder says (a worker that died left its entry 'running')."""
    for entry in data.get("runs", []):
        if finished(out / entry["name"]):
            entry.update(status="done", **outcome(out / entry["name"]))
        elif entry.get("status") == "running":
            entry["status"] = "interrupted"


def summary_line(state: dict[str, Any], out: Path) -> str:
    done = sum(r["status"] == "done" for r in state["runs"])
    return f"{done} of {len(state['runs'])} runs finished in {out}/ (list: {out / SWEEP_FILE})"


def default_say(message: str) -> None:
    print(f"sweep: {message}", file=sys.stderr, flush=True)
