"""Sweeps: a grid of runs, one after another, resumable.

A sweep folder holds one run folder per grid point, named by its overrides (``optim.name=adam,model.z_dim=10``), and
``sweep.json``: the config(s), the grid and every run's overrides and status. Several config files are one more axis
of the grid (their file names name the runs): report 001's optimizer comparison is five configs with their own
learning rates. Re-running the same sweep skips finished runs (``summary.json`` present) and resumes an interrupted
one from its last checkpoint, so a sweep survives Ctrl-C and reboots.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

from .config.schema import fmt_value, parse_set, resume_change
from .core.errors import DivergedError, GankitError
from .core.io import write_json

# ---------------------------------------------------------------------------------------------------------------------
# grid


def split_values(raw: str) -> list[str]:
    """``"adam,sgd"`` -> ``["adam", "sgd"]``; commas inside brackets stay (``"[64,64],[128]"`` -> two lists)."""
    out, depth, cur = [], 0, ""
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["optim.name=adam,sgd", "model.z_dim=10,100"]`` -> ``{"optim.name": ["adam", "sgd"], "model.z_dim": [10, 100]}``

    (values read as ``--set`` reads them: YAML scalars or lists); a malformed spec is a one-line GankitError."""

    grid: dict[str, list[Any]] = {}
    for spec in specs:
        if "=" not in spec:
            raise GankitError(f"--grid {spec!r}: expected KEY=V1,V2,..., e.g. --grid optim.name=adam,sgd")
        key, raw = (s.strip() for s in spec.split("=", 1))
        if not key:
            raise GankitError(f"--grid {spec!r}: the key is empty; e.g. --grid model.z_dim=10,100")
        if key in grid:
            raise GankitError(f"--grid {key} is given twice; put all its values in one --grid {key}=V1,V2")
        parts = [p.strip() for p in split_values(raw)]
        if not raw.strip() or any(p == "" for p in parts):
            raise GankitError(f"--grid {spec!r}: a value is empty; write the values comma-separated, e.g. {key}=1,2")
        values = [parse_set(f"{key}={p}")[1] for p in parts]
        if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
            raise GankitError(f"--grid {spec!r}: a value is repeated; list each value once")
        grid[key] = values
    return grid


