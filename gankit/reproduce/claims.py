"""Claims files: what a report ran and what it says, with the check gankit computes for each claim.

One YAML file per report, ``gankit/reproduce/claims/NNN.yaml`` (package data)::

    report: "002"
    title: ...
    source: 002_53e70a10942771ec.txt      # the report's text file (read once; the quotes are copied here)
    runs:                                 # name -> a shipped config (configs/reports/), optional --set overrides
      vanilla: {config: 002-vanilla-gan-mnist.yaml}
      minimax: {config: 003-gan2014-mnist.yaml, set: {loss.name: minimax}}    # a sweep axis
      early: {config: 004-dcgan-mnist.yaml, budget_fraction: 0.1}            # the same run stopped early
    seeds: [0, 1]
    budget_steps: {quick: 200}            # optional: this report's G updates per run at a budget, instead of its own
    claims:
      - id: keras-best
        section: "3. Results, DCGAN (Keras)"
        quote: "Best results have been reached by ..."      # verbatim
        their: "Figure 7 - Learning results after ..."      # the report's own number or figure caption
        check: {kind: best, metric: fd, winner: keras, among: [vanilla, dcgan3, keras]}
    not_checkable:
      - {section: ..., quote: ..., why: ...}

Check kinds (see :mod:`.verdict`): ``rank`` (``order``: best first), ``best`` (``winner`` among ``among``), ``same``
(``runs``, ``tolerance``), ``threshold`` (``run``, ``op`` >= or <=, ``value``, optional ``requires``: the data set,
image size or budget under which the number means anything, e.g. the 2014 paper's Parzen figure).
``budget_steps`` is for a report whose runs cost more per step than the others' (000's convolutional runs at
batch 256), so that a budget still fits its time; every run of the report gets the same steps, so that rankings
compare runs trained equally long, and the page and claims.json state the steps used.
Every run must name a shipped config and every metric a registered one (:data:`.measures.METRICS`); anything else is
a one-line error naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import GankitError
from ..core.registry import closest
from ..core.yamlio import load_yaml_file
from .budgets import BUDGETS
from .measures import METRICS

CLAIMS_DIR = Path(__file__).resolve().parent / "claims"
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs" / "reports"
CHECK_FIELDS = {
    "rank": {"metric", "order"},
    "best": {"metric", "winner", "among"},
    "same": {"metric", "runs"},
    "threshold": {"metric", "run", "op", "value"},
}
OPTIONAL_CHECK_FIELDS = {"same": {"tolerance"}, "threshold": {"requires"}}
REQUIRES_KEYS = {"data", "image_size", "budget", "min_samples"}


@dataclass(frozen=True)
class RunSpec:
    name: str
    config: str  # file name in configs/reports/
    overrides: dict[str, Any] = field(default_factory=dict)
    budget_fraction: float = 1.0  # of the budget's steps: an "early" copy of a run

    @property
    def config_path(self) -> Path:
        return CONFIGS_DIR / self.config


@dataclass(frozen=True)
class Check:
    kind: str
    metric: str
    fields: dict[str, Any]

    def runs(self) -> list[str]:
        """The runs this check reads, in the order the page shows them."""
        f = self.fields
        if self.kind == "rank":
            return list(f["order"])
        if self.kind == "best":
            return [f["winner"], *[r for r in f["among"] if r != f["winner"]]]
        if self.kind == "same":
            return list(f["runs"])
        return [f["run"]]

    def describe(self) -> str:
        spec = METRICS.get(self.metric)
        better = "lower is better" if spec.lower_is_better else "higher is better"
        f = self.fields
        if self.kind == "rank":
            return f"{spec.label}: {' better than '.join(f['order'])} ({better})"
        if self.kind == "best":
            return f"{spec.label}: {f['winner']} best of {', '.join(f['among'])} ({better})"
        if self.kind == "same":
            return f"{spec.label}: {', '.join(f['runs'])} within the seed spread or {f.get('tolerance', 0.1):.0%}"
        req = f.get("requires") or {}
        cond = f" (decided only with {', '.join(f'{k}={v}' for k, v in req.items())})" if req else ""
        return f"{spec.label} of {f['run']} {f['op']} {f['value']:g}{cond}"


@dataclass(frozen=True)
class Claim:
    id: str
    section: str
    quote: str
    their: str
    check: Check


@dataclass(frozen=True)
class Uncheckable:
    section: str
    quote: str
    why: str


@dataclass(frozen=True)
class ReportClaims:
    report: str
    title: str
    source: str
    runs: dict[str, RunSpec]
    seeds: list[int]
    claims: list[Claim]
    not_checkable: list[Uncheckable]
    path: Path
    budget_steps: dict[str, int] = field(default_factory=dict)  # budget name -> G updates per run, replacing its own

    def used_runs(self) -> list[str]:
        """Runs some claim reads, in the file's order (a run no claim reads is not trained)."""
        used = {r for c in self.claims for r in c.check.runs()}
        return [r for r in self.runs if r in used]


