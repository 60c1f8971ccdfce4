"""`gankit sweep` (a grid of runs, one after another, resumable) and `gankit compare` (runs side by side).

A sweep folder holds one run folder per grid point, named by its overrides (``optim.name=adam,model.z_dim=10``), and
``sweep.json``: the config(s), the grid and every run's overrides and status. Several config files are one more axis
of the grid (their file names name the runs): report 001's optimizer comparison is five configs with their own
learning rates. Re-running the same command skips finished
runs (``summary.json`` present) and resumes an interrupted one from its last checkpoint, so a sweep survives Ctrl-C
and reboots. ``compare`` reads run folders (or sweeps) and writes ``losses.png``, ``samples.png`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DivergedError, GankitError

# Keys that change how a run is watched, not what it computes: runs that differ only here are the same run.
NOT_IDENTITY = {"train.progress", "train.threads", "train.device", "train.log_every", "train.sample_every",
                "train.checkpoint_every", "train.keep_last", "data.dir", "data.cache_dir", "data.download"}
BUDGET = {"train.steps", "train.epochs", "train.max_minutes"}


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
    from .config import parse_set

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


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of the grid, first key slowest: [{key: value, ...}, ...]."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_fmt(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_name(point: dict[str, Any]) -> str:
    """A safe folder name for a grid point: ``optim.name=adam,model.z_dim=10`` (odd characters become '_')."""
    text = ",".join(f"{k}={_fmt(v)}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:200] or "run"


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _config_change(saved: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first key (outside budgets and watching options) whose value differs, as 'key: old -> new'."""
    a, b = _flat(saved), _flat(new)
    for key in sorted(set(a) | set(b)):
        if key in NOT_IDENTITY or key in BUDGET:
            continue
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} -> {b.get(key)!r}"
    return None


# ---------------------------------------------------------------------------------------------------------------------
# sweep


def _write_json(path: Path, data: Any) -> None:
    from .runlog import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


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
    from .config import resolve
    from .training import is_run_dir, load_run_config, train

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
    names = [",".join(x for x in (Path(f).stem if len(files) > 1 and f else "", run_name(p) if p else "") if x)
             for f, p in pairs]
    if len(set(names)) < len(names):  # the same config twice, or two points alike once made safe
        names = [f"{i:03d}-{n}" for i, n in enumerate(names)]
    cfgs = [resolve(file=f, overrides={**base, **p}) for f, p in pairs]

    out.mkdir(parents=True, exist_ok=True)
    sweep_file = out / "sweep.json"
    previous: dict[str, dict[str, Any]] = {}
    if sweep_file.exists():
        try:
            previous = {r["name"]: r for r in json.loads(sweep_file.read_text()).get("runs", [])}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise GankitError(f"{sweep_file} is damaged; remove it (the run folders are kept) and run again") from None
    state = {
        "configs": [str(f) if f else None for f in files],
        "overrides": base,
        "grid": grid,
        "runs": [{"name": n, "dir": n, "config": str(f) if f else None, "overrides": p,
                  "status": previous.get(n, {}).get("status", "pending")} for n, (f, p) in zip(names, pairs)],
    }
    _write_json(sweep_file, state)

    for i, (entry, cfg) in enumerate(zip(state["runs"], cfgs)):
        run_dir = out / entry["name"]
        tag = f"[{i + 1}/{len(pairs)}] {entry['name']}"
        if (run_dir / "summary.json").is_file():
            say(f"{tag}: finished, skipped")
            entry["status"] = "done"
            continue
        if entry["status"] == "diverged":
            say(f"{tag}: diverged earlier, skipped (delete {run_dir} to try again)")
            continue
        resume = is_run_dir(run_dir)
        if resume:
            change = _config_change(load_run_config(run_dir).to_dict(), cfg.to_dict())
            if change:
                raise GankitError(f"{run_dir} was trained with another config ({change}); use another --out")
            say(f"{tag}: resuming")
        else:
            say(f"{tag}: training")
        entry["status"] = "running"
        _write_json(sweep_file, state)
        try:
            run = train(cfg, resume=run_dir) if resume else train(cfg, out=run_dir)
        except DivergedError as e:
            entry["status"] = "diverged"
            entry["error"] = str(e)
            say(f"{tag}: {e}")
            _write_json(sweep_file, state)
            continue
        except BaseException:
            entry["status"] = "interrupted"
            _write_json(sweep_file, state)
            raise
        entry.update(status="done", step=run.step, epoch=round(run.epoch, 4), stopped_by=run.stopped_by)
        _write_json(sweep_file, state)
    return state


