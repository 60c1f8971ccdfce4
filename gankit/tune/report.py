"""STUDY/report.html and STUDY/best.yaml: what a search found, on one self-contained page like a run's report.

The page reuses the run report's page frame, CSS and escaping (gankit.report.html) and SVG line chart
(gankit.report.svg); the scatter plots and importance bars are drawn here as inline SVG (no plotting library, no script
beyond the report's own hashed one). Parameter importances are Optuna's (``optuna.importance.get_param_importances``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..config.schema import fmt_value
from ..core.errors import GankitError
from ..core.io import atomic_write_bytes
from ..report.html import cards, data_uri, esc, fmt, page
from ..report.svg import PALETTE, nice_ticks, svg_chart
from .study import BASE_ATTR, SPEC_FILE, redact


def _scatter(
    points: list[tuple[float, float, str]],
    title: str,
    xlabel: str,
    log_x: bool = False,
    categories: list[str] | None = None,
) -> str:
    """Dots (x, y, tooltip) as inline SVG; ``categories`` puts x on evenly spaced named slots."""
    W, H, L, R, T, B = 600, 330, 60, 14, 28, 42
    pts = [(x, y, tip) for x, y, tip in points if math.isfinite(y) and math.isfinite(x) and (x > 0 or not log_x)]
    if not pts:
        return f'<p class="note">{esc(title)}: no finished trials yet.</p>'
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [tx(p[0]) for p in pts], [p[1] for p in pts]
    x0, x1 = (min(xs), max(xs)) if not categories else (-0.5, len(categories) - 0.5)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    sx = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)  # noqa: E731
    sy = lambda y: T + (y1 - y) / (y1 - y0) * (H - T - B)  # noqa: E731
    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{esc(title)}">',
        f'<text x="{W / 2}" y="17" text-anchor="middle" class="title">{esc(title)}</text>',
        f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" class="frame"/>',
    ]
    for t in nice_ticks(y0, y1, 4):
        out.append(
            f'<line x1="{L}" x2="{W - R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
            f'<text x="{L - 5}" y="{sy(t) + 4:.1f}" text-anchor="end">{esc(fmt(t))}</text>'
        )
    if categories:
        for i, c in enumerate(categories):
            out.append(f'<text x="{sx(i):.1f}" y="{H - B + 15}" text-anchor="middle">{esc(c[:14])}</text>')
    else:
        for t in nice_ticks(x0, x1, 4):
            label = fmt(10**t) if log_x else fmt(t)
            out.append(f'<text x="{sx(t):.1f}" y="{H - B + 15}" text-anchor="middle">{esc(label)}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 5}" text-anchor="middle">{esc(xlabel)}</text>')
    for x, y, tip in pts:
        out.append(
            f'<circle cx="{sx(tx(x)):.1f}" cy="{sy(y):.1f}" r="4" fill="{PALETTE[0]}" fill-opacity=".7">'
            f"<title>{esc(tip)}</title></circle>"
        )
    out.append("</svg>")
    return f'<figure class="plot">{"".join(out)}</figure>'


LOG_SPAN = 10.0  # scores spanning more than this ratio are drawn on a log axis


def wide_positive(values: list[float]) -> bool:
    """True when ``values`` are all positive and span more than LOG_SPAN: on a linear axis an early trial's FD of 300
    would squash the complete trials' 15-25 into one line; a log axis keeps both readable."""
    vals = [v for v in values if math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > LOG_SPAN


def _bars(values: dict[str, float], title: str) -> str:
    """Horizontal bars (label -> share in [0, 1]) as inline SVG."""
    if not values:
        return f'<p class="note">{esc(title)}: needs at least two finished trials that differ.</p>'
    W, row, L = 640, 24, 220
    H = 30 + row * len(values)
    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{esc(title)}">',
        f'<text x="{W / 2}" y="17" text-anchor="middle" class="title">{esc(title)}</text>',
    ]
    top = max(values.values()) or 1.0
    for i, (k, v) in enumerate(values.items()):
        y = 28 + i * row
        w = (W - L - 70) * (v / top)
        out.append(
            f'<text x="{L - 6}" y="{y + 15}" text-anchor="end">{esc(k)}</text>'
            f'<rect x="{L}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{esc(k)}: {v:.3f}</title></rect>"
            f'<text x="{L + w + 6:.1f}" y="{y + 15}">{esc(f"{v:.2f}")}</text>'
        )
    out.append("</svg>")
    return f'<figure class="plot">{"".join(out)}</figure>'


