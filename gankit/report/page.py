"""One self-contained HTML page per run or per comparison: pictures first, numbers beside them.

Reads runs with :mod:`gankit.report.runs`, draws curves with :mod:`gankit.report.svg` and builds the page from the
parts in :mod:`gankit.report.html` (escaping, tables, the hashed script). Every string that comes from the user's
world (run names, paths, config values, class names, metric keys) goes through :func:`esc`.

Entry point: :func:`write_report` (``train``, ``eval``, ``compare`` and ``gankit report`` call it).
"""

from __future__ import annotations

from types import SimpleNamespace

import base64
import io
from pathlib import Path
from typing import Any

from ..core.errors import GankitError
from ..core.io import series
from ..viz import thin
from .html import cards, data_uri, duration, esc, fmt, img, page, stepper, table, value_text
from .runs import (
    RunData,
    best_keys,
    best_step,
    default_config,
    config_diff,
    differing_keys,
    eval_protocol,
    images_per_s,
    last_value,
    protocol_warnings,
    read_run,
    report_run_dirs,
    seed_groups,
    seed_scores,
    spread_table,
)
from .svg import svg_chart

MAX_FRAMES = 60  # sample grids on the slider; more are thinned evenly (first and last kept) so the page stays small
BASELINES = {
    "is_mean": ("IS", "is_real_mean"),
    "nn_pixel_samples": ("NN distance, pixels", "nn_pixel_real"),
    "nn_feature_samples": ("NN distance, features", "nn_feature_real"),
}
METRIC_LABELS = {
    "fd": "FD",
    "kid_mean": "KID",
    "kid_std": "KID std",
    "is_std": "IS std",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
    "parzen_mean": "Parzen log-likelihood",
    "classes_hit": "classes hit",
    "label_kl_uniform": "KL(labels || uniform)",
    "label_accuracy": "label accuracy",
    "l1": "L1",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "fd_ab": "FD, A→B vs real B",
    "fd_ba": "FD, B→A vs real A",
    "cycle_l1_a": "cycle L1, A→B→A",
    "cycle_l1_b": "cycle L1, B→A→B",
}


# ---------------------------------------------------------------------------------------------------------------------
# pictures from the run


def tensor_uri(images: Any, nrow: int) -> str:
    """(N, C, H, W) float in [-1, 1] -> a PNG data URI of the grid (small images enlarged, as in samples/)."""
    from ..viz import grid, to_pil, upscale_for

    buf = io.BytesIO()
    to_pil(grid(images, nrow), upscale_for(images.shape[-2])).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def interpolation_uri(run_dir: Path, rows: int = 4, steps: int = 8, seed: int = 0) -> str | None:
    """A lerp strip from the run's latest checkpoint (one class per row when conditional); None when the run is not a
    GAN or has no checkpoint to load."""
    import torch

    from ..tasks import TrainedGenerator, load
    from ..viz import lerp

    try:
        gen = load(run_dir, want=TrainedGenerator)
    except (GankitError, FileNotFoundError, KeyError):
        return None
    z = gen.noise(2 * rows, seed)
    t = torch.linspace(0, 1, steps)
    zs = torch.cat([lerp(z[2 * r : 2 * r + 1], z[2 * r + 1 : 2 * r + 2], t) for r in range(rows)])  # (rows*steps, z)
    labels = (torch.arange(rows) % gen.num_classes).repeat_interleave(steps) if gen.num_classes else None
    return tensor_uri(gen.generate(zs, labels), steps)


# ---------------------------------------------------------------------------------------------------------------------
# curves


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return series(rows, key)


def _keys(rows: list[dict[str, Any]], prefix: str) -> list[str]:
    return sorted({k for r in rows for k in r if k.startswith(prefix)})