def cmd_sweep(args: argparse.Namespace) -> int:
    from .cli import _overrides

    out = Path(args.out)
    state = run_sweep(args.configs, parse_grid(args.grid or []), out, _overrides(args),
                      say=lambda m: print(f"sweep: {m}", file=sys.stderr, flush=True))
    done = sum(r["status"] == "done" for r in state["runs"])
    print(f"sweep: {done} of {len(state['runs'])} runs finished in {out}/ (list: {out / 'sweep.json'})")
    print(f"  compare them: gankit compare {out} --out {out / 'report'}")
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# compare


@dataclass
class RunInfo:
    """What compare reads from one run folder."""

    dir: Path
    config: dict[str, Any]  # flattened dotted keys
    rows: list[dict[str, Any]]  # metrics.jsonl
    summary: dict[str, Any]  # summary.json, {} while unfinished
    metrics: dict[str, float]  # numbers of metrics.json (gankit eval), flattened
    sample: Path | None  # the last samples/step-*.png
    label: str = ""
    differs: dict[str, Any] = field(default_factory=dict)


def _numbers(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d):
        out[prefix[:-1]] = float(d)
    return out


def read_run(run_dir: Path) -> RunInfo:
    from .config import read_yaml
    from .viz import read_jsonl

    summary: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for name, target in (("summary.json", "summary"), ("metrics.json", "metrics")):
        f = run_dir / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except json.JSONDecodeError:
                continue  # a file cut by a kill: compare without it
            if target == "summary":
                summary = data if isinstance(data, dict) else {}
            else:
                metrics = _numbers(data)
    samples = sorted((run_dir / "samples").glob("step-*.png"))
    return RunInfo(run_dir, _flat(read_yaml(run_dir / "config.yaml")), read_jsonl(run_dir / "metrics.jsonl"),
                   summary, metrics, samples[-1] if samples else None)


