"""Runs side by side: overlaid loss curves, the last sample grid of each run, and a table of every metric."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from .core.errors import GankitError
from .core.io import atomic_write_bytes, refuse_existing, series
from .report.html import md_escape
from .report.runs import (
    RunData,
    differing_keys,
    last_value,
    protocol_warnings,
    read_run,
    seed_groups,
    seed_scores,
    spread_table,
)
from .training.rundir import sweep_run_dirs
from .config.schema import fmt_value

FILES = {
    "report": "report.html",
    "losses": "losses.png",
    "samples": "samples.png",
    "summary": "summary.md",
}  # what compare writes into --out


def collect_runs(paths: list[str], say: Any = print) -> list[RunData]:
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
            for d in sweep_run_dirs(p):
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
    return [read_run(d, say) for d in unique]


def label_runs(runs: list[RunData]) -> list[str]:
    """Config keys whose values differ between the runs (:func:`gankit.report.runs.differing_keys`, as report.html
    shows them); each run's label names its values of those keys."""
    differing = differing_keys([r.config for r in runs])
    for r in runs:
        r.differs = {k: r.config.get(k) for k in differing}
        r.label = ", ".join(f"{k}={fmt_value(v)}" for k, v in r.differs.items()) or r.dir.name
    labels = [r.label for r in runs]
    for r in runs:
        if labels.count(r.label) > 1:  # same config in different folders: the folder tells them apart
            r.label = f"{r.dir.name}: {r.label}" if r.differs else r.dir.name
    return differing


def _cell(v: Any) -> str:
    """One summary.md table cell: numbers formatted, everything else (run names, config values, whatever a damaged
    file held) escaped so it shows as text: no live HTML, no line break that starts a heading or ends the table."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return md_escape(v)


def _plain(label: str) -> str:
    """A label matplotlib draws as written: a run folder named "a$x^2$" must not switch on its maths mode (or fail)."""
    return label.replace("$", r"\$")


def losses_png(runs: list[RunData]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import figure_png

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, key, title in ((axes[0], "loss/d", "discriminator loss"), (axes[1], "loss/g", "generator loss")):
        for r in runs:
            if pts := series(r.rows, key):
                s, v = zip(*pts)
                ax.plot(s, v, label=_plain(r.label), linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    if handles:
        # Below both panels, one run a line: labels can be long, and bbox_inches="tight" grows the figure to fit.
        fig.legend(
            handles,
            [textwrap.shorten(x, 160) for x in labels],
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=1 if max(map(len, labels)) > 50 else min(3, len(labels)),
            fontsize=8,
            frameon=False,
        )
    return figure_png(fig, bbox_inches="tight")


def samples_png(runs: list[RunData]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from .viz import figure_png

    cols = min(4, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, runs):
        if (sample := r.last_grid) is not None:
            with Image.open(sample) as im:
                ax.imshow(im.convert("RGB"))
            step = sample.stem.split("-")[-1].lstrip("0") or "0"
            title = f"{_plain(r.label)}\n(step {step})"
        else:
            ax.text(0.5, 0.5, "no samples yet", ha="center", va="center")
            title = _plain(r.label)
        ax.set_title("\n".join(textwrap.wrap(title, 40, replace_whitespace=False)), fontsize=8)
    fig.tight_layout()
    return figure_png(fig, bbox_inches="tight")


def summary_md(runs: list[RunData], differing: list[str]) -> str:
    eval_keys = sorted({k for r in runs for row in r.rows for k in row if k.startswith("eval/")})
    metric_keys = sorted({k for r in runs for k in r.metric_numbers})
    warnings = protocol_warnings([r.protocol for r in runs])
    evaluated = any(r.protocol for r in runs)
    head = [
        "run",
        "differing config",
        "steps",
        "epochs",
        "seconds",
        "last D loss",
        "last G loss",
        *eval_keys,
        *metric_keys,
        *(["eval protocol", "warning"] if evaluated else []),
    ]
    lines = [
        "# Comparison",
        "",
        f"{len(runs)} run(s); differing config keys: {md_escape(', '.join(differing) or 'none')}.",
        "",
        "| " + " | ".join(map(md_escape, head)) + " |",
        "|" + "---|" * len(head),
    ]
    for r, warn in zip(runs, warnings):
        last_row = next((row for row in reversed(r.rows) if "step" in row), {})
        cells = [
            r.dir.name,
            ", ".join(f"{k}={fmt_value(v)}" for k, v in r.differs.items()),
            r.summary.get("step", last_row.get("step")),
            r.summary.get("epoch", last_row.get("epoch")),
            r.summary.get("seconds"),
            last_value(r.rows, "loss/d"),
            last_value(r.rows, "loss/g"),
            *[last_value(r.rows, k) for k in eval_keys],
            *[r.metric_numbers.get(k) for k in metric_keys],
            *([r.protocol, warn] if evaluated else []),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if groups := seed_groups([r.config for r in runs], seed_scores(runs)):
        head, rows = spread_table(groups, [[runs[i].config.get("seed") for i in g.members] for g in groups])
        lines += [
            "",
            "## Over seeds",
            "",
            "Runs whose configs differ only by the seed: mean ± sample standard deviation (n = runs with that score).",
            "",
            "| " + " | ".join(map(md_escape, head)) + " |",
            "|" + "---|" * len(head),
        ]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    if any(warnings):
        lines += [
            "",
            "**Warning:** the runs' `gankit eval` results were made under different protocols (feature "
            "network, resize, N, split or reference); their metric columns are not comparable.",
        ]
    lines += [
        "",
        "`eval/*` columns are the last values in metrics.jsonl; the others after the losses come from each "
        "run's metrics.json (`gankit eval`). Unfinished runs have no seconds.",
        "",
    ]
    return "\n".join(lines)


def compare(paths: list[str], out: Path, say: Any = print, force: bool = False) -> dict[str, Path]:
    """Write report.html, losses.png, samples.png and summary.md for the runs in ``paths`` into ``out``; returns the files.
    Files already in ``out`` are replaced only with ``force`` (checked before anything is read); each is written
    atomically, so a kill or a full disk leaves the old file or the new one."""
    if out.exists() and not out.is_dir():
        raise GankitError(f"--out {out} is a file; give a folder for the report")
    files = {k: out / name for k, name in FILES.items()}
    refuse_existing(files.values(), force)
    runs = collect_runs(paths, say)
    differing = label_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(files["losses"], losses_png(runs))
    atomic_write_bytes(files["samples"], samples_png(runs))
    atomic_write_bytes(files["summary"], summary_md(runs, differing).encode("utf-8"))
    from .report import write_report  # the same runs as one page: sortable table, overlaid curves, last grids

    write_report([r.dir for r in runs], files["report"])
    return files