def _metrics_section(metrics: dict[str, Any]) -> str:
    """metrics.json (`gankit eval`) as metric | value | real data, the baselines beside the numbers they anchor."""
    if not metrics:
        return ""
    shown = {b for _, b in BASELINES.values()}
    rows: list[list[Any]] = []
    for key, v in metrics.items():
        if key in shown or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if key in BASELINES:
            label, base = BASELINES[key]
            rows.append([label, v, metrics.get(base)])
        elif key in METRIC_LABELS:
            rows.append([METRIC_LABELS[key], v, None])
    if not rows:
        return ""
    n = metrics.get("n_samples")
    where = ", ".join(
        f"{k} {esc(metrics[k])}"
        for k in (
            "n_samples",
            "n_real_test",
            "features_id",
            "step",
            "split",
            "protocol",
            "resize",
            "features_sha256",
            "fd_reference",
        )
        if metrics.get(k) is not None
    )
    if all(r[2] is None for r in rows):  # nothing to read against (pix2pix scores compare with targets already)
        rows = [r[:2] for r in rows]
    head = ["metric", "value", "real data"][: len(rows[0])]
    return (
        "<h2>Metrics (gankit eval)</h2>"
        + table(head, rows)
        + f'<p class="note">{where}.{" Real-data columns: the same statistic of held-out real images." if n else ""}'
        "</p>"
    )


def run_section(run: RunData, defaults: dict[str, Any] | None = None, interpolation: bool = True) -> str:
    """The body of a one-run report."""
    cfg = run.config
    shape = run.meta.get("image_shape")
    best = best_step(run.rows)
    ips = images_per_s(run.rows)
    steps = run.summary.get("step", next((r["step"] for r in reversed(run.rows) if "step" in r), None))
    parts = [f"<h1>{esc(run.name)}</h1>", f'<p class="path">{esc(run.dir.resolve())}</p>']
    parts.append("<h2>What was trained</h2>")
    parts.append(
        cards(
            [
                ("model", cfg.get("model.name")),
                ("data", cfg.get("data.name")),
                ("image shape", "×".join(map(str, shape)) if isinstance(shape, list) else None),
                ("training images", run.meta.get("num_images")),
                ("steps", steps),
                ("epochs", run.summary.get("epoch")),
                ("stopped by", run.summary.get("stopped_by") or ("still running" if not run.summary else None)),
                ("time", duration(run.summary.get("seconds"))),
                ("images/s (median)", f"{ips:,.0f}" if ips is not None else None),
                (
                    "hardware",
                    " · ".join(
                        str(x)
                        for x in (
                            run.meta.get("device"),
                            f"{run.meta['threads']} threads" if run.meta.get("threads") else None,
                        )
                        if x
                    ),
                ),
                (f"best {best[0]}" if best else "best", f"{fmt(best[2])} at step {best[1]}" if best else None),
            ]
        )
    )
    if isinstance(origin := run.meta.get("init_from"), dict):  # train.init_from: where the weights came from
        parts.append(
            f'<p class="note">fine-tuned from {esc(origin.get("checkpoint"))} (step {esc(origin.get("step"))}'
            f"; {esc(', '.join(map(str, origin.get('parts', []))))}; model {esc(origin.get('model'))} on "
            f"{esc(origin.get('data'))})</p>"
        )
    if run.meta.get("class_names") and int(cfg.get("model.num_classes") or 0):
        parts.append(f'<p class="note">classes: {esc(", ".join(map(str, run.meta["class_names"])))}</p>')
    if defaults is None:
        defaults = default_config(cfg.get("model.name"), cfg.get("data.name"))
    diff = config_diff(cfg, defaults)
    parts.append("<h3>Config keys that differ from the defaults</h3>")
    parts.append(
        table(
            ["key", "value", "default"],
            [[k, value_text(v), value_text(d)] for k, (v, d) in diff.items()],
            cls="configdiff",
        )
        if diff
        else '<p class="note">none: the run used the defaults.</p>'
    )

    parts.append("<h2>Curves</h2>")
    marks = [(best[1], f"best (step {best[1]})")] if best else []
    charts = [
        svg_chart([(k.split("/", 1)[1], _series(run.rows, k)) for k in _keys(run.rows, "loss/")], "losses", marks=marks)
    ]
    charts += [svg_chart([(k, _series(run.rows, k))], k, marks=marks, dots=True) for k in _keys(run.rows, "eval/")]
    others = [k for k in _keys(run.rows, "") if "/" in k and not k.startswith(("loss/", "eval/"))]
    if others:
        charts.append(svg_chart([(k, _series(run.rows, k)) for k in others], "other logged values", marks=marks))
    parts.append(f'<div class="plots">{"".join(charts)}</div>')

    from ..tasks import TASKS

    # A family this gankit does not have: its pictures and scores, under neutral titles.
    spec = (
        TASKS.get(run.family)
        if run.family
        else SimpleNamespace(
            preview_title="Previews over training",
            preview_caption="",
            best_metric=("", "min"),
            validation_title="",
            latent_interpolation=False,
        )
    )
    frames = thin(run.grids, MAX_FRAMES)
    if frames:
        parts.append(f"<h2>{esc(spec.preview_title)}</h2>")
        pics = []
        for step, path in frames:
            one = [(data_uri(path), spec.preview_caption)]
            if step in run.class_grids:
                one.append((data_uri(run.class_grids[step]), "one row per class"))
            pics.append((step, one))
        parts.append(
            stepper(
                pics,
                "Drag the slider to see the grids at earlier steps"
                + (f" ({len(frames)} of {len(run.grids)} shown)." if len(frames) < len(run.grids) else "."),
            )
        )
    key, mode = spec.best_metric
    ev = [r for r in run.rows if isinstance(r.get(key), (int, float))]
    scores = sorted({k for r in ev for k in r if k.startswith("eval/")})
    if ev and spec.validation_title:
        b = (min if mode == "min" else max)(ev, key=lambda r: r[key])
        rows = [
            ["last", ev[-1].get("step"), *[ev[-1].get(k) for k in scores]],
            [
                f"best ({'lowest' if mode == 'min' else 'highest'} {key.split('/', 1)[1]})",
                b.get("step"),
                *[b.get(k) for k in scores],
            ],
        ]
        parts.append(f"<h2>{esc(spec.validation_title)}</h2>")
        parts.append(table(["", "step", *[k.split("/", 1)[1] for k in scores]], rows))
    if spec.latent_interpolation and interpolation:
        uri = interpolation_uri(run.dir)
        if uri:
            parts.append("<h2>Latent interpolation</h2>")
            parts.append(
                f"<figure>{img(uri, 'latent interpolation', 'strip')}<figcaption>each row walks in a straight "
                f"line between two noise vectors (latest checkpoint"
                f"{', one class per row' if int(cfg.get('model.num_classes') or 0) else ''})</figcaption></figure>"
            )
    if run.memorisation is not None:
        parts.append("<h2>Nearest training neighbours</h2>")
        parts.append(
            f"<figure>{img(data_uri(run.memorisation), 'samples and their nearest training images')}"
            "<figcaption>each sample beside its nearest training images (from gankit eval): near copies "
            "mean the generator memorised</figcaption></figure>"
        )
    parts.append(_metrics_section(run.metrics))
    return "\n".join(p for p in parts if p)