def collect_runs(paths: list[str], say: Any = print) -> list[RunInfo]:
    """Run folders from run folders, sweep folders (their sweep.json) or folders of runs, in the order given."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            raise GankitError(
                f"{p} is not a folder; pass run folders (with config.yaml) or sweep folders (with sweep.json)"
            )
        if (p / "config.yaml").is_file():
            found.append(p)
        elif (p / "sweep.json").is_file():
            try:
                runs = json.loads((p / "sweep.json").read_text())["runs"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise GankitError(f"{p / 'sweep.json'} is damaged; pass the run folders themselves") from None
            for r in runs:
                d = p / r["dir"]
                if (d / "config.yaml").is_file():
                    found.append(d)
                else:
                    say(f"note: {d} has not started yet; left out")
        else:
            subs = sorted(d for d in p.iterdir() if (d / "config.yaml").is_file())
            if not subs:
                raise GankitError(
                    f"{p} has no config.yaml or sweep.json (and no run folders in it); pass a `gankit train --out` folder"
                )
            found.extend(subs)
    unique = list(dict.fromkeys(d.resolve() for d in found))
    if not unique:
        raise GankitError("nothing to compare: no run has started yet")
    return [read_run(d) for d in unique]


def label_runs(runs: list[RunInfo]) -> list[str]:
    """Config keys whose values differ between the runs (watching options left out)."""
    keys = sorted({k for r in runs for k in r.config})
    differing = [k for k in keys if k not in NOT_IDENTITY
                 and len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1]
    for r in runs:
        r.differs = {k: r.config.get(k) for k in differing}
        r.label = ", ".join(f"{k}={_fmt(v)}" for k, v in r.differs.items()) or r.dir.name
    labels = [r.label for r in runs]
    for r in runs:
        if labels.count(r.label) > 1:  # same config in different folders: the folder tells them apart
            r.label = f"{r.dir.name}: {r.label}" if r.differs else r.dir.name
    return differing


def _last(rows: list[dict[str, Any]], key: str) -> Any:
    for r in reversed(rows):
        if key in r:
            return r[key]
    return None


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def write_losses(runs: list[RunInfo], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, key, title in ((axes[0], "loss/d", "discriminator loss"), (axes[1], "loss/g", "generator loss")):
        for r in runs:
            pts = [(row["step"], row[key]) for row in r.rows if key in row and "step" in row]
            if pts:
                s, v = zip(*pts)
                ax.plot(s, v, label=r.label, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    if handles:
        # Below both panels, one run a line: labels can be long, and bbox_inches="tight" grows the figure to fit.
        fig.legend(handles, [textwrap.shorten(x, 160) for x in labels], loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=1 if max(map(len, labels)) > 50 else min(3, len(labels)), fontsize=8, frameon=False)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def write_samples(runs: list[RunInfo], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cols = min(4, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, runs):
        if r.sample is not None:
            with Image.open(r.sample) as im:
                ax.imshow(im.convert("RGB"))
            step = r.sample.stem.split("-")[-1].lstrip("0") or "0"
            title = f"{r.label}\n(step {step})"
        else:
            ax.text(0.5, 0.5, "no samples yet", ha="center", va="center")
            title = r.label
        ax.set_title("\n".join(textwrap.wrap(title, 40, replace_whitespace=False)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def write_summary(runs: list[RunInfo], differing: list[str], path: Path) -> None:
    eval_keys = sorted({k for r in runs for row in r.rows for k in row if k.startswith("eval/")})
    metric_keys = sorted({k for r in runs for k in r.metrics})
    head = ["run", "differing config", "steps", "epochs", "seconds", "last D loss", "last G loss",
            *eval_keys, *metric_keys]
    lines = ["# Comparison", "",
             f"{len(runs)} run(s); differing config keys: {', '.join(differing) or 'none'}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        last_row = next((row for row in reversed(r.rows) if "step" in row), {})
        cells = [r.dir.name, ", ".join(f"{k}={_fmt(v)}" for k, v in r.differs.items()),
                 r.summary.get("step", last_row.get("step")), r.summary.get("epoch", last_row.get("epoch")),
                 r.summary.get("seconds"), _last(r.rows, "loss/d"), _last(r.rows, "loss/g"),
                 *[_last(r.rows, k) for k in eval_keys], *[r.metrics.get(k) for k in metric_keys]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "`eval/*` columns are the last values in metrics.jsonl; the others after the losses come from each "
              "run's metrics.json (`gankit eval`). Unfinished runs have no seconds.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def compare(paths: list[str], out: Path, say: Any = print) -> dict[str, Path]:
    """Write losses.png, samples.png and summary.md for the runs in ``paths`` into ``out``; returns the files."""
    runs = collect_runs(paths, say)
    differing = label_runs(runs)
    if out.exists() and not out.is_dir():
        raise GankitError(f"--out {out} is a file; give a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    files = {"losses": out / "losses.png", "samples": out / "samples.png", "summary": out / "summary.md"}
    write_losses(runs, files["losses"])
    write_samples(runs, files["samples"])
    write_summary(runs, differing, files["summary"])
    return files


def cmd_compare(args: argparse.Namespace) -> int:
    files = compare(args.runs, Path(args.out), say=lambda m: print(m, file=sys.stderr))
    print(f"wrote {files['losses']}, {files['samples']} and {files['summary']}")
    return 0


# ---------------------------------------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    from .data import DATASETS

    s = sub.add_parser("sweep", help="train the product of config grids, one run after another (resumable)")
    s.add_argument("configs", nargs="*", metavar="CONFIG",
                   help="YAML config(s) the runs start from; several configs are one more grid axis (default: built-ins)")
    s.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="a config key and its values; repeat for a product, e.g. --grid optim.name=adam,sgd")
    s.add_argument("--out", required=True, help="sweep folder: one run folder per grid point, and sweep.json")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key in every run")
    s.add_argument("--steps", type=int, help="budget of each run in generator updates")
    s.add_argument("--epochs", type=float, help="budget of each run in passes over the data")
    s.add_argument("--max-minutes", type=float, help="wall-clock budget of each run")
    s.add_argument("--data", choices=DATASETS.names(), help="data set of every run")
    s.add_argument("--data-dir", help="folder with the data set's files")
    s.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    s.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_sweep)

    c = sub.add_parser("compare", help="loss curves, last sample grids and a metrics table of runs side by side")
    c.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP", help="run folders, sweep folders or folders of runs")
    c.add_argument("--out", required=True, help="folder for losses.png, samples.png and summary.md")
    c.set_defaults(func=cmd_compare)