def _need(d: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise GankitError(f"{where}: missing field '{key}'")
    v = d[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise GankitError(f"{where}.{key}: expected {name}, got {type(v).__name__} {v!r}")
    return v


def _run_list(raw: dict[str, Any], key: str, where: str, runs: Any, what: str) -> list[str]:
    """``raw[key]``: a list of two or more run names, each defined in the claims file."""
    names = _need(raw, key, where, list)
    if len(names) < 2:
        raise GankitError(f"{where}.{key}: {what} needs two or more runs")
    for r in names:
        _run_name(r, runs, f"{where}.{key}")
    return names


def _run_name(value: Any, runs: dict[str, RunSpec], where: str) -> str:
    if value not in runs:
        raise GankitError(
            f"{where}: run '{value}' is not defined under runs:{closest(str(value), list(runs))}; "
            f"defined: {', '.join(runs)}"
        )
    return str(value)


def _check(raw: Any, runs: dict[str, RunSpec], where: str) -> Check:
    kind = _need(raw, "kind", where, str)
    if kind not in CHECK_FIELDS:
        raise GankitError(
            f"{where}.kind: unknown check kind '{kind}'{closest(kind, list(CHECK_FIELDS))}; "
            f"choose one of: {', '.join(CHECK_FIELDS)}"
        )
    allowed = CHECK_FIELDS[kind] | OPTIONAL_CHECK_FIELDS.get(kind, set()) | {"kind"}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise GankitError(
            f"{where}: unknown field '{extra[0]}' for a {kind} check; allowed: {', '.join(sorted(allowed))}"
        )
    metric = _need(raw, "metric", where, str)
    if metric not in METRICS:
        raise GankitError(
            f"{where}.metric: unknown metric '{metric}'{closest(metric, METRICS.names())}; "
            f"choose one of: {', '.join(METRICS.names())}"
        )
    fields = {k: v for k, v in raw.items() if k not in ("kind", "metric")}
    if kind == "rank":
        _run_list(raw, "order", where, runs, "a ranking")
    elif kind == "best":
        among = _need(raw, "among", where, list)
        for r in [raw.get("winner"), *among]:
            _run_name(r, runs, f"{where}.among")
        if raw["winner"] not in among or len(among) < 2:
            raise GankitError(f"{where}: winner '{raw['winner']}' must be one of two or more runs in among")
    elif kind == "same":
        _run_list(raw, "runs", where, runs, "a 'same' check")
        if "tolerance" in raw:
            _need(raw, "tolerance", where, (int, float))
    else:
        _run_name(_need(raw, "run", where, str), runs, f"{where}.run")
        if raw.get("op") not in (">=", "<="):
            raise GankitError(f"{where}.op: expected '>=' or '<=', got {raw.get('op')!r}")
        _need(raw, "value", where, (int, float))
        req = raw.get("requires") or {}
        if not isinstance(req, dict) or set(req) - REQUIRES_KEYS:
            raise GankitError(
                f"{where}.requires: expected a mapping with keys among {', '.join(sorted(REQUIRES_KEYS))}"
            )
    return Check(kind, metric, fields)


def _budget_steps(raw: Any, where: str) -> dict[str, int]:
    """``budget_steps``: budget name -> a positive number of G updates; only budgets that count steps."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GankitError(f"{where}: budget_steps: expected a mapping of budget names to steps, e.g. {{quick: 200}}")
    stepped = [n for n in BUDGETS.names() if BUDGETS.get(n).steps is not None]
    for name, steps in raw.items():
        if name not in stepped:
            raise GankitError(
                f"{where}: budget_steps.{name}: not a budget that counts steps{closest(str(name), stepped)}; "
                f"choose among: {', '.join(stepped)}"
            )
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise GankitError(f"{where}: budget_steps.{name}: expected a positive whole number, got {steps!r}")
    return {str(k): int(v) for k, v in raw.items()}


def parse_claims(data: Any, path: Path) -> ReportClaims:
    """Validate a claims file's content (see the module docstring); GankitError names the file and the field."""
    where = str(path)
    if not isinstance(data, dict):
        raise GankitError(f"{where}: expected a mapping with report, runs, claims")
    runs: dict[str, RunSpec] = {}
    for name, spec in _need(data, "runs", where, dict).items():
        w = f"{where}: runs.{name}"
        config = _need(spec, "config", w, str)
        if not (CONFIGS_DIR / config).is_file():
            known = sorted(p.name for p in CONFIGS_DIR.glob("*.yaml"))
            raise GankitError(f"{w}.config: no shipped config '{config}' in configs/reports/{closest(config, known)}")
        extra = sorted(set(spec) - {"config", "set", "budget_fraction"})
        if extra:
            raise GankitError(f"{w}: unknown field '{extra[0]}'; allowed: config, set, budget_fraction")
        frac = spec.get("budget_fraction", 1.0)
        if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 < frac <= 1:
            raise GankitError(f"{w}.budget_fraction: expected a number in (0, 1], got {frac!r}")
        sets = spec.get("set") or {}
        if not isinstance(sets, dict):
            raise GankitError(f"{w}.set: expected a mapping of config keys to values")
        runs[str(name)] = RunSpec(str(name), config, dict(sets), float(frac))
    seeds = _need(data, "seeds", where, list)
    if (
        not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        raise GankitError(f"{where}: seeds must be a list of distinct integers")
    claims: list[Claim] = []
    for i, raw in enumerate(_need(data, "claims", where, list)):
        w = f"{where}: claims[{i}]"
        cid = _need(raw, "id", w, str)
        if any(c.id == cid for c in claims):
            raise GankitError(f"{w}.id: '{cid}' is used twice")
        claims.append(
            Claim(
                cid,
                _need(raw, "section", w, str),
                _need(raw, "quote", w, str).strip(),
                _need(raw, "their", w, str).strip(),
                _check(_need(raw, "check", w, dict), runs, f"{w}.check"),
            )
        )
    unchecked = [
        Uncheckable(
            _need(u, "section", f"{where}: not_checkable[{i}]", str),
            _need(u, "quote", f"{where}: not_checkable[{i}]", str).strip(),
            _need(u, "why", f"{where}: not_checkable[{i}]", str).strip(),
        )
        for i, u in enumerate(data.get("not_checkable") or [])
    ]
    return ReportClaims(
        str(_need(data, "report", where, str)),
        _need(data, "title", where, str),
        _need(data, "source", where, str),
        runs,
        list(seeds),
        claims,
        unchecked,
        path,
        _budget_steps(data.get("budget_steps"), where),
    )


def report_ids() -> list[str]:
    return sorted(p.stem for p in CLAIMS_DIR.glob("*.yaml"))


def load_claims(report: str | Path) -> ReportClaims:
    """The claims of report ``report`` ("001", or "1"), or of a claims file given by path."""
    p = Path(report)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise GankitError(f"claims file {p} does not exist")
    else:
        rid = str(report).zfill(3) if str(report).isdigit() else str(report)
        p = CLAIMS_DIR / f"{rid}.yaml"
        if not p.is_file():
            raise GankitError(
                f"unknown report '{report}'; choose one of: {', '.join(report_ids())} "
                f"(`gankit reproduce --list` names their claims)"
            )
    return parse_claims(load_yaml_file(p, what="claims file"), p)