def runs_section(runs: list[RunData]) -> str:
    """The body of a comparison of several runs."""
    differing = differing_keys([r.config for r in runs])
    names = [r.name for r in runs]
    for r in runs:  # the same folder name twice (runs of different sweeps): the parent tells them apart
        r.label = f"{r.dir.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name
        r.differs = {k: r.config.get(k) for k in differing}
    eval_keys = sorted({k for r in runs for k in _keys(r.rows, "eval/")})
    metric_keys = [
        k for k in (*METRIC_LABELS, *BASELINES) if any(isinstance(r.metrics.get(k), (int, float)) for r in runs)
    ]
    protocols = [eval_protocol(r.metrics) for r in runs]
    warnings = protocol_warnings(protocols)
    head = [
        "run",
        *differing,
        "steps",
        "seconds",
        "images/s",
        "last loss/d",
        "last loss/g",
        *[f"last {k}" for k in eval_keys],
        *[f"best {k}" for k in eval_keys if k in dict(best_keys())],
        *[METRIC_LABELS.get(k) or BASELINES[k][0] for k in metric_keys],
    ]
    if any(protocols):
        head += ["eval protocol", "warning"]
    rows = []
    for r, proto, warn in zip(runs, protocols, warnings):
        best = best_step(r.rows)
        rows.append(
            [
                r.label,
                *[value_text(r.config.get(k)) for k in differing],
                r.summary.get("step", last_value(r.rows, "step")),
                r.summary.get("seconds"),
                images_per_s(r.rows),
                last_value(r.rows, "loss/d"),
                last_value(r.rows, "loss/g"),
                *[last_value(r.rows, k) for k in eval_keys],
                *[(best[2] if best and best[0] == k else None) for k in eval_keys if k in dict(best_keys())],
                *[r.metrics.get(k) for k in metric_keys],
                *([proto, warn] if any(protocols) else []),
            ]
        )
    parts = [
        f"<h1>{len(runs)} runs compared</h1>",
        f'<p class="note">config keys that differ: {esc(", ".join(differing) or "none")}. Click a column '
        "header to sort.</p>",
        table(head, rows, sortable=True, cls="runs"),
    ]
    if any(warnings):
        parts.insert(
            2,
            '<p class="note warning">⚠ the runs\' gankit eval results were made under different protocols '
            "(feature network, resize, N, split or reference): their metric columns are not comparable; "
            "see the eval protocol column.</p>",
        )
    parts.append("<h2>Curves</h2>")
    charts = [
        svg_chart([(r.label, _series(r.rows, k)) for r in runs], k)
        for k in ("loss/d", "loss/g")
        if any(_series(r.rows, k) for r in runs)
    ]
    charts += [svg_chart([(r.label, _series(r.rows, k)) for r in runs], k, dots=True) for k in eval_keys]
    parts.append(f'<div class="plots">{"".join(charts)}</div>')
    parts.append("<h2>Last sample grids</h2>")
    cells = []
    for r in runs:
        if r.grids:
            step, path = r.grids[-1]
            cells.append(
                f"<figure>{img(data_uri(path), f'{r.label}, step {step}')}<figcaption>{esc(r.label)} "
                f"(step {esc(step)})</figcaption></figure>"
            )
        else:
            cells.append(f'<figure><p class="note">no samples yet</p><figcaption>{esc(r.label)}</figcaption></figure>')
    parts.append(f'<div class="gallery">{"".join(cells)}</div>')
    if groups := seed_groups([r.config for r in runs], seed_scores(runs)):
        head, rows = spread_table(groups, [[runs[i].config.get("seed") for i in g.members] for g in groups])
        parts.append("<h2>Over seeds</h2>")
        parts.append(
            '<p class="note">runs whose configs differ only by the seed: mean ± sample standard deviation '
            "(n = runs with that score). eval/* values are each run's last.</p>"
        )
        parts.append(table(head, rows, cls="seeds"))
    if differing:
        parts.append("<h2>Config keys that differ</h2>")
        parts.append(
            table(
                ["key", *[r.label for r in runs]],
                [[k, *[value_text(r.config.get(k)) for r in runs]] for k in differing],
                cls="configdiff",
            )
        )
    return "\n".join(parts)


