"""Reading run folders: the one reader behind ``gankit report`` (report.html) and ``gankit compare`` (summary.md,
losses.png, samples.png), and the one rule of when two config values are the same.

Both pages answer "which config keys differ between these runs" with :func:`differing_keys`, so the columns of
summary.md and report.html cannot disagree. Equality (:func:`same_value`): numbers by value (``1`` is ``1.0``, since a
YAML round trip turns ``0.0`` into ``0``; a bool is not a number), lists and tuples alike, mappings by key, all of it
recursively; anything else by its JSON text. ``0.1`` and ``0.10000001`` differ: they are different settings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from ..core.errors import GankitError
from ..core.io import series

# Watching options that do not change what a run learns; left out of "differs from the defaults".
QUIET_KEYS = {"train.progress", "train.threads", "train.log_every", "data.dir", "data.cache_dir"}


# ---------------------------------------------------------------------------------------------------------------------
# one run folder


@dataclass
class RunData:
    """What the reports show about one run folder; everything optional except the folder and its config."""

    dir: Path
    config: dict[str, Any]  # flattened dotted keys of config.yaml
    meta: dict[str, Any]  # run.json: image_shape, class_names, family, device, threads
    summary: dict[str, Any]  # summary.json ({} while running)
    rows: list[dict[str, Any]]  # metrics.jsonl
    metrics: dict[str, Any]  # metrics.json of `gankit eval` as written ({} when not evaluated)
    grids: list[tuple[int, Path]]  # samples/step-*.png by step
    class_grids: dict[int, Path]  # samples/classes-*.png by step (conditional models)
    memorisation: Path | None
    label: str = ""  # how a page names the run (set by the page: report and compare label runs differently)
    differs: dict[str, Any] = field(default_factory=dict)  # key -> value for the keys that differ between runs

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def family(self) -> str | None:
        """The model family that trained the run (run.json's ``family``, or ``recipe`` in older runs, or its
        model's); None when this gankit does not know it."""
        from ..tasks import family_of_run

        return family_of_run(self.meta, self.config.get("model.name"))

    @property
    def last_grid(self) -> Path | None:
        """The sample grid of the latest step, None before the first."""
        return self.grids[-1][1] if self.grids else None

    @cached_property
    def metric_numbers(self) -> dict[str, float]:
        """The finite numbers of metrics.json, nested keys dotted (``a.b``); bools and text left out."""
        return _numbers(self.metrics)

    @property
    def protocol(self) -> str | None:
        """How metrics.json was made (:func:`eval_protocol`), None when the run was not evaluated."""
        return eval_protocol(self.metrics)


def _numbers(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d):
        out[prefix[:-1]] = float(d)
    return out


def _json_file(path: Path, say: Callable[[str], Any] | None = None) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):  # a file cut by a kill, or junk: read the run without it
        if say is not None:
            say(f"note: {path} is damaged (not JSON); read without it")
        return {}
    return data if isinstance(data, dict) else {}


def _step_of(p: Path) -> int | None:
    tail = p.stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def read_run(run_dir: str | Path, say: Callable[[str], Any] | None = None) -> RunData:
    """Everything a report shows about ``run_dir``. A damaged or missing JSON file reads as {} (``say`` gets a note
    for a damaged one); a folder without config.yaml is a GankitError."""
    from ..config.schema import flatten, read_yaml
    from ..core.io import read_jsonl

    d = Path(run_dir)
    if not (d / "config.yaml").is_file():
        raise GankitError(f"{d} is not a run folder (no config.yaml); pass the --out folder of a `gankit train`")
    grids = sorted((s, p) for p in (d / "samples").glob("step-*.png") if (s := _step_of(p)) is not None)
    classes = {s: p for p in (d / "samples").glob("classes-*.png") if (s := _step_of(p)) is not None}
    mem = d / "memorisation.png"
    return RunData(
        d,
        flatten(read_yaml(d / "config.yaml")),
        _json_file(d / "run.json", say),
        _json_file(d / "summary.json", say),
        read_jsonl(d / "metrics.jsonl"),
        _json_file(d / "metrics.json", say),
        grids,
        classes,
        mem if mem.is_file() else None,
    )


def read_run_data(run_dir: str | Path) -> RunData:
    """:func:`read_run` without notes (the name report.py has always exported)."""
    return read_run(run_dir)