def _importances(study: Any) -> dict[str, float]:
    from optuna.importance import get_param_importances

    import warnings

    try:
        with warnings.catch_warnings():  # "too few trials": the page says so beside the bars
            warnings.simplefilter("ignore")
            # of the score alone when there are several objectives (Optuna asks which one)
            target = {"target": lambda t: t.values[0]} if len(study.directions) > 1 else {}
            return {k: float(v) for k, v in get_param_importances(study, **target).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):  # too few trials, or none that differ
        return {}


def _trial_rows(study: Any, root: Path, columns: list[str]) -> str:
    """The table of trials; ``columns`` names the objectives (the score first)."""
    keys = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
    n_obj = len(columns)
    head = ["trial", "state", *columns, "steps", "CPU s", *keys, "note", "run"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        note = ua.get("error") or (f"pruned at step {ua['pruned_at']}" if ua.get("pruned_at") is not None else "")
        if t.system_attrs.get("failed_trial") is not None:
            note = (note + "; " if note else "") + (
                f"retry of trial {t.system_attrs['retry_history'][-1]}, from step {ua.get('resumed_from_step')}"
            )
        if ua.get(BASE_ATTR):  # queued by --enqueue-base: the recipe the search started from
            note = (note + "; " if note else "") + "base config"
        if ua.get("interrupted_at"):
            note = (note + "; " if note else "") + "stopped by a signal"
        folder = ua.get("folder")
        link = ""
        if folder and (root / folder / "report.html").is_file():
            link = f'<a href="{esc(folder)}/report.html">{esc(folder)}</a>'
        elif folder:
            link = esc(folder)
        cells = [
            _num(t.number),
            f"<td>{esc(t.state.name.lower())}</td>",
            *[_num(v) for v in _values(t, n_obj)],
            _num(ua.get("steps")),
            _num(ua.get("cpu_seconds")),
            *[_num(t.params.get(k)) for k in keys],
            f"<td>{esc(note)}</td>",
            f"<td>{link}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    th = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    return (
        f'<div class="scroll"><table class="sortable"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _num(v: Any) -> str:
    if v is None:
        return "<td></td>"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        text = fmt(float(v)) if isinstance(v, float) else str(v)
        return f'<td class="num" data-v="{esc(repr(float(v)))}">{esc(text)}</td>'
    return f"<td>{esc(fmt_value(v))}</td>"


def best_trial(study: Any) -> Any | None:
    multi = len(study.directions) > 1
    # several objectives: the trials no other trial beats in every objective (Optuna's Pareto front), and of those the
    # one with the best first objective (the score): the front's most accurate recipe
    pool = study.best_trials if multi else study.get_trials(deepcopy=False)
    done = [t for t in pool if t.state.name == "COMPLETE" and score_of(t) is not None and math.isfinite(score_of(t))]
    if not done:
        return None
    pick = min if study.directions[0].name == "MINIMIZE" else max
    return pick(done, key=score_of)


def score_of(t: Any) -> float | None:
    """A trial's score (its first objective): its value, or the last reported score of a pruned trial."""
    return t.values[0] if t.values else None


def _values(t: Any, n: int) -> list[float | None]:
    return list(t.values) if t.values and len(t.values) == n else [None] * n


def render_study(root: Path, study: Any, spec: dict[str, Any]) -> str:
    metric = spec.get("metric", "score")
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    best = best_trial(study)
    cpu = sum(float(t.user_attrs.get("cpu_seconds") or 0) for t in trials)
    parts = [
        f"<h1>gankit study {esc(spec.get('name', root.name))}</h1>",
        f'<p class="path">{esc(root)} · storage {esc(redact(str(spec.get("storage", ""))))}</p>',
        cards(
            [
                ("trials complete", states.count("COMPLETE")),
                ("pruned", states.count("PRUNED")),
                ("failed", states.count("FAIL")),
                ("running", states.count("RUNNING")),
                (f"best {metric}", None if best is None else fmt(score_of(best))),
                ("best trial", None if best is None else best.number),
                ("CPU hours (all trials)", f"{cpu / 3600:.3f}"),
            ]
        ),
    ]
    ref = spec.get("reference", {})
    parts.append(
        f'<p class="note">Score: {esc(metric)} at the end of each trial\'s budget '
        f"({esc(', '.join(f'{k}={fmt_value(v)}' for k, v in spec.get('flags', {}).items() if k.startswith('train.') and v))}); "
        f"{esc(spec.get('direction', 'minimize'))}. Sampler {esc(spec.get('sampler'))}, pruner "
        f"{esc(spec.get('pruner'))}. "
        + (
            f"Reference: {esc(ref.get('holdout'))} {esc(ref.get('reference_images', ''))} (sha256 "
            f"{esc(ref.get('reference_sha256', ''))}), features {esc(ref.get('extractor', ''))}."
            if ref.get("holdout")
            else ""
        )
        + "</p>"
    )

    # optimization history: every finished trial, and the best so far
    # Scores of complete trials only: a pruned trial's value is its last training-time score, not a result.
    def finite(t: Any) -> bool:
        return score_of(t) is not None and math.isfinite(score_of(t))

    order = sorted((t for t in trials if t.state.name == "COMPLETE" and finite(t)), key=lambda t: t.number)
    pruned = sorted((t for t in trials if t.state.name == "PRUNED" and finite(t)), key=lambda t: t.number)
    running, pts = None, []
    minimize = study.directions[0].name == "MINIMIZE"
    for t in order:
        running = score_of(t) if running is None else (min if minimize else max)(running, score_of(t))
        pts.append((t.number, running))
    parts.append('<h2>Optimization history</h2><div class="plots">')
    history = [
        ("complete: final score", [(t.number, score_of(t)) for t in order]),
        ("best so far", pts),
        ("pruned: last score", [(t.number, score_of(t)) for t in pruned]),
    ]
    parts.append(
        svg_chart(
            history,
            f"{metric} per trial",
            xlabel="trial",
            dots=True,
            log_y=wide_positive([y for _, s in history for _, y in s]),
        )
    )
    curves = [(f"trial {t.number}", sorted(t.intermediate_values.items())) for t in trials if t.intermediate_values]
    parts.append(
        svg_chart(
            curves[:10],
            f"training-time {metric} (what the pruner sees)",
            xlabel="step",
            log_y=wide_positive([y for _, s in curves[:10] for _, y in s]),
        )
        if curves
        else '<p class="note">no training-time scores yet.</p>'
    )
    parts.append("</div>")
    parts.append('<h2>Parameter importances</h2><div style="max-width:640px">')
    parts.append(_bars(_importances(study), "importance (Optuna's default evaluator; shares sum to 1)"))
    parts.append("</div>")
    parts.append('<h2>Score against each parameter</h2><div class="plots">')
    space = spec.get("space", {})
    for key, d in space.items():
        xs: list[tuple[float, float, str]] = []
        cats = None
        if d["kind"] == "choice":
            cats = [fmt_value(c) for c in d["choices"]]
        for t in order:
            if key not in t.params:
                continue
            v = t.params[key]
            x = float(cats.index(fmt_value(v))) if cats else float(v)
            xs.append((x, score_of(t), f"trial {t.number}: {key}={fmt_value(v)}, {metric} {fmt(score_of(t))}"))
        parts.append(_scatter(xs, key, key, log_x=d["kind"] == "loguniform", categories=cats))
    parts.append("</div>")
    columns = objective_labels(spec)
    if len(columns) > 1:
        parts.append(_pareto_section(study, columns))
    parts.append("<h2>Trials</h2>" + _trial_rows(study, root, columns))
    if best is not None:
        folder = root / str(best.user_attrs.get("folder", ""))
        grids = sorted((folder / "samples").glob("step-*.png")) if folder.is_dir() else []
        parts.append(f"<h2>Best trial: {esc(best.number)}</h2>")
        parts.append(
            '<p class="note">'
            + esc(", ".join(f"{k}={fmt_value(v)}" for k, v in best.params.items()))
            + ". Train it for real: <code>gankit train "
            + esc(root / "best.yaml")
            + "</code></p>"
        )
        if grids:
            parts.append(
                f'<figure><img src="{data_uri(grids[-1])}" alt="samples of the best trial">'
                f"<figcaption>{esc(grids[-1].name)}</figcaption></figure>"
            )
        parts.append(_seeds_section(root, best, metric))
    return page(f"gankit study {spec.get('name', root.name)}", "\n".join(parts))


def _seeds_section(root: Path, best: Any, metric: str) -> str:
    """The best trial's parameters on more seeds (``--best-seeds``): a row per seed and their mean ± std (n)."""
    from ..report import SeedGroup
    from .seeds import SEEDS_DIR, seed_scores, spread

    rows = seed_scores(root, best.number, metric)
    if not rows:
        return (
            '<p class="note">The best trial on more seeds: not run (<code>gankit tune ... --best-seeds K</code> '
            "trains its parameters on K seeds the search did not use).</p>"
        )
    stat = spread(rows, metric)
    body = []
    for r in rows:
        rel = r["folder"].relative_to(root)
        link = (
            f'<a href="{esc(rel.as_posix())}/report.html">{esc(rel.as_posix())}</a>'
            if (r["folder"] / "report.html").is_file()
            else esc(rel.as_posix())
        )
        body.append(f"<tr>{_num(r['seed'])}{_num(r['steps'])}{_num(r['score'])}<td>{link}</td></tr>")
    body.append(
        f'<tr><td>mean ± std</td><td></td><td class="num">{esc(SeedGroup.cell(stat) or "needs 2 finished seeds")}'
        f"</td><td></td></tr>"
    )
    return (
        f"<h2>The best trial on {len(rows)} more seed(s)</h2>"
        f'<p class="note">Trial {esc(best.number)}\'s parameters trained again on seeds the search did not use, '
        f"with the same budget and scoring (folders under {esc(SEEDS_DIR)}/). The trial itself scored "
        f"{esc(fmt(score_of(best)))}: the best of many trials is partly its seed's luck, so the mean over new seeds "
        f"is the fairer figure.</p>"
        f'<div class="scroll"><table class="seeds"><thead><tr><th scope="col">seed</th><th scope="col">steps</th>'
        f'<th scope="col">{esc(metric)}</th><th scope="col">run</th></tr></thead><tbody>{"".join(body)}</tbody>'
        f"</table></div>"
    )


def objective_labels(spec: dict[str, Any]) -> list[str]:
    """Column names of a study's objectives: its score (e.g. eval/fd), then any second objective."""
    return [spec.get("metric", "score"), *spec.get("objectives", ["score"])[1:]]


def _others(spec: dict[str, Any], best: Any) -> str:
    """best.yaml's header: the second objective's value of the chosen point, and the rule that chose it."""
    labels = objective_labels(spec)
    if len(labels) < 2 or not best.values:
        return ""
    return f", {labels[1]} {best.values[1]:.6g} (of the Pareto front, the trial with the best {labels[0]})"


def _pareto_section(study: Any, labels: list[str]) -> str:
    """Every complete trial in the plane of the two objectives, the Pareto front (trials no other beats in both)
    drawn as a highlighted step line, and the chosen point (best.yaml) marked."""
    done = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE" and t.values and all(math.isfinite(v) for v in t.values)
    ]
    front = {t.number for t in study.best_trials}
    chosen = best_trial(study)
    pts = [
        (
            t.values[1],
            t.values[0],
            t.number in front,
            chosen is not None and t.number == chosen.number,
            f"trial {t.number}: {labels[0]} {fmt(t.values[0])}, {labels[1]} {fmt(t.values[1])}"
            + (" (Pareto front)" if t.number in front else ""),
        )
        for t in done
    ]
    dirs = " and ".join(
        f"{'lower' if d.name == 'MINIMIZE' else 'higher'} {lab}" for d, lab in zip(study.directions, labels)
    )
    return (
        "<h2>Pareto front</h2>"
        f'<p class="note">Two objectives ({esc(dirs)} are better). The front (highlighted) holds the trials that no '
        f"other trial beats in both; best.yaml is the front's trial with the best {esc(labels[0])} (ringed). "
        f"{len(front)} of {len(done)} complete trials are on it.</p>" + _pareto_svg(pts, labels)
    )


def _pareto_svg(pts: list[tuple[float, float, bool, bool, str]], labels: list[str]) -> str:
    """Inline SVG: x = second objective, y = score; front points filled and joined, others hollow."""
    if not pts:
        return '<p class="note">Pareto front: no complete trials yet.</p>'
    W, H, L, R, T, B = 600, 340, 64, 14, 28, 44
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    padx, pady = (x1 - x0) * 0.08 or abs(x0) * 0.05 or 1.0, (y1 - y0) * 0.08 or abs(y0) * 0.05 or 1.0
    x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - pady, y1 + pady
    sx = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)  # noqa: E731
    sy = lambda y: T + (y1 - y) / (y1 - y0) * (H - T - B)  # noqa: E731
    out = [
        f'<svg class="chart pareto" viewBox="0 0 {W} {H}" role="img" aria-label="Pareto front">',
        f'<text x="{W / 2}" y="17" text-anchor="middle" class="title">{esc(labels[0])} against {esc(labels[1])}</text>',
        f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" class="frame"/>',
    ]
    for t in nice_ticks(y0, y1, 4):
        out.append(
            f'<line x1="{L}" x2="{W - R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
            f'<text x="{L - 5}" y="{sy(t) + 4:.1f}" text-anchor="end">{esc(fmt(t))}</text>'
        )
    for t in nice_ticks(x0, x1, 4):
        out.append(f'<text x="{sx(t):.1f}" y="{H - B + 15}" text-anchor="middle">{esc(fmt(t))}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">{esc(labels[1])}</text>')
    line = sorted((x, y) for x, y, on, _, _ in pts if on)
    if len(line) > 1:
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        out.append(f'<polyline points="{path}" fill="none" stroke="{PALETTE[1]}" stroke-width="2" class="front"/>')
    for x, y, on, chosen, tip in pts:
        colour = PALETTE[1] if on else PALETTE[0]
        fill = f'fill="{colour}"' if on else f'fill="none" stroke="{colour}"'
        out.append(
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{5 if on else 4}" {fill}'
            f"{' class=' + chr(34) + 'onfront' + chr(34) if on else ''}><title>{esc(tip)}</title></circle>"
        )
        if chosen:
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="9" fill="none" stroke="{PALETTE[2]}" '
                f'stroke-width="2" class="chosen"><title>best.yaml: {esc(tip)}</title></circle>'
            )
    out.append("</svg>")
    return f'<figure class="plot">{"".join(out)}</figure>'