def add_seeds(grid: dict[str, list[Any]], seeds: int, first: int = 0) -> dict[str, list[Any]]:
    """The grid with a last (fastest) axis ``seed`` = first .. first + seeds - 1: every point trained on ``seeds``
    seeds, so `gankit compare` can show each metric's mean and spread over them."""
    if seeds < 2:
        raise GankitError(f"--seeds {seeds}: give 2 or more seeds (a spread needs at least two runs)")
    if "seed" in grid:
        raise GankitError("--seeds and --grid seed=... both set the seeds; give one of them")
    return {**grid, "seed": list(range(first, first + seeds))}


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of the grid, first key slowest: [{key: value, ...}, ...]."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def run_name(point: dict[str, Any]) -> str:
    """A safe folder name for a grid point: ``optim.name=adam,model.z_dim=10`` (odd characters become '_')."""
    text = ",".join(f"{k}={fmt_value(v)}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:200] or "run"


def finished(run_dir: Path) -> dict[str, Any]:
    """A finished run's step, epoch and stopped_by, read back from its summary.json (what sweep.json lists for a run
    trained in an earlier call); the keys that file lacks or holds damaged are left out."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
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


# ---------------------------------------------------------------------------------------------------------------------
# sweep


def run_sweep(
    configs: list[str] | str | None,
    grid: dict[str, list[Any]],
    out: Path,
    base: dict[str, Any] | None = None,
    say: Any = print,
) -> dict[str, Any]:
    """Train every (config file, grid point) pair with ``base`` overrides into ``out/<name>``, one after another.

    ``configs``: one YAML file (or None for the defaults), or several - e.g. report 001's five optimizer configs, each
    with its own learning rates - whose stems then name the runs. Finished runs are skipped, interrupted ones
    resumed, diverged ones recorded and skipped on later calls. Every run's config is resolved before anything
    trains, so a bad value fails at once. Returns the sweep.json data."""
    from .config.layering import resolve
    from .training.finetune import resolve_source
    from .training.loop import train
    from .training.rundir import is_run_dir, load_run_config

    files: list[str | None] = [configs] if configs is None or isinstance(configs, (str, Path)) else list(configs)
    files = files or [None]
    if not grid and len(files) < 2:
        raise GankitError("sweep needs a --grid KEY=V1,V2 (e.g. --grid optim.name=adam,sgd) or two or more configs")
    base = dict(base or {})
    overlap = sorted(set(base) & set(grid))
    if overlap:
        raise GankitError(f"{overlap[0]} is both a --grid key and a --set/flag override; give it in one place")
    if out.exists() and not out.is_dir():
        raise GankitError(f"--out {out} is a file; choose a folder path")
    pairs = [(f, p) for f in files for p in grid_points(grid)]
    names = [
        ",".join(x for x in (Path(f).stem if len(files) > 1 and f else "", run_name(p) if p else "") if x)
        for f, p in pairs
    ]
    if len(set(names)) < len(names):  # the same config twice, or two points alike once made safe
        names = [f"{i:03d}-{n}" for i, n in enumerate(names)]
    cfgs = [resolve(file=f, overrides={**base, **p}) for f, p in pairs]
    # train.init_from as its run will record it (the checkpoint folder), so a resumed sweep sees the same config
    cfgs = [
        c.replace(**{"train.init_from": str(resolve_source(c.train.init_from))}) if c.train.init_from else c
        for c in cfgs
    ]

    out.mkdir(parents=True, exist_ok=True)
    sweep_file = out / "sweep.json"
    previous: dict[str, dict[str, Any]] = {}
    if sweep_file.exists():
        try:
            previous = {r["name"]: r for r in json.loads(sweep_file.read_text()).get("runs", [])}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise GankitError(f"{sweep_file} is damaged; remove it (the run folders are kept) and run again") from None

    def carried(name: str) -> dict[str, Any]:
        """What sweep.json said of a run before (its status, and the error of a diverged one)."""
        if (out / name / "summary.json").is_file():
            return {"status": "done", **finished(out / name)}
        before = previous.get(name, {})
        return {
            "status": before.get("status", "pending"),
            **({"error": before["error"]} if isinstance(before.get("error"), str) else {}),
        }

    state = {
        "configs": [str(f) if f else None for f in files],
        "overrides": base,
        "grid": grid,
        "runs": [
            {"name": n, "dir": n, "config": str(f) if f else None, "overrides": p, **carried(n)}
            for n, (f, p) in zip(names, pairs)
        ],
    }
    write_json(sweep_file, state)

    for i, (entry, cfg) in enumerate(zip(state["runs"], cfgs)):
        run_dir = out / entry["name"]
        tag = f"[{i + 1}/{len(pairs)}] {entry['name']}"
        if (run_dir / "summary.json").is_file():
            say(f"{tag}: finished, skipped")
            entry.update(status="done", **finished(run_dir))
            continue
        if entry["status"] == "diverged":
            say(f"{tag}: diverged earlier, skipped (delete {run_dir} to try again)")
            continue
        resume = is_run_dir(run_dir)
        if resume:
            change = resume_change(load_run_config(run_dir).to_dict(), cfg.to_dict())
            if change:
                raise GankitError(f"{run_dir} was trained with another config ({change}); use another --out")
            say(f"{tag}: resuming")
        else:
            say(f"{tag}: training")
        entry["status"] = "running"
        write_json(sweep_file, state)
        try:
            run = train(cfg, resume=run_dir) if resume else train(cfg, out=run_dir)
        except DivergedError as e:
            entry["status"] = "diverged"
            entry["error"] = str(e)
            say(f"{tag}: {e}")
            write_json(sweep_file, state)
            continue
        except BaseException:
            entry["status"] = "interrupted"
            write_json(sweep_file, state)
            raise
        entry.update(status="done", step=run.step, epoch=round(run.epoch, 4), stopped_by=run.stopped_by)
        write_json(sweep_file, state)
    return state
