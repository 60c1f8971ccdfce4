"""A search space: config keys -> distributions, read from a YAML file and ``--param`` flags, checked up front.

A space file maps dotted config keys to a distribution written as a call::

    optim.lr_g: loguniform(5e-5, 1e-3)
    optim.beta1: uniform(0.0, 0.9)
    model.g_channels: int(16, 64, 16)     # low, high[, step]; both ends included
    loss.name: choice(non_saturating, hinge, lsgan)
    train.batch_size: [32, 64]            # a YAML list is a choice too

Every key is checked against the config schema and against the keys the chosen model reads, and every end point or
choice is layered into the base config (gankit.config.layering.resolve), so a bad space stops before any trial runs.
The distributions become Optuna's (a module-level import of optuna is not needed here: this module is pure parsing).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.schema import fmt_value, parse_set
from ..core.errors import GankitError
from ..core.yamlio import load_yaml_file

KINDS = ("loguniform", "uniform", "int", "choice")
_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Dist:
    """One key's distribution: ``kind`` in KINDS; ``low``/``high``/``step`` for ranges, ``choices`` for a choice."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice({', '.join(fmt_value(c) for c in self.choices)})"
        step = f", {fmt_value(self.step)}" if self.step is not None else ""
        return f"{self.kind}({fmt_value(self.low)}, {fmt_value(self.high)}{step})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high, "step": self.step, "choices": list(self.choices)}

    def probes(self) -> list[Any]:
        """Values that stand for the whole distribution when checking it against the config (ends and choices)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this distribution can propose: a listed choice (True is not 1 here),
        or a number within the range (on the step of an int range)."""
        if self.kind == "choice":
            return any(isinstance(value, bool) is isinstance(c, bool) and value == c for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.kind == "int":
            return float(value).is_integer() and (int(value) - int(self.low)) % int(self.step or 1) == 0
        return True

    def grid_values(self, key: str) -> list[Any]:
        """The values a grid search walks: the choices, or every step of an int range; continuous ranges have none."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise GankitError(
            f"--sampler grid needs a finite set of values, but {key} is {self.describe()}; "
            f"write it as choice(...) or int(lo, hi, step), or use --sampler tpe"
        )


Space = dict[str, Dist]


def split_args(raw: str) -> list[str]:
    """``'1, "a,b", [2, 3]'`` -> ``['1', '"a,b"', '[2, 3]']``: commas inside quotes or brackets do not split."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return out


def _number(text: str, key: str, call: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise GankitError(f"{key}: {call}: {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise GankitError(f"{key}: {call}: {text.strip()} is not a finite number")
    return v


def parse_dist(key: str, value: Any) -> Dist:
    """One space entry -> a Dist (GankitError naming the key and what would fix it)."""
    if isinstance(value, list):
        return _choice(key, [v for v in value], f"{key}: {value!r}")
    if not isinstance(value, str) or not (m := _CALL.match(value)):
        raise GankitError(
            f"{key}: {value!r} is not a distribution; write loguniform(lo, hi), uniform(lo, hi), "
            f"int(lo, hi[, step]) or choice(a, b, ...)"
        )
    kind, inner = m.group(1), m.group(2)
    call = f"{kind}({inner.strip()})"
    if kind not in KINDS:
        raise GankitError(f"{key}: unknown distribution {kind!r}; use one of {', '.join(KINDS)}")
    args = split_args(inner) if inner.strip() else []
    if kind == "choice":
        return choice_of(key, args, f"{key}: {call}")
    want = (2, 3) if kind == "int" else (2,)
    if len(args) not in want:
        raise GankitError(
            f"{key}: {call} takes {' or '.join(map(str, want))} numbers (low, high"
            f"{'[, step]' if kind == 'int' else ''})"
        )
    nums = [_number(a, key, call) for a in args]
    low, high = nums[0], nums[1]
    if not low < high:
        raise GankitError(f"{key}: {call}: low must be below high")
    if kind == "loguniform" and low <= 0:
        raise GankitError(f"{key}: {call}: a log scale needs low > 0 (e.g. loguniform(1e-5, 1e-3))")
    if kind == "int":
        if not all(float(n).is_integer() for n in nums):
            raise GankitError(f"{key}: {call}: int() takes whole numbers; use uniform(lo, hi) for real values")
        step = nums[2] if len(nums) == 3 else 1
        if step < 1:
            raise GankitError(f"{key}: {call}: the step must be 1 or more")
        return Dist("int", int(low), int(high), int(step))
    return Dist(kind, low, high)


def choice_of(key: str, texts: list[str], where: str, scalars: bool = True) -> Dist:
    """A choice from its values as written (``["adam", "sgd"]``, ``["[64, 64]", "[128]"]``), each read as ``--set``
    reads a value. ``scalars``: only numbers, strings, booleans and null (what Optuna stores as a choice); a sweep's
    grid (`gankit sweep --grid`, never sampled by Optuna) may list YAML lists too. ``where`` starts every error."""
    if any(t == "" for t in texts):
        raise GankitError(f"{where}: a value is empty (two commas in a row, or one at an end); list each value once")
    return _choice(key, [parse_set(f"{key}={t}")[1] for t in texts], where, scalars)


def _choice(key: str, values: list[Any], where: str, scalars: bool = True) -> Dist:
    if not values:
        raise GankitError(f"{where} is an empty choice; name at least one value, e.g. choice(32, 64)")
    if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
        raise GankitError(f"{where}: a value is repeated; list each value once")
    for v in values:
        if scalars and not (v is None or isinstance(v, (bool, int, float, str))):
            raise GankitError(
                f"{where}: {v!r} is not a single value (Optuna choices are numbers, strings, booleans or null)"
            )
    return Dist("choice", choices=tuple(_plain(v) for v in values))


def _plain(v: Any) -> Any:
    """The YAML reader's int/float subclasses (they remember their text) as plain int/float for Optuna (a list, which
    only a sweep's grid holds, item by item)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return int(v) if isinstance(v, int) else float(v)


def read_space(path: str | Path | None, params: list[str]) -> Space:
    """The space from the YAML file ``path`` (a mapping of dotted keys, or nested sections) and ``--param KEY=DIST``
    flags, which add keys or replace the file's."""
    space: Space = {}
    if path is not None:
        raw = load_yaml_file(path, "space file")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise GankitError(f"space file {path}: expected a mapping of config keys to distributions")
        for key, value in _flatten(raw):
            space[key] = _located(lambda: parse_dist(key, value), f"space file {path}")
    for item in params:
        if "=" not in item:
            raise GankitError(f"--param {item!r}: expected KEY=DIST, e.g. --param optim.lr_g='loguniform(1e-5, 1e-3)'")
        key, value = (s.strip() for s in item.split("=", 1))
        space[key] = _located(lambda: parse_dist(key, value), "--param")
    if not space:
        raise GankitError("the search space is empty: give --space FILE.yaml or --param KEY=DIST")
    return space


def _located(fn: Any, where: str) -> Dist:
    try:
        return fn()
    except GankitError as e:
        raise GankitError(f"{where}: {e}") from None


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def check_space(space: Space, resolve_with: Any) -> None:
    """Layer every probe value of every key into the base config (``resolve_with({key: value})`` raises GankitError
    for an unknown key, a key the model does not read, or a bad value) so a bad space fails before any trial."""
    for key, dist in space.items():
        if key in ("seed",) or key.startswith(("train.steps", "train.epochs", "train.max_minutes", "train.clock")):
            raise GankitError(
                f"space key {key}: the budget and seed are the same for every trial; "
                f"set them with --steps/--max-minutes/--cpu-minutes and --seed"
            )
        for value in dist.probes():
            try:
                resolve_with({key: value})
            except GankitError as e:
                raise GankitError(f"space key {key}={fmt_value(value)} ({dist.describe()}): {e}") from None


def base_point(space: Space, values: dict[str, Any]) -> dict[str, Any]:
    """The space's keys at the base config's own values (``values``: the resolved config, flattened), as Optuna's
    params for ``study.enqueue_trial``; a value the space cannot propose is refused, naming the key, value and space
    (Optuna would train it anyway and then treat the trial as outside the search)."""
    point: dict[str, Any] = {}
    for key, dist in space.items():
        value = values.get(key)
        if not dist.contains(value):
            raise GankitError(
                f"--enqueue-base: the base config's {key}={fmt_value(value)} is outside the space's "
                f"{dist.describe()}; widen the space to include it, or leave out --enqueue-base"
            )
        if dist.kind == "choice":  # the listed value itself (1, not the config's 1.0): Optuna stores its index
            point[key] = next(c for c in dist.choices if isinstance(value, bool) is isinstance(c, bool) and value == c)
        else:
            point[key] = int(value) if dist.kind == "int" else float(value)
    return point


def grid_of(space: Space) -> dict[str, list[Any]]:
    """What a grid search walks: each key's values (Dist.grid_values), in the space's order. Optuna's GridSampler
    takes this for `gankit tune --sampler grid`, and `gankit sweep --grid` trains its points."""
    return {k: d.grid_values(k) for k, d in space.items()}


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of a grid, first key slowest: ``[{key: value, ...}, ...]``."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def space_json(space: Space) -> dict[str, Any]:
    return {k: space[k].to_json() for k in sorted(space)}
