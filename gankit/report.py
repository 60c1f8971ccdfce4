"""One self-contained HTML page per run or per comparison: pictures first, numbers beside them.

The page works offline and alone: images are inlined as base64 PNG data URIs, plots are inline SVG drawn here, and the
one small script is inline and allowed by its hash in the page's Content-Security-Policy (so no other script, injected
or not, can run). Every string that comes from the user's world (run names, paths, config values, class names, metric
keys) goes through :func:`esc`.

Entry point: :func:`write_report` (``train``, ``eval``, ``compare`` and ``gankit report`` call it).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.errors import GankitError
from .viz import thin
from .core.io import series

MAX_FRAMES = 60  # sample grids on the slider; more are thinned evenly (first and last kept) so the page stays small
def _best_keys() -> tuple[tuple[str, str], ...]:
    """The score the `best` checkpoint follows, for every model family."""
    from .tasks import TASKS

    return tuple(spec.best_metric for _, spec in TASKS.items())
# Watching options that do not change what a run learns; left out of "differs from the defaults".
QUIET_KEYS = {"train.progress", "train.threads", "train.log_every", "data.dir", "data.cache_dir"}
# metrics.json keys with a real-data value to read them against: key -> (label, baseline key)
BASELINES = {"is_mean": ("IS", "is_real_mean"), "nn_pixel_samples": ("NN distance, pixels", "nn_pixel_real"),
             "nn_feature_samples": ("NN distance, features", "nn_feature_real")}
METRIC_LABELS = {"fd": "FD", "kid_mean": "KID", "kid_std": "KID std", "is_std": "IS std", "precision": "precision",
                 "recall": "recall", "density": "density", "coverage": "coverage", "parzen_mean": "Parzen log-likelihood",
                 "classes_hit": "classes hit", "label_kl_uniform": "KL(labels || uniform)",
                 "label_accuracy": "label accuracy", "l1": "L1", "psnr": "PSNR (dB)", "ssim": "SSIM",
                 "fd_ab": "FD, A→B vs real B", "fd_ba": "FD, B→A vs real A", "cycle_l1_a": "cycle L1, A→B→A",
                 "cycle_l1_b": "cycle L1, B→A→B"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


# ---------------------------------------------------------------------------------------------------------------------
# escaping


def esc(value: Any) -> str:
    """Text for HTML element content or a quoted attribute value: & < > " ' become entities."""
    return html.escape(str(value), quote=True)


def md_escape(value: Any) -> str:
    """Text for one cell of a markdown table: no line breaks, and markdown/HTML punctuation shown literally."""
    text = " ".join(str(value).split())
    text = html.escape(text, quote=False)  # markdown renderers pass raw HTML through
    return re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", text)


# ---------------------------------------------------------------------------------------------------------------------
# reading a run


@dataclass
class RunData:
    """What a report shows about one run folder; everything optional except the folder and its config."""

    dir: Path
    config: dict[str, Any]  # flattened dotted keys of config.yaml
    meta: dict[str, Any]  # run.json: image_shape, class_names, recipe, device, threads
    summary: dict[str, Any]  # summary.json ({} while running)
    rows: list[dict[str, Any]]  # metrics.jsonl
    metrics: dict[str, Any]  # metrics.json of `gankit eval` ({} when not evaluated)
    grids: list[tuple[int, Path]]  # samples/step-*.png by step
    class_grids: dict[int, Path]  # samples/classes-*.png by step (conditional models)
    memorisation: Path | None
    label: str = ""
    differs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def recipe(self) -> str:
        return str(self.meta.get("recipe", "gan"))


def _json_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a file cut by a kill: report without it
    return data if isinstance(data, dict) else {}


def _step_of(p: Path) -> int | None:
    tail = p.stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def read_run_data(run_dir: str | Path) -> RunData:
    from .config.schema import read_yaml
    from .core.io import read_jsonl
    from .config.schema import flatten

    d = Path(run_dir)
    if not (d / "config.yaml").is_file():
        raise GankitError(f"{d} is not a run folder (no config.yaml); pass the --out folder of a `gankit train`")
    grids = sorted((s, p) for p in (d / "samples").glob("step-*.png") if (s := _step_of(p)) is not None)
    classes = {s: p for p in (d / "samples").glob("classes-*.png") if (s := _step_of(p)) is not None}
    mem = d / "memorisation.png"
    return RunData(d, flatten(read_yaml(d / "config.yaml")), _json_file(d / "run.json"), _json_file(d / "summary.json"),
                   read_jsonl(d / "metrics.jsonl"), _json_file(d / "metrics.json"), grids, classes,
                   mem if mem.is_file() else None)


