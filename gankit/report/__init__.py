"""Reports on runs: one self-contained HTML page per run or per comparison.

- :mod:`.runs`: reading a run folder (:class:`RunData`), the one rule of when two config values are the same and
  which keys differ between runs (``gankit compare`` reads runs through it too), best step, seed groups
- :mod:`.html`: the page frame shared by every gankit page: escaping, CSS, the hashed script, tables, cards
- :mod:`.svg`: line charts as inline SVG
- :mod:`.page`: the run page and the comparison page, and :func:`write_report`

The names below are the ones ``gankit.report`` has always exported; new code may import them from their modules.
"""

from __future__ import annotations

from .html import CSS, SCRIPT, cards, data_uri, duration, esc, fmt, img, md_escape, page, stepper, table, value_text
from .page import (
    BASELINES,
    MAX_FRAMES,
    METRIC_LABELS,
    interpolation_uri,
    render,
    run_section,
    runs_section,
    tensor_uri,
    write_report,
)
from .runs import (
    QUIET_KEYS,
    SPREAD_KEYS,
    RunData,
    SeedGroup,
    best_step,
    config_diff,
    default_config,
    differing_keys,
    eval_protocol,
    images_per_s,
    protocol_warnings,
    read_run,
    read_run_data,
    report_run_dirs,
    same_value,
    seed_groups,
    seed_scores,
    spread_table,
)
from .svg import PALETTE, nice_ticks, svg_chart

__all__ = [
    "BASELINES",
    "CSS",
    "MAX_FRAMES",
    "METRIC_LABELS",
    "PALETTE",
    "QUIET_KEYS",
    "SCRIPT",
    "SPREAD_KEYS",
    "RunData",
    "SeedGroup",
    "best_step",
    "cards",
    "config_diff",
    "data_uri",
    "default_config",
    "differing_keys",
    "duration",
    "esc",
    "eval_protocol",
    "fmt",
    "images_per_s",
    "img",
    "interpolation_uri",
    "md_escape",
    "nice_ticks",
    "page",
    "protocol_warnings",
    "read_run",
    "read_run_data",
    "render",
    "report_run_dirs",
    "run_section",
    "runs_section",
    "same_value",
    "seed_groups",
    "seed_scores",
    "spread_table",
    "stepper",
    "svg_chart",
    "table",
    "tensor_uri",
    "value_text",
    "write_report",
]
