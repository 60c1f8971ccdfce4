"""Line charts as inline SVG: no plotting library, so a page stays one self-contained file that scales with its
container. Labels and titles go through :func:`~gankit.report.html.esc`."""

from __future__ import annotations

import math

from .html import esc, fmt

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) from ``lo`` up to ``hi``."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """(log10 position, label) of ticks for a log axis spanning 10**lo .. 10**hi: 1, 2, 5 times powers of ten, thinned
    to powers of ten alone when there would be more than about 8."""
    out = []
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            p = e + math.log10(m)
            if lo <= p <= hi:
                out.append((p, fmt(m * 10.0**e)))
    if len(out) > 8:
        out = [(p, label) for p, label in out if abs(p - round(p)) < 1e-9]
    return out or [(lo, fmt(10**lo))]


def svg_chart(
    series: list[tuple[str, list[tuple[float, float]]]],
    title: str,
    xlabel: str = "step",
    marks: list[tuple[float, str]] | None = None,
    dots: bool = False,
    log_y: bool = False,
) -> str:
    """A line chart as inline SVG: ``series`` of (label, [(x, y), ...]); ``marks`` are dashed vertical lines
    (x, label), e.g. the best step. ``log_y``: a logarithmic y axis (values <= 0 are left out). Scales with its
    container (viewBox); labels are escaped."""
    W, H, L, R, T, B = 640, 300, 60, 16, 28, 40
    ty = math.log10 if log_y else (lambda v: v)
    pts = [(p[0], ty(p[1])) for _, s in series for p in s if math.isfinite(p[1]) and (p[1] > 0 or not log_y)]
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

    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{esc(title)}">',
        f'<text x="{W / 2}" y="18" text-anchor="middle" class="title">{esc(title)}</text>',
    ]
    for t, label in log_ticks(y0, y1) if log_y else [(t, fmt(t)) for t in nice_ticks(y0, y1)]:
        out.append(
            f'<line x1="{L}" x2="{W - R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
            f'<text x="{L - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{esc(label)}</text>'
        )
    if log_y:
        out.append(f'<text x="{L + 4}" y="{T + 12}" class="marklabel">log scale</text>')
    integer_x = all(float(x).is_integer() for x in xs)  # steps: no tick at step 99.5
    for t in nice_ticks(x0, x1, 6):
        if integer_x and not float(t).is_integer():
            continue
        out.append(f'<text x="{sx(t):.1f}" y="{H - B + 16}" text-anchor="middle">{esc(fmt(t))}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" class="frame"/>')
    for x, label in marks or []:
        right = sx(x) > (L + W - R) / 2  # the label goes on the side with room
        out.append(
            f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{T}" y2="{H - B}" class="mark"/>'
            f'<text x="{sx(x) + (-4 if right else 4):.1f}" y="{T + 14}" class="marklabel" '
            f'text-anchor="{"end" if right else "start"}">{esc(label)}</text>'
        )
    for i, (label, s) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        good = [(x, y) for x, y in s if math.isfinite(y) and (y > 0 or not log_y)]
        if not good:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(ty(y)):.1f}" for x, y in good)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5">'
            f"<title>{esc(label)}</title></polyline>"
        )
        if dots or len(good) == 1:
            out += [
                f'<circle cx="{sx(x):.1f}" cy="{sy(ty(y)):.1f}" r="3" fill="{colour}"><title>{esc(label)}: step '
                f"{esc(fmt(x))}, {esc(fmt(y))}</title></circle>"
                for x, y in good
            ]
    out.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{esc(label)}</span>'
        for i, (label, _) in enumerate(series)
    )
    return f'<figure class="plot">{"".join(out)}<figcaption class="legend">{legend}</figcaption></figure>'