def default_config(model: str | None = None, data: str | None = None) -> dict[str, Any]:
    """Flattened defaults a run is compared with: the model's and data set's own defaults when they resolve, else
    the plain :class:`~gankit.config.Config` defaults."""
    from .config.layering import resolve
    from .config.schema import Config
    from .config.schema import flatten

    over = {k: v for k, v in (("model.name", model), ("data.name", data)) if v}
    try:
        return flatten(resolve(overrides=over).to_dict())
    except (GankitError, KeyError, TypeError, ValueError):
        return flatten(Config().to_dict())


def config_diff(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """key -> (value, default) for the keys whose value is not the default (watching options left out)."""
    return {k: (v, defaults.get(k)) for k, v in sorted(config.items())
            if k not in QUIET_KEYS and not _same(v, defaults.get(k))}


def _same(a: Any, b: Any) -> bool:
    # YAML round trips turn 0.0 into 0 and back; numbers compare by value, everything else by its JSON form.
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
        return float(a) == float(b)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def best_step(rows: list[dict[str, Any]]) -> tuple[str, int, float] | None:
    """(key, step, value) of the best evaluation row: the lowest eval/fd, else the lowest eval/l1."""
    for key, mode in _best_keys():
        pts = [(v, s) for s, v in series(rows, key)]
        if pts:
            v, s = (min if mode == "min" else max)(pts)
            return key, int(s), float(v)
    return None


def images_per_s(rows: list[dict[str, Any]]) -> float | None:
    """The median of the logged throughputs: the first rows include start-up, the median ignores them."""
    v = sorted(r["images_per_s"] for r in rows if isinstance(r.get("images_per_s"), (int, float)))
    return v[len(v) // 2] if v else None


# ---------------------------------------------------------------------------------------------------------------------
# images


def data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
    kind = mime.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def tensor_uri(images: Any, nrow: int) -> str:
    """(N, C, H, W) float in [-1, 1] -> a PNG data URI of the grid (small images enlarged, as in samples/)."""
    from .viz import grid, to_pil, upscale_for

    buf = io.BytesIO()
    to_pil(grid(images, nrow), upscale_for(images.shape[-2])).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img(src: str, alt: str, cls: str = "") -> str:
    return f'<img src="{esc(src)}" alt="{esc(alt)}"{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>'


def interpolation_uri(run_dir: Path, rows: int = 4, steps: int = 8, seed: int = 0) -> str | None:
    """A lerp strip from the run's latest checkpoint (one class per row when conditional); None when the run is not a
    GAN or has no checkpoint to load."""
    import torch

    from .tasks import TrainedGenerator, load
    from .viz import lerp

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
# plots: inline SVG


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def svg_chart(series: list[tuple[str, list[tuple[float, float]]]], title: str, xlabel: str = "step",
              marks: list[tuple[float, str]] | None = None, dots: bool = False) -> str:
    """A line chart as inline SVG: ``series`` of (label, [(x, y), ...]); ``marks`` are dashed vertical lines
    (x, label), e.g. the best step. Scales with its container (viewBox); labels are escaped."""
    W, H, L, R, T, B = 640, 300, 60, 16, 28, 40
    pts = [p for _, s in series for p in s if math.isfinite(p[1])]
    if not pts:
        return f'<p class="note">{esc(title)}: nothing logged yet.</p>'
    xs = [p[0] for p in pts] + [m[0] for m in marks or []]
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return L + (x - x0) / (x1 - x0) * (W - L - R)

    def sy(y: float) -> float:
        return T + (y1 - y) / (y1 - y0) * (H - T - B)

    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{esc(title)}">',
           f'<text x="{W / 2}" y="18" text-anchor="middle" class="title">{esc(title)}</text>']
    for t in _nice_ticks(y0, y1):
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
                   f'<text x="{L - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{esc(_fmt(t))}</text>')
    integer_x = all(float(x).is_integer() for x in xs)  # steps: no tick at step 99.5
    for t in _nice_ticks(x0, x1, 6):
        if integer_x and not float(t).is_integer():
            continue
        out.append(f'<text x="{sx(t):.1f}" y="{H - B + 16}" text-anchor="middle">{esc(_fmt(t))}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" class="frame"/>')
    for x, label in marks or []:
        right = sx(x) > (L + W - R) / 2  # the label goes on the side with room
        out.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{T}" y2="{H - B}" class="mark"/>'
                   f'<text x="{sx(x) + (-4 if right else 4):.1f}" y="{T + 14}" class="marklabel" '
                   f'text-anchor="{"end" if right else "start"}">{esc(label)}</text>')
    for i, (label, s) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        good = [(x, y) for x, y in s if math.isfinite(y)]
        if not good:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5">'
                   f'<title>{esc(label)}</title></polyline>')
        if dots or len(good) == 1:
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"><title>{esc(label)}: step '
                    f'{esc(_fmt(x))}, {esc(_fmt(y))}</title></circle>' for x, y in good]
    out.append("</svg>")
    legend = "".join(f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{esc(label)}</span>'
                     for i, (label, _) in enumerate(series))
    return f'<figure class="plot">{"".join(out)}<figcaption class="legend">{legend}</figcaption></figure>'


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return series(rows, key)


