"""Verdicts: pure functions from per-seed numbers to holds / does not hold / not decided at this budget.

A ranking of two runs by a metric is decided only where the gap between their seed means exceeds the seed spread
(the larger of the two runs' ranges, max - min over seeds), and only with at least two seeds each: with one seed
there is no spread to compare the gap with. A threshold holds when every seed meets it, fails when none does, and
is undecided when the seeds disagree. A "no noticeable difference" claim fails where some pair of runs differs by
more than the spread and by more than ``tolerance`` of the metric's size, and holds otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HOLDS = "holds"
FAILS = "does not hold"
UNDECIDED = "not decided at this budget"
VERDICTS = (HOLDS, FAILS, UNDECIDED)
MIN_SEEDS = 2

Values = Mapping[str, Sequence[float]]  # run name -> the metric's value for each seed


@dataclass(frozen=True)
class Verdict:
    verdict: str  # one of VERDICTS
    reason: str  # one sentence: what decided it
    pairs: list[dict[str, Any]] = field(default_factory=list)  # per compared pair: better, worse, gap, spread, outcome


def _finite(xs: Sequence[float | None]) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(float(x))]


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def spread(xs: Sequence[float]) -> float:
    """Range over seeds (max - min); 0 for one seed."""
    return max(xs) - min(xs) if xs else 0.0


def compare_pair(
    better: Sequence[float | None], worse: Sequence[float | None], lower_is_better: bool
) -> dict[str, Any]:
    """Is run ``better`` better than run ``worse``? ``outcome``: HOLDS / FAILS / UNDECIDED, with the gap of the means
    (positive = in the claimed direction), the seed spread and the seeds used."""
    a, b = _finite(better), _finite(worse)
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return {
            "gap": None,
            "spread": None,
            "outcome": UNDECIDED,
            "why": f"needs >= {MIN_SEEDS} seeds with a finite value per run (got {len(a)} and {len(b)})",
        }
    if len(a) < len(better) or len(b) < len(worse):  # as threshold does: a seed that diverged or is missing
        return {
            "gap": None,
            "spread": None,
            "outcome": UNDECIDED,  # would otherwise drop out of the ranking
            "why": "a seed has no finite value (diverged or not measured); the ranking is left undecided",
        }
    gap = (mean(b) - mean(a)) if lower_is_better else (mean(a) - mean(b))
    sp = max(spread(a), spread(b))
    if gap > sp:
        outcome = HOLDS
    elif -gap > sp:
        outcome = FAILS
    else:
        outcome = UNDECIDED
    return {"gap": gap, "spread": sp, "outcome": outcome, "why": f"gap {gap:+.4g} vs seed spread {sp:.4g}"}


def _combine(pairs: list[dict[str, Any]], what: str) -> Verdict:
    fails = [p for p in pairs if p["outcome"] == FAILS]
    undecided = [p for p in pairs if p["outcome"] == UNDECIDED]
    if fails:
        p = fails[0]
        return Verdict(
            FAILS, f"{p['worse']} beats {p['better']} on {what} by more than the seed spread ({p['why']})", pairs
        )
    if undecided:
        p = undecided[0]
        return Verdict(UNDECIDED, f"{p['better']} vs {p['worse']} on {what}: {p['why']}", pairs)
    return Verdict(HOLDS, f"every gap on {what} exceeds the seed spread in the claimed direction", pairs)


def rank(values: Values, order: Sequence[str], lower_is_better: bool, what: str = "the metric") -> Verdict:
    """The claim "order[0] is better than order[1], which is better than order[2], ..."."""
    pairs = [
        {"better": x, "worse": y, **compare_pair(values[x], values[y], lower_is_better)}
        for x, y in itertools.pairwise(order)
    ]
    return _combine(pairs, what)


def best(values: Values, winner: str, among: Sequence[str], lower_is_better: bool, what: str = "the metric") -> Verdict:
    """The claim "``winner`` is the best of ``among``": it must beat each other run beyond the seed spread."""
    pairs = [
        {"better": winner, "worse": y, **compare_pair(values[winner], values[y], lower_is_better)}
        for y in among
        if y != winner
    ]
    return _combine(pairs, what)


def same(values: Values, runs: Sequence[str], tolerance: float = 0.1, what: str = "the metric") -> Verdict:
    """The claim "these runs do not differ noticeably": fails where two runs' means differ by more than the seed
    spread and more than ``tolerance`` times the larger mean's size; holds when no pair does."""
    pairs = []
    for i, x in enumerate(runs):
        for y in runs[i + 1 :]:
            a, b = _finite(values[x]), _finite(values[y])
            if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS or len(a) < len(values[x]) or len(b) < len(values[y]):
                pairs.append(
                    {
                        "better": x,
                        "worse": y,
                        "gap": None,
                        "spread": None,
                        "outcome": UNDECIDED,
                        "why": f"needs >= {MIN_SEEDS} seeds per run",
                    }
                )
                continue
            gap = abs(mean(a) - mean(b))
            sp = max(spread(a), spread(b))
            allowed = max(sp, tolerance * max(abs(mean(a)), abs(mean(b))))
            pairs.append(
                {
                    "better": x,
                    "worse": y,
                    "gap": gap,
                    "spread": sp,
                    "outcome": FAILS if gap > allowed else HOLDS,
                    "why": f"|gap| {gap:.4g} vs allowed {allowed:.4g} (spread {sp:.4g}, {tolerance:.0%} of size)",
                }
            )
    bad = [p for p in pairs if p["outcome"] == FAILS]
    if bad:
        p = bad[0]
        return Verdict(FAILS, f"{p['better']} and {p['worse']} differ on {what}: {p['why']}", pairs)
    if any(p["outcome"] == UNDECIDED for p in pairs):
        return Verdict(UNDECIDED, f"needs >= {MIN_SEEDS} seeds per run", pairs)
    return Verdict(HOLDS, f"no two runs differ on {what} by more than the seed spread or {tolerance:.0%}", pairs)


OPS = {">=": lambda x, v: x >= v, "<=": lambda x, v: x <= v}


def threshold(values: Sequence[float | None], op: str, value: float, what: str = "the metric") -> Verdict:
    """The claim "the run's metric is ``op`` ``value``": holds when every seed meets it, fails when none does,
    undecided when the seeds disagree or a seed has no finite value (not measured, diverged)."""
    xs = _finite(values)
    if not xs:
        return Verdict(UNDECIDED, f"no finite value of {what}")
    if len(xs) < len(values):  # a seed not measured (unfinished, diverged) could still go either way
        return Verdict(UNDECIDED, f"only {len(xs)} of {len(values)} seeds have a value of {what}")
    ok = [OPS[op](x, value) for x in xs]
    shown = ", ".join(f"{x:.4g}" for x in xs)
    if all(ok):
        return Verdict(HOLDS, f"{what} {shown} {op} {value:g} for every seed")
    if not any(ok):
        return Verdict(FAILS, f"{what} {shown}: no seed is {op} {value:g}")
    return Verdict(UNDECIDED, f"{what} {shown}: the seeds disagree about {op} {value:g}")