def report_run_dirs(paths: list[Path], say: Any = print) -> list[Path]:
    """The run folders behind ``paths``, in order and once each: a run folder as given, a sweep folder's runs (from
    its sweep.json). What a shell glob brings along besides runs (``runs/sweep1/*`` holds sweep.json, and perhaps a
    compare report folder) is left out with a note (``say``). A path that does not exist, a lone path that is not a
    run, or nothing left is a one-line GankitError."""
    from ..training.rundir import sweep_run_dirs

    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "config.yaml").is_file():
            found.append(p)
        elif p.is_dir() and (p / "sweep.json").is_file():
            for d in sweep_run_dirs(p):
                if (d / "config.yaml").is_file():
                    found.append(d)
                else:
                    say(f"note: {d} has not started yet; left out")
        elif not p.exists():
            raise GankitError(f"{p} does not exist; pass run folders (the --out of `gankit train`) or a sweep folder")
        elif len(paths) == 1:
            raise GankitError(f"{p} is not a run folder (no config.yaml); pass the --out folder of a `gankit train`")
        else:
            say(f"note: {p} is not a run folder; left out")
    unique = list({d.resolve(): d for d in found}.values())
    if not unique:
        raise GankitError("no run folders among the paths given; pass the --out folders of `gankit train` runs")
    return unique


# ---------------------------------------------------------------------------------------------------------------------
# configs: when two values are the same, which keys differ


def canonical(value: Any) -> Any:
    """``value`` in the form :func:`same_value` compares: a float that is a whole number as an int (so 1 and 1.0,
    0 and 0.0 agree), tuples as lists, mapping keys as text; recursively. Bools, text and None stay as they are."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    return value


def value_key(value: Any) -> str:
    """One text per value under :func:`same_value`: equal texts, same value."""
    return json.dumps(canonical(value), sort_keys=True, default=str)


def same_value(a: Any, b: Any) -> bool:
    """Whether two config values are the same setting: numbers by value (a bool is not a number), lists and tuples
    alike, mappings by key, recursively; anything else by its JSON text. A missing key reads as None."""
    return value_key(a) == value_key(b)


def differing_keys(configs: list[dict[str, Any]], ignore: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """The flattened config keys whose values are not all the same (:func:`same_value`) over ``configs``, sorted;
    keys that only change how a run is watched or where its data lies (NOT_IDENTITY, QUIET_KEYS) and ``ignore`` left
    out. What report.html and summary.md both call "config keys that differ"."""
    from ..config.schema import NOT_IDENTITY

    keys = sorted({k for cfg in configs for k in cfg})
    return [
        k
        for k in keys
        if k not in NOT_IDENTITY
        and k not in QUIET_KEYS
        and k not in ignore
        and len({value_key(cfg.get(k)) for cfg in configs}) > 1
    ]


def default_config(model: str | None = None, data: str | None = None) -> dict[str, Any]:
    """Flattened defaults a run is compared with: the model's and data set's own defaults when they resolve, else
    the plain :class:`~gankit.config.Config` defaults."""
    from ..config.layering import resolve
    from ..config.schema import Config, flatten

    over = {k: v for k, v in (("model.name", model), ("data.name", data)) if v}
    try:
        return flatten(resolve(overrides=over).to_dict())
    except (GankitError, KeyError, TypeError, ValueError):
        return flatten(Config().to_dict())


def config_diff(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """key -> (value, default) for the keys whose value is not the default (watching options left out)."""
    return {
        k: (v, defaults.get(k))
        for k, v in sorted(config.items())
        if k not in QUIET_KEYS and not same_value(v, defaults.get(k))
    }


# ---------------------------------------------------------------------------------------------------------------------
# numbers of a run


def best_keys() -> tuple[tuple[str, str], ...]:
    """(metric key, 'min' or 'max') of the score the `best` checkpoint follows, for every model family."""
    from ..tasks import TASKS

    return tuple(spec.best_metric for _, spec in TASKS.items())


def best_step(rows: list[dict[str, Any]]) -> tuple[str, int, float] | None:
    """(key, step, value) of the best evaluation row: the lowest eval/fd, else the lowest eval/l1."""
    for key, mode in best_keys():
        pts = [(v, s) for s, v in series(rows, key)]
        if pts:
            v, s = (min if mode == "min" else max)(pts)
            return key, int(s), float(v)
    return None


def images_per_s(rows: list[dict[str, Any]]) -> float | None:
    """The median of the logged throughputs: the first rows include start-up, the median ignores them."""
    v = sorted(r["images_per_s"] for r in rows if isinstance(r.get("images_per_s"), (int, float)))
    return v[len(v) // 2] if v else None


def last_value(rows: list[dict[str, Any]], key: str) -> Any:
    """The latest logged value of ``key`` in metrics.jsonl rows, None when never logged."""
    return next((r[key] for r in reversed(rows) if key in r), None)


def eval_protocol(metrics: dict[str, Any]) -> str | None:
    """What makes two `gankit eval` results comparable, as one line: feature network (and its file), protocol, N,
    split and FD reference. None for a run that was not evaluated."""
    if not metrics or metrics.get("fd") is None:
        return None
    shown = {
        "features": "{}",
        "protocol": "protocol {}",
        "n_samples": "N {}",
        "split": "split {}",
        "features_id": "features {}",
    }
    parts = [fmt.format(metrics[k]) for k, fmt in shown.items() if metrics.get(k) is not None]
    if metrics.get("protocol") is None:
        parts.insert(1, "protocol unrecorded")
    if metrics.get("fd_reference") not in (None, "images"):
        parts.append(f"FD vs {metrics['fd_reference']}")
    return ", ".join(parts)


def protocol_warnings(protocols: list[str | None]) -> list[str]:
    """One cell per run: a warning where the evaluated runs were not scored under one protocol (their metrics are
    then not comparable), else ''."""
    seen = {p for p in protocols if p is not None}
    if len(seen) <= 1:
        return ["" for _ in protocols]
    return ["" if p is None else "⚠ evaluated differently from other runs: metrics not comparable" for p in protocols]


# ---------------------------------------------------------------------------------------------------------------------
# runs that differ only by the seed

SPREAD_KEYS = (
    "fd",
    "kid_mean",
    "is_mean",
    "precision",
    "recall",
    "density",
    "coverage",
    "parzen_mean",
    "label_accuracy",
    "l1",
    "psnr",
    "ssim",
)  # metrics.json numbers shown as mean ± std over seeds


@dataclass
class SeedGroup:
    """Runs whose configs differ only by ``seed``: each score's mean, sample std (n - 1) and n over them."""

    label: str  # the config keys that set this group apart from the other runs
    members: list[int]  # indices into the runs given
    stats: dict[str, tuple[float, float, int]]

    @staticmethod
    def cell(stat: tuple[float, float, int] | None) -> str:
        return "" if stat is None else f"{stat[0]:.4g} ± {stat[1]:.2g} (n={stat[2]})"