def _keys(rows: list[dict[str, Any]], prefix: str) -> list[str]:
    return sorted({k for r in rows for k in r if k.startswith(prefix)})


# ---------------------------------------------------------------------------------------------------------------------
# page


CSS = """
:root{--fg:#1d1d1f;--muted:#666;--line:#ddd;--bg:#fff;--accent:#0b63c5}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:12px 16px 48px}
h1{font-size:1.5em;margin:.4em 0;overflow-wrap:anywhere}
h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line);padding-bottom:.2em}
h3{font-size:1em;margin:1em 0 .3em;overflow-wrap:anywhere}
.note{color:var(--muted);font-size:.9em}
.path{font-family:ui-monospace,Menlo,monospace;font-size:.85em;color:var(--muted);overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.card{border:1px solid var(--line);border-radius:8px;padding:6px 10px}
.card b{display:block;font-size:1.15em;overflow-wrap:anywhere}
.card span{color:var(--muted);font-size:.8em}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;font-size:.9em;min-width:50%}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
img{max-width:100%;height:auto;image-rendering:pixelated;display:block}
figure{margin:0}
figcaption{font-size:.85em;color:var(--muted);overflow-wrap:anywhere}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:12px}
svg.chart{width:100%;height:auto;font-size:13px;fill:var(--fg)}
svg.chart .title{font-size:15px;font-weight:600}
svg.chart .grid{stroke:#eee}
svg.chart .frame{fill:none;stroke:#bbb}
svg.chart .mark{stroke:#2a2;stroke-dasharray:4 3}
svg.chart .marklabel{fill:#2a2}
.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.frames{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:12px}
.slider{display:flex;align-items:center;gap:10px;margin:8px 0}
.slider input{flex:1;min-width:0}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
@media (max-width:600px){main{padding:8px}body{font-size:14px}}
"""

# Sorting (click a header; numbers sort as numbers, empty cells last) and the step slider. Kept static so the
# Content-Security-Policy can allow exactly this script by its hash.
SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (t) {
  t.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      t.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(r) { var c = r.cells[col]; if (!c) { return null; }
        var v = c.getAttribute('data-v'); if (v !== null) { return Number(v); }
        return c.textContent === '' ? null : c.textContent; }
      rows.sort(function (a, b) { var x = key(a), y = key(b);
        if (x === null) { return y === null ? 0 : 1; } if (y === null) { return -1; }
        var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c; });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.querySelectorAll('.stepper').forEach(function (box) {
  var input = box.querySelector('input[type=range]'), label = box.querySelector('output');
  var frames = box.querySelectorAll('[data-frame]');
  function show() { var i = Number(input.value);
    frames.forEach(function (f) { f.hidden = Number(f.getAttribute('data-frame')) !== i; });
    label.textContent = input.getAttribute('data-steps').split(' ')[i]; }
  input.addEventListener('input', show);
  show();
});
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
            "base-uri 'none'; form-action 'none'")


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_csp())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f"<body><main>\n{body}\n</main><script>{SCRIPT}</script></body></html>\n"
    )