def best_yaml(spec: dict[str, Any], best: Any) -> str:
    """A complete config for the best trial's parameters: base config + flags + parameters, without tune's own keys
    (the held-out part, the scoring cadence), so `gankit train best.yaml` trains the recipe on all the data."""
    from ..config.layering import resolve
    from ..core.yamlio import dump_yaml
    from ..nets import MODELS

    # where the search ran (its threads, its device) is not part of the recipe: the machine that trains it decides.
    # Nor is how often it scored trials (--eval-every lands in the flags too): a run of best.yaml would spend its
    # budget on those evaluations, and at a CPU budget lose steps against the recipe it is compared with.
    search_only = ("train.threads", "train.device", "train.eval_every", "train.checkpoint_every")
    flags = {k: v for k, v in spec.get("flags", {}).items() if k not in search_only}
    cfg = resolve(file=spec.get("config"), overrides={**flags, **best.params})
    d = cfg.to_dict()
    # Only the keys the chosen model reads: the others are refused when the file is read back as a config.
    fields = MODELS.get(cfg.model.name).fields
    d["model"] = {k: v for k, v in d["model"].items() if k == "name" or k in fields}
    head = (
        f"# gankit tune: the best trial ({best.number}) of study {spec.get('name')!r}, "
        f"{spec.get('metric')} {score_of(best):.6g}"
        + _others(spec, best)
        + "\n# params: "
        + json.dumps(best.params, sort_keys=True, default=str)
        + "\n# `gankit train <this file>` trains it\n"
    )
    return head + dump_yaml(d)