def render(run_dirs: list[Path], interpolation: bool = True) -> str:
    """The HTML text of the report for ``run_dirs`` (one run: its own page; several: a comparison)."""
    if not run_dirs:
        raise GankitError("no runs to report on: pass at least one run folder")
    runs = [read_run(d) for d in run_dirs]
    if len(runs) == 1:
        return page(f"gankit run {runs[0].name}", run_section(runs[0], interpolation=interpolation))
    return page(f"gankit: {len(runs)} runs compared", runs_section(runs))


def write_report(run_dirs: list[Path], out: Path | None = None, interpolation: bool = True, say: Any = None) -> Path:
    """Write one self-contained HTML report for ``run_dirs`` to ``out`` (default: RUN/report.html for one run);
    returns the path. ``run_dirs`` may hold sweep folders and, with other runs, files a glob brought along (see
    :func:`report_run_dirs`; ``say`` gets the notes, stderr by default). Raises GankitError when a lone folder is not
    a run, or when ``out`` is missing for several runs."""
    import sys

    from ..core.io import atomic_write_bytes

    run_dirs = report_run_dirs(
        [Path(d) for d in run_dirs], say if say is not None else (lambda m: print(m, file=sys.stderr))
    )
    if out is None:
        if len(run_dirs) != 1:
            raise GankitError("a report on several runs needs --out FILE.html")
        out = run_dirs[0] / "report.html"
    out = Path(out)
    if out.is_dir():
        raise GankitError(f"--out {out} is a folder; give a file name such as {out / 'report.html'}")
    text = render(run_dirs, interpolation=interpolation)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode("utf-8"))
    return out