def _num_cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return f"<td>{esc('' if v is None else str(v).lower())}</td>"
    if isinstance(v, (int, float)):
        return f'<td class="num" data-v="{esc(repr(float(v)))}">{esc(_fmt(float(v)) if isinstance(v, float) else v)}</td>'
    return f"<td>{esc(_value(v))}</td>"


def _value(v: Any) -> str:
    from .config.schema import fmt_value

    if isinstance(v, str):
        return v
    return json.dumps(v) if isinstance(v, (dict, list)) and not v else fmt_value(v)


def table(head: list[str], rows: list[list[Any]], sortable: bool = False, cls: str = "") -> str:
    """An HTML table (escaped); numbers right-aligned and sortable as numbers."""
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    th = "".join(f"<th scope=\"col\">{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_num_cell(c) for c in r) + "</tr>" for r in rows)
    return (f'<div class="scroll"><table{f" class={chr(34)}{classes}{chr(34)}" if classes else ""}>'
            f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>")


def _cards(items: list[tuple[str, Any]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in items if v not in (None, "")
    ) + "</div>"


def _duration(seconds: Any) -> str | None:
    if not isinstance(seconds, (int, float)):
        return None
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def _stepper(frames: list[tuple[int, list[tuple[str, str]]]], caption: str) -> str:
    """A slider over training steps; each frame shows one or more (data URI, caption) images side by side."""
    steps = " ".join(str(s) for s, _ in frames)
    last = len(frames) - 1
    figs = []
    for i, (step, pics) in enumerate(frames):
        inner = "".join(f"<figure>{img(uri, f'{cap}, step {step}')}<figcaption>{esc(cap)}</figcaption></figure>"
                        for uri, cap in pics)
        figs.append(f'<div class="frames" data-frame="{i}"{"" if i == last else " hidden"}>{inner}</div>')
    return (f'<div class="stepper"><div class="slider"><label for="step-slider">step</label>'
            f'<input id="step-slider" type="range" min="0" max="{last}" value="{last}" step="1" '
            f'data-steps="{esc(steps)}" aria-label="training step"><output>{esc(frames[-1][0])}</output></div>'
            f'{"".join(figs)}<p class="note">{esc(caption)}</p></div>')


SPREAD_KEYS = ("fd", "kid_mean", "is_mean", "precision", "recall", "density", "coverage", "parzen_mean",
               "label_accuracy", "l1", "psnr", "ssim")  # metrics.json numbers shown as mean ± std over seeds


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
    """Groups of two or more runs whose flattened configs are equal but for ``seed`` (and keys that only change how a
    run is watched), with mean ± std of every score in ``scores`` (per run: name -> number; a run without a score
    does not count in its n)."""
    from .config.schema import NOT_IDENTITY

    def identity(cfg: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in cfg.items() if k != "seed" and k not in NOT_IDENTITY}, sort_keys=True,
                          default=str)

    by: dict[str, list[int]] = {}
    for i, cfg in enumerate(configs):
        by.setdefault(identity(cfg), []).append(i)
    keys = sorted({k for cfg in configs for k in cfg})
    apart = [k for k in keys if k != "seed" and k not in NOT_IDENTITY and k not in QUIET_KEYS
             and len({json.dumps(cfg.get(k), sort_keys=True, default=str) for cfg in configs}) > 1]
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


def spread_table(groups: list[SeedGroup], seeds: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """(head, rows) of mean ± std per seed group, one column per score any group has."""
    keys = sorted({k for g in groups for k in g.stats}, key=lambda k: (not k.startswith("eval/"), k))
    head = ["runs differing only by seed", "seeds", *keys]
    rows = [[g.label, ", ".join(map(str, s)), *[SeedGroup.cell(g.stats.get(k)) for k in keys]]
            for g, s in zip(groups, seeds)]
    return head, rows


def eval_protocol(metrics: dict[str, Any]) -> str | None:
    """What makes two `gankit eval` results comparable, as one line: feature network (and its file), protocol, N,
    split and FD reference. None for a run that was not evaluated."""
    if not metrics or metrics.get("fd") is None:
        return None
    shown = {"features": "{}", "protocol": "protocol {}", "n_samples": "N {}", "split": "split {}",
             "features_id": "features {}"}
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
    where = ", ".join(f"{k} {esc(metrics[k])}" for k in ("n_samples", "n_real_test", "features_id", "step", "split",
                                                         "protocol", "resize", "features_sha256", "fd_reference")
                      if metrics.get(k) is not None)
    if all(r[2] is None for r in rows):  # nothing to read against (pix2pix scores compare with targets already)
        rows = [r[:2] for r in rows]
    head = ["metric", "value", "real data"][: len(rows[0])]
    return ("<h2>Metrics (gankit eval)</h2>" + table(head, rows)
            + f'<p class="note">{where}.{" Real-data columns: the same statistic of held-out real images." if n else ""}'
            "</p>")


def run_section(run: RunData, defaults: dict[str, Any] | None = None, interpolation: bool = True) -> str:
    """The body of a one-run report."""
    cfg = run.config
    shape = run.meta.get("image_shape")
    best = best_step(run.rows)
    ips = images_per_s(run.rows)
    steps = run.summary.get("step", next((r["step"] for r in reversed(run.rows) if "step" in r), None))
    parts = [f"<h1>{esc(run.name)}</h1>", f'<p class="path">{esc(run.dir.resolve())}</p>']
    parts.append("<h2>What was trained</h2>")
    parts.append(_cards([
        ("model", cfg.get("model.name")), ("data", cfg.get("data.name")),
        ("image shape", "×".join(map(str, shape)) if isinstance(shape, list) else None),
        ("training images", run.meta.get("num_images")),
        ("steps", steps), ("epochs", run.summary.get("epoch")),
        ("stopped by", run.summary.get("stopped_by") or ("still running" if not run.summary else None)),
        ("time", _duration(run.summary.get("seconds"))),
        ("images/s (median)", f"{ips:,.0f}" if ips is not None else None),
        ("hardware", " · ".join(str(x) for x in (run.meta.get("device"),
                                                  f"{run.meta['threads']} threads" if run.meta.get("threads") else None)
                                if x)),
        (f"best {best[0]}" if best else "best", f"{_fmt(best[2])} at step {best[1]}" if best else None),
    ]))
    if isinstance(origin := run.meta.get("init_from"), dict):  # train.init_from: where the weights came from
        parts.append(f'<p class="note">fine-tuned from {esc(origin.get("checkpoint"))} (step {esc(origin.get("step"))}'
                     f'; {esc(", ".join(map(str, origin.get("parts", []))))}; model {esc(origin.get("model"))} on '
                     f'{esc(origin.get("data"))})</p>')
    if run.meta.get("class_names") and int(cfg.get("model.num_classes") or 0):
        parts.append(f'<p class="note">classes: {esc(", ".join(map(str, run.meta["class_names"])))}</p>')
    if defaults is None:
        defaults = default_config(cfg.get("model.name"), cfg.get("data.name"))
    diff = config_diff(cfg, defaults)
    parts.append("<h3>Config keys that differ from the defaults</h3>")
    parts.append(table(["key", "value", "default"], [[k, _value(v), _value(d)] for k, (v, d) in diff.items()],
                       cls="configdiff") if diff else '<p class="note">none: the run used the defaults.</p>')

    parts.append("<h2>Curves</h2>")
    marks = [(best[1], f"best (step {best[1]})")] if best else []
    charts = [svg_chart([(k.split("/", 1)[1], _series(run.rows, k)) for k in _keys(run.rows, "loss/")], "losses",
                        marks=marks)]
    charts += [svg_chart([(k, _series(run.rows, k))], k, marks=marks, dots=True) for k in _keys(run.rows, "eval/")]
    others = [k for k in _keys(run.rows, "") if "/" in k and not k.startswith(("loss/", "eval/"))]
    if others:
        charts.append(svg_chart([(k, _series(run.rows, k)) for k in others], "other logged values", marks=marks))
    parts.append(f'<div class="plots">{"".join(charts)}</div>')

    from .tasks import TASKS

    spec = TASKS.get(run.recipe) if run.recipe in TASKS else TASKS.get("gan")
    frames = thin(run.grids, MAX_FRAMES)
    if frames:
        parts.append(f"<h2>{esc(spec.preview_title)}</h2>")
        pics = []
        for step, path in frames:
            one = [(data_uri(path), spec.preview_caption)]
            if step in run.class_grids:
                one.append((data_uri(run.class_grids[step]), "one row per class"))
            pics.append((step, one))
        parts.append(_stepper(pics, "Drag the slider to see the grids at earlier steps"
                                    + (f" ({len(frames)} of {len(run.grids)} shown)." if len(frames) < len(run.grids) else ".")))
    key, mode = spec.best_metric
    ev = [r for r in run.rows if isinstance(r.get(key), (int, float))]
    scores = sorted({k for r in ev for k in r if k.startswith("eval/")})
    if ev and spec.validation_title:
        b = (min if mode == "min" else max)(ev, key=lambda r: r[key])
        rows = [["last", ev[-1].get("step"), *[ev[-1].get(k) for k in scores]],
                [f"best ({'lowest' if mode == 'min' else 'highest'} {key.split('/', 1)[1]})", b.get("step"),
                 *[b.get(k) for k in scores]]]
        parts.append(f"<h2>{esc(spec.validation_title)}</h2>")
        parts.append(table(["", "step", *[k.split("/", 1)[1] for k in scores]], rows))
    if spec.latent_interpolation and interpolation:
        uri = interpolation_uri(run.dir)
        if uri:
            parts.append("<h2>Latent interpolation</h2>")
            parts.append(f"<figure>{img(uri, 'latent interpolation', 'strip')}<figcaption>each row walks in a straight "
                         f"line between two noise vectors (latest checkpoint"
                         f"{', one class per row' if int(cfg.get('model.num_classes') or 0) else ''})</figcaption></figure>")
    if run.memorisation is not None:
        parts.append("<h2>Nearest training neighbours</h2>")
        parts.append(f"<figure>{img(data_uri(run.memorisation), 'samples and their nearest training images')}"
                     "<figcaption>each sample beside its nearest training images (from gankit eval): near copies "
                     "mean the generator memorised</figcaption></figure>")
    parts.append(_metrics_section(run.metrics))
    return "\n".join(p for p in parts if p)


def _last(rows: list[dict[str, Any]], key: str) -> Any:
    return next((r[key] for r in reversed(rows) if key in r), None)


def runs_section(runs: list[RunData]) -> str:
    """The body of a comparison of several runs."""
    from .config.schema import NOT_IDENTITY

    keys = sorted({k for r in runs for k in r.config})
    differing = [k for k in keys if k not in NOT_IDENTITY and k not in QUIET_KEYS
                 and not all(_same(r.config.get(k), runs[0].config.get(k)) for r in runs)]
    names = [r.name for r in runs]
    for r in runs:  # the same folder name twice (runs of different sweeps): the parent tells them apart
        r.label = f"{r.dir.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name
        r.differs = {k: r.config.get(k) for k in differing}
    eval_keys = sorted({k for r in runs for k in _keys(r.rows, "eval/")})
    metric_keys = [k for k in (*METRIC_LABELS, *BASELINES) if any(isinstance(r.metrics.get(k), (int, float)) for r in runs)]
    protocols = [eval_protocol(r.metrics) for r in runs]
    warnings = protocol_warnings(protocols)
    head = ["run", *differing, "steps", "seconds", "images/s", "last loss/d", "last loss/g",
            *[f"last {k}" for k in eval_keys], *[f"best {k}" for k in eval_keys if k in dict(_best_keys())],
            *[METRIC_LABELS.get(k) or BASELINES[k][0] for k in metric_keys]]
    if any(protocols):
        head += ["eval protocol", "warning"]
    rows = []
    for r, proto, warn in zip(runs, protocols, warnings):
        best = best_step(r.rows)
        rows.append([r.label, *[_value(r.config.get(k)) for k in differing],
                     r.summary.get("step", _last(r.rows, "step")), r.summary.get("seconds"), images_per_s(r.rows),
                     _last(r.rows, "loss/d"), _last(r.rows, "loss/g"), *[_last(r.rows, k) for k in eval_keys],
                     *[(best[2] if best and best[0] == k else None) for k in eval_keys if k in dict(_best_keys())],
                     *[r.metrics.get(k) for k in metric_keys], *([proto, warn] if any(protocols) else [])])
    parts = [f"<h1>{len(runs)} runs compared</h1>",
             f'<p class="note">config keys that differ: {esc(", ".join(differing) or "none")}. Click a column '
             "header to sort.</p>",
             table(head, rows, sortable=True, cls="runs")]
    if any(warnings):
        parts.insert(2, '<p class="note warning">⚠ the runs\' gankit eval results were made under different protocols '
                        '(feature network, resize, N, split or reference): their metric columns are not comparable; '
                        'see the eval protocol column.</p>')
    parts.append("<h2>Curves</h2>")
    charts = [svg_chart([(r.label, _series(r.rows, k)) for r in runs], k) for k in ("loss/d", "loss/g")
              if any(_series(r.rows, k) for r in runs)]
    charts += [svg_chart([(r.label, _series(r.rows, k)) for r in runs], k, dots=True) for k in eval_keys]
    parts.append(f'<div class="plots">{"".join(charts)}</div>')
    parts.append("<h2>Last sample grids</h2>")
    cells = []
    for r in runs:
        if r.grids:
            step, path = r.grids[-1]
            cells.append(f"<figure>{img(data_uri(path), f'{r.label}, step {step}')}<figcaption>{esc(r.label)} "
                         f"(step {esc(step)})</figcaption></figure>")
        else:
            cells.append(f'<figure><p class="note">no samples yet</p><figcaption>{esc(r.label)}</figcaption></figure>')
    parts.append(f'<div class="gallery">{"".join(cells)}</div>')
    scores = [{**{k: v for k in eval_keys if isinstance(v := _last(r.rows, k), (int, float))},
               **{k: r.metrics[k] for k in SPREAD_KEYS if isinstance(r.metrics.get(k), (int, float))}} for r in runs]
    if groups := seed_groups([r.config for r in runs], scores):
        head, rows = spread_table(groups, [[runs[i].config.get("seed") for i in g.members] for g in groups])
        parts.append("<h2>Over seeds</h2>")
        parts.append('<p class="note">runs whose configs differ only by the seed: mean ± sample standard deviation '
                     '(n = runs with that score). eval/* values are each run\'s last.</p>')
        parts.append(table(head, rows, cls="seeds"))
    if differing:
        parts.append("<h2>Config keys that differ</h2>")
        parts.append(table(["key", *[r.label for r in runs]],
                           [[k, *[_value(r.config.get(k)) for r in runs]] for k in differing], cls="configdiff"))
    return "\n".join(parts)


def render(run_dirs: list[Path], interpolation: bool = True) -> str:
    """The HTML text of the report for ``run_dirs`` (one run: its own page; several: a comparison)."""
    if not run_dirs:
        raise GankitError("no runs to report on: pass at least one run folder")
    runs = [read_run_data(d) for d in run_dirs]
    if len(runs) == 1:
        return page(f"gankit run {runs[0].name}", run_section(runs[0], interpolation=interpolation))
    return page(f"gankit: {len(runs)} runs compared", runs_section(runs))


def report_run_dirs(paths: list[Path], say: Any = print) -> list[Path]:
    """The run folders behind ``paths``, in order and once each: a run folder as given, a sweep folder's runs (from
    its sweep.json). What a shell glob brings along besides runs (``runs/sweep1/*`` holds sweep.json, and perhaps a
    compare report folder) is left out with a note (``say``). A path that does not exist, a lone path that is not a
    run, or nothing left is a one-line GankitError."""
    from .training.rundir import sweep_run_dirs

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


def write_report(run_dirs: list[Path], out: Path | None = None, interpolation: bool = True,
                 say: Any = None) -> Path:
    """Write one self-contained HTML report for ``run_dirs`` to ``out`` (default: RUN/report.html for one run);
    returns the path. ``run_dirs`` may hold sweep folders and, with other runs, files a glob brought along (see
    :func:`report_run_dirs`; ``say`` gets the notes, stderr by default). Raises GankitError when a lone folder is not
    a run, or when ``out`` is missing for several runs."""
    import sys

    from .core.io import atomic_write_bytes

    run_dirs = report_run_dirs([Path(d) for d in run_dirs],
                               say if say is not None else (lambda m: print(m, file=sys.stderr)))
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