def write_study_outputs(root: Path, study: Any) -> list[Path]:
    """STUDY/report.html, and STUDY/best.yaml once a trial has finished."""
    spec = json.loads((root / SPEC_FILE).read_text())
    out = [root / "report.html"]
    atomic_write_bytes(out[0], render_study(root, study, spec).encode("utf-8"))
    best = best_trial(study)
    if best is not None:
        out.append(root / "best.yaml")
        atomic_write_bytes(out[1], best_yaml(spec, best).encode("utf-8"))
    return out


def is_study_dir(path: Path) -> bool:
    return (path / SPEC_FILE).is_file()


def report_study(root: Path, storage: str | None = None) -> list[Path]:
    """`gankit report STUDY`: the study's report.html and best.yaml, from its storage (default STUDY/study.db)."""
    from .study import need_optuna, open_storage

    optuna = need_optuna()
    spec = json.loads((root / SPEC_FILE).read_text())
    url = storage or spec.get("storage", "")
    if "***" in url:
        raise GankitError(f"study {root} lives in {url}; give the storage URL with its password: --storage URL")
    try:
        study = optuna.load_study(study_name=spec["name"], storage=open_storage(url))
    except KeyError:
        raise GankitError(
            f"study {spec['name']!r} is not in {redact(url)}; give its storage with --storage URL"
        ) from None
    return write_study_outputs(root, study)