def seed_groups(configs: list[dict[str, Any]], scores: list[dict[str, float]]) -> list[SeedGroup]:
    """Groups of two or more runs whose flattened configs are the same (:func:`same_value`) but for ``seed`` (and
    keys that only change how a run is watched), with mean ± std of every score in ``scores`` (per run: name ->
    number; a run without a score does not count in its n)."""
    from ..config.schema import NOT_IDENTITY

    def identity(cfg: dict[str, Any]) -> str:
        return value_key({k: v for k, v in cfg.items() if k != "seed" and k not in NOT_IDENTITY})

    by: dict[str, list[int]] = {}
    for i, cfg in enumerate(configs):
        by.setdefault(identity(cfg), []).append(i)
    apart = differing_keys(configs, ignore={"seed"})
    groups = []
    for members in by.values():
        if len(members) < 2:
            continue
        stats: dict[str, tuple[float, float, int]] = {}
        for key in sorted({k for i in members for k in scores[i]}):
            vals = [scores[i][key] for i in members if isinstance(scores[i].get(key), (int, float))]
            if len(vals) >= 2:
                mean = sum(vals) / len(vals)
                std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
                stats[key] = (mean, std, len(vals))
        first = configs[members[0]]
        label = ", ".join(f"{k}={first.get(k)}" for k in apart) or "all runs"
        groups.append(SeedGroup(label, members, stats))
    return groups


def seed_scores(runs: list[RunData]) -> list[dict[str, float]]:
    """Per run, the scores :func:`seed_groups` spreads: the last value of every eval/* key any run logged, and the
    finite numbers of metrics.json among SPREAD_KEYS."""
    eval_keys = sorted({k for r in runs for row in r.rows for k in row if k.startswith("eval/")})
    return [
        {
            **{k: v for k in eval_keys if isinstance(v := last_value(r.rows, k), (int, float))},
            **{k: r.metric_numbers[k] for k in SPREAD_KEYS if k in r.metric_numbers},
        }
        for r in runs
    ]


def spread_table(groups: list[SeedGroup], seeds: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """(head, rows) of mean ± std per seed group, one column per score any group has."""
    keys = sorted({k for g in groups for k in g.stats}, key=lambda k: (not k.startswith("eval/"), k))
    head = ["runs differing only by seed", "seeds", *keys]
    rows = [
        [g.label, ", ".join(map(str, s)), *[SeedGroup.cell(g.stats.get(k)) for k in keys]]
        for g, s in zip(groups, seeds)
    ]
    return head, rows
