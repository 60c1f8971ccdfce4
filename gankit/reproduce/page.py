"""DIR/report.html (one self-contained page, in the style of the run reports) and DIR/claims.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.io import atomic_write_bytes, write_json
from ..report.html import data_uri, esc, page, table
from .claims import ReportClaims
from .cost import describe, read_calls, read_job_cost, summarize
from .verdict import FAILS, HOLDS, UNDECIDED

VERDICT_CLASS = {HOLDS: "holds", FAILS: "fails", UNDECIDED: "undecided"}
CSS = """
<style>
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.85em;font-weight:600;color:#fff}
.verdict.holds{background:#1e7d32}.verdict.fails{background:#b3261e}.verdict.undecided{background:#6b6b6b}
blockquote{margin:.4em 0;padding:.3em .8em;border-left:3px solid var(--accent);background:#f6f8fb;overflow-wrap:anywhere}
section.claim{border:1px solid var(--line);border-radius:8px;padding:4px 12px 10px;margin:12px 0}
.side{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,320px),1fr));gap:12px}
.grids{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
</style>
"""


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def measured_text(result: dict[str, Any]) -> str:
    """``run mean ± spread; ...`` for one claim (the page's summary and BENCHMARKS.md's table)."""
    parts = [
        f"{run} {_fmt(n['mean'])}" + (f" ± {_fmt(n['spread'])}" if n["spread"] is not None else "")
        for run, n in result["numbers"].items()
    ]
    return "; ".join(parts)


def _badge(verdict: str) -> str:
    return f'<span class="verdict {VERDICT_CLASS.get(verdict, "undecided")}">{esc(verdict)}</span>'


def _last_grid(out: Path, plan: dict[str, Any], run: str) -> Path | None:
    """The last fixed-noise grid of the run's first seed (one row per class for a conditional G, when drawn)."""
    jobs = [j for j in plan["jobs"] if j["run"] == run]
    if not jobs:
        return None
    samples = out / "runs" / jobs[0]["name"] / "samples"
    for pattern in ("classes-*.png", "step-*.png"):
        found = sorted(samples.glob(pattern)) if samples.is_dir() else []
        if found:
            return found[-1]
    return None


def _numbers_table(result: dict[str, Any], seeds: list[int], runs_cfg: dict[str, str]) -> str:
    head = ["run", "config", *[f"seed {s}" for s in seeds], "mean", "spread (max - min)"]
    rows = []
    for run, n in result["numbers"].items():
        rows.append([run, runs_cfg.get(run, ""), *[n["seeds"].get(str(s)) for s in seeds], n["mean"], n["spread"]])
    return table(head, rows)


def claim_section(out: Path, claims: ReportClaims, plan: dict[str, Any], r: dict[str, Any]) -> str:
    runs_cfg = {
        name: spec.config
        + (" " + ", ".join(f"{k}={v}" for k, v in spec.overrides.items()) if spec.overrides else "")
        + (f" (stopped at {spec.budget_fraction:g} of the budget)" if spec.budget_fraction < 1 else "")
        for name, spec in claims.runs.items()
    }
    grids = []
    for run in r["numbers"]:
        p = _last_grid(out, plan, run)
        if p is not None:
            grids.append(
                f'<figure><img src="{esc(data_uri(p))}" alt="{esc(run)}: last samples">'
                f"<figcaption>{esc(run)} (seed {claims.seeds[0]}), {esc(p.stem)}</figcaption></figure>"
            )
    pairs = ""
    if r["pairs"]:
        pairs = table(
            ["compared", "with", "gap (claimed direction +)", "seed spread", "outcome"],
            [[p["better"], p["worse"], p["gap"], p["spread"], p["outcome"]] for p in r["pairs"]],
        )
    return (
        f'<section class="claim" id="{esc(r["id"])}"><h3>{_badge(r["verdict"])} {esc(r["id"])}</h3>'
        f'<div class="side"><div><p class="note">{esc(r["section"])}</p><blockquote>{esc(r["quote"])}</blockquote>'
        f'<p class="note">The report shows: {esc(r["their"])}</p></div>'
        f"<div><p><b>Check:</b> {esc(r['check'])}</p>{_numbers_table(r, claims.seeds, runs_cfg)}"
        f"<p><b>{esc(r['verdict'])}</b>: {esc(r['reason'])}</p>{pairs}</div></div>"
        f'<div class="grids">{"".join(grids)}</div></section>'
    )


def cost_of(out: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """claims.json's "cost": the totals over every call, the calls, and each run's training and evaluation seconds."""
    calls = read_calls(out)
    runs = {j["name"]: read_job_cost(out / "runs" / j["name"]) for j in plan["jobs"]}
    return {
        **summarize(calls),
        "summary": describe(summarize(calls)),
        "calls": calls,
        "runs": {name: c for name, c in runs.items() if c},
    }


def cost_section(cost: dict[str, Any], plan: dict[str, Any]) -> str:
    steps = {j["name"]: j["overrides"].get("train.steps", "") for j in plan["jobs"]}
    rows = [
        [
            name,
            steps.get(name, ""),
            c.get("train_cpu_s"),
            c.get("train_wall_s"),
            c.get("eval_cpu_s"),
            c.get("eval_wall_s"),
        ]
        for name, c in cost["runs"].items()
    ]
    calls = [
        [
            c.get("started"),
            c.get("workers"),
            c.get("threads"),
            c.get("cores"),
            c.get("cpu_s"),
            c.get("cpu_workers_s"),
            c.get("classifier_cpu_s"),
            c.get("wall_s"),
            c.get("load_mean"),
        ]
        for c in cost["calls"]
    ]
    return (
        f'<h2 id="cost">Cost</h2><p><b>{esc(cost["summary"])}</b>.</p>'
        '<p class="note">CPU time is user + system seconds of this command and of its worker processes, all threads; '
        "it barely depends on how busy the machine was, wall time does. The idle estimate divides each call's CPU "
        "time by the cores it used (workers x threads), so it is low by the stretches that keep one core busy.</p>"
        + (
            table(
                [
                    "call started (UTC)",
                    "workers",
                    "threads each",
                    "cores used",
                    "CPU s",
                    "of which workers",
                    "evaluation classifier CPU s",
                    "wall s",
                    "mean load",
                ],
                calls,
            )
            if calls
            else ""
        )
        + (
            table(
                ["run", "steps", "training CPU s", "training wall s", "evaluation CPU s", "evaluation wall s"],
                rows,
                sortable=True,
            )
            if rows
            else ""
        )
    )


def render(
    out: Path,
    claims: ReportClaims,
    plan: dict[str, Any],
    results: list[dict[str, Any]],
    unfinished: list[str],
    cost: dict[str, Any] | None = None,
) -> str:
    counts = {v: sum(r["verdict"] == v for r in results) for v in (HOLDS, FAILS, UNDECIDED)}
    summary = table(
        ["claim", "section", "verdict", "check", "measured (mean ± seed spread)"],
        [[r["id"], r["section"], r["verdict"], r["check"], measured_text(r)] for r in results],
        sortable=True,
    )
    data_notes = "".join(f"<li>{esc(n)}</li>" for n in plan["data"].values())
    setup = (
        f"<p><b>Budget {esc(plan['budget'])}</b>: {esc(plan['budget_description'])}. Seeds "
        f"{esc(', '.join(str(s) for s in claims.seeds))}; every run scored with `gankit eval`'s classifier features "
        f"against the same held-out reference per data set ({esc(plan['eval_n'])} samples).</p>"
        f"<p><b>Image size and steps used</b>: {esc(plan['used'])}.</p>"
        + (f"<ul>{data_notes}</ul>" if data_notes else "")
        + (
            f'<p><b>Cost:</b> {esc(cost["summary"])} (the calls and each run\'s seconds: <a href="#cost">Cost</a>).</p>'
            if cost is not None
            else ""
        )
        + f'<p class="note">Machine: {esc(environment_note())}. Run folders: <span class="path">{esc(out / "runs")}</span></p>'
        + (
            f"<p><b>Not finished:</b> {esc(', '.join(unfinished))} (run the same command again to continue)</p>"
            if unfinished
            else ""
        )
    )
    rules = (
        '<p class="note">A ranking is decided only where the gap between the runs\' seed means exceeds the seed '
        "spread (max - min over seeds, the larger of the two runs'); a threshold holds when every seed meets it "
        "and fails when none does. 'Not decided at this budget' is a result too: more steps or seeds may decide "
        "it.</p>"
    )
    unchecked = table(
        ["section", "quote", "why no measurement speaks to it"],
        [[u.section, u.quote, u.why] for u in claims.not_checkable],
    )
    body = (
        f"{CSS}<h1>Report {esc(claims.report)}: {esc(claims.title)}</h1>"
        f'<p class="note">Claims from <span class="path">{esc(claims.source)}</span>, checked by '
        f"`gankit reproduce {esc(claims.report)} --budget {esc(plan['budget'])}`: {counts[HOLDS]} hold, "
        f"{counts[FAILS]} do not hold, {counts[UNDECIDED]} not decided.</p>"
        f"<h2>Set-up</h2>{setup}{rules}<h2>Verdicts</h2>{summary}"
        f"<h2>Claims, side by side</h2>{''.join(claim_section(out, claims, plan, r) for r in results)}"
        f"<h2>Claims no measurement here speaks to</h2>{unchecked}"
        + (cost_section(cost, plan) if cost is not None else "")
    )
    return page(f"gankit reproduce {claims.report}", body)


def write_outputs(
    out: Path, claims: ReportClaims, plan: dict[str, Any], results: list[dict[str, Any]], unfinished: list[str]
) -> dict[str, Any]:
    """Write both; returns the cost (claims.json's "cost")."""
    cost = cost_of(out, plan)
    write_json(
        out / "claims.json",
        {
            "report": claims.report,
            "title": claims.title,
            "budget": plan["budget"],
            "image_size_and_steps": plan["used"],
            "runs": {
                j["run"]: {"config": j["config"], "image_size": j["image_size"], "steps": j["steps"]}
                for j in plan["jobs"]
            },
            "seeds": claims.seeds,
            "data": plan["data"],
            "unfinished": unfinished,
            "cost": cost,
            "claims": [
                {k: r[k] for k in ("id", "quote", "section", "their", "check", "verdict", "reason", "numbers", "pairs")}
                for r in results
            ],
            "not_checkable": [{"section": u.section, "quote": u.quote, "why": u.why} for u in claims.not_checkable],
        },
    )
    atomic_write_bytes(out / "report.html", render(out, claims, plan, results, unfinished, cost).encode())
    return cost


def environment_note() -> str:
    """The machine, for the page (cores this process may use, CPU capability)."""
    import platform

    import torch

    from ..workers import usable_cores

    return (
        f"{platform.machine()} {platform.system()}, {usable_cores()} usable cores, torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} CPUs on the machine"
    )
