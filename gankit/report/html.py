"""The HTML frame every gankit page shares: escaping, the page shell with its CSS and its one hashed script, tables,
cards, image tags and the step slider.

The page works offline and alone: images are inlined as base64 data URIs, and the one small script is inline and
allowed by its hash in the page's Content-Security-Policy (so no other script, injected or not, can run). Every string
that comes from the user's world (run names, paths, config values, class names, metric keys) goes through
:func:`esc`. Run reports (:mod:`gankit.report.page`), study pages (:mod:`gankit.tune.report`) and reproduction
pages (:mod:`gankit.reproduce.page`) are built from these parts.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------------------------------
# escaping and numbers as text


def esc(value: Any) -> str:
    """Text for HTML element content or a quoted attribute value: & < > " ' become entities."""
    return html.escape(str(value), quote=True)


def md_escape(value: Any) -> str:
    """Text for one cell of a markdown table: no line breaks, and markdown/HTML punctuation shown literally."""
    text = " ".join(str(value).split())
    text = html.escape(text, quote=False)  # markdown renderers pass raw HTML through
    return re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", text)


def fmt(v: float) -> str:
    """A number as a table or axis shows it: four significant digits."""
    return f"{v:.4g}"


def value_text(v: Any) -> str:
    """A config value as a table cell shows it (:func:`~gankit.config.schema.fmt_value`; an empty list or mapping
    as ``[]`` / ``{}``)."""
    from ..config.schema import fmt_value

    if isinstance(v, str):
        return v
    return json.dumps(v) if isinstance(v, (dict, list)) and not v else fmt_value(v)


def duration(seconds: Any) -> str | None:
    """Seconds as ``1h 02m``, ``3m 04s`` or ``5s``; None when not a number."""
    if not isinstance(seconds, (int, float)):
        return None
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


# ---------------------------------------------------------------------------------------------------------------------
# the page shell


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
    return (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
        "base-uri 'none'; form-action 'none'"
    )


def page(title: str, body: str) -> str:
    """A whole HTML document: ``title`` (escaped here) and ``body`` (HTML, escaped by whoever built it)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_csp())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f"<body><main>\n{body}\n</main><script>{SCRIPT}</script></body></html>\n"
    )


# ---------------------------------------------------------------------------------------------------------------------
# parts of a page


def _num_cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return f"<td>{esc('' if v is None else str(v).lower())}</td>"
    if isinstance(v, (int, float)):
        return (
            f'<td class="num" data-v="{esc(repr(float(v)))}">{esc(fmt(float(v)) if isinstance(v, float) else v)}</td>'
        )
    return f"<td>{esc(value_text(v))}</td>"


def table(head: list[str], rows: list[list[Any]], sortable: bool = False, cls: str = "") -> str:
    """An HTML table (escaped); numbers right-aligned and sortable as numbers."""
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    th = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(_num_cell(c) for c in r) + "</tr>" for r in rows)
    return (
        f'<div class="scroll"><table{f" class={chr(34)}{classes}{chr(34)}" if classes else ""}>'
        f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def cards(items: list[tuple[str, Any]]) -> str:
    """(label, value) pairs as a grid of small cards, value large; pairs whose value is None or '' are left out."""
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in items if v not in (None, "")
        )
        + "</div>"
    )


def data_uri(path: Path) -> str:
    """An image file as a data URI (base64), so the page needs no file beside it."""
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
    kind = mime.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def img(src: str, alt: str, cls: str = "") -> str:
    return f'<img src="{esc(src)}" alt="{esc(alt)}"{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>'


def stepper(frames: list[tuple[int, list[tuple[str, str]]]], caption: str) -> str:
    """A slider over training steps; each frame shows one or more (data URI, caption) images side by side."""
    steps = " ".join(str(s) for s, _ in frames)
    last = len(frames) - 1
    figs = []
    for i, (step, pics) in enumerate(frames):
        inner = "".join(
            f"<figure>{img(uri, f'{cap}, step {step}')}<figcaption>{esc(cap)}</figcaption></figure>"
            for uri, cap in pics
        )
        figs.append(f'<div class="frames" data-frame="{i}"{"" if i == last else " hidden"}>{inner}</div>')
    return (
        f'<div class="stepper"><div class="slider"><label for="step-slider">step</label>'
        f'<input id="step-slider" type="range" min="0" max="{last}" value="{last}" step="1" '
        f'data-steps="{esc(steps)}" aria-label="training step"><output>{esc(frames[-1][0])}</output></div>'
        f'{"".join(figs)}<p class="note">{esc(caption)}</p></div>'
    )
