"""`gankit tune ... --best-seeds K`: the best trial's parameters trained again on K new seeds, so a person sees how
much of its score was the recipe and how much its seed.

The best of N trials is partly the luckiest of N seeds: its own score is biased low. The K runs use seeds the search
never trained (the study's seed + 1 .. + K), the same budget, held-out part and scoring as the trials, and are
ordinary run folders ``STUDY/best-seeds/trial-NNNN-seed-S/``; the study report and ``gankit compare`` show their
mean ± sample std (n). Running the command again skips finished seeds and continues unfinished ones from their
checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runs import PlannedRun
from .study import StudySpec

SEEDS_DIR = "best-seeds"


def seed_runs(spec: StudySpec, trial: int, params: dict[str, Any], k: int) -> list[PlannedRun]:
    """The K runs of trial ``trial``'s parameters, in STUDY/best-seeds: configured as the trial was (base file, flags,
    its parameters, tune's own keys), on seeds the study's seed + 1 .. + K."""
    return [
        PlannedRun(f"trial-{trial:04d}-seed-{s}", spec.config, {**spec.flags, **params, "seed": s, **spec.tune_keys})
        for s in (spec.seed + 1 + i for i in range(k))
    ]


def seed_scores(root: Path, trial: int, metric: str) -> list[dict[str, Any]]:
    """One row per seed run of ``trial`` found under STUDY/best-seeds: seed, folder, steps, final score (None while
    unfinished or diverged), flattened config (for gankit.report.seed_groups)."""
    from ..compare import read_run

    rows = []
    for folder in sorted((root / SEEDS_DIR).glob(f"trial-{trial:04d}-seed-*")):
        if not (folder / "config.yaml").is_file():
            continue
        run = read_run(folder, say=lambda m: None)
        score = None
        if run.summary:  # finished: its last score is the end-of-budget one, as for a trial
            score = next((row[metric] for row in reversed(run.rows) if isinstance(row.get(metric), (int, float))), None)
        rows.append(
            {
                "seed": run.config.get("seed"),
                "folder": folder,
                "steps": run.summary.get("step"),
                "score": score,
                "config": run.config,
            }
        )
    return sorted(rows, key=lambda r: (r["seed"] is None, r["seed"]))


def spread(rows: list[dict[str, Any]], metric: str) -> tuple[float, float, int] | None:
    """mean, sample std and n of the finished seeds' scores, by the same rule as `gankit compare`'s seed groups."""
    from ..report import seed_groups

    done = [r for r in rows if r["score"] is not None]
    if len(done) < 2:
        return None
    groups = seed_groups([r["config"] for r in done], [{metric: r["score"]} for r in done])
    whole = [g for g in groups if len(g.members) == len(done)]
    return whole[0].stats.get(metric) if whole else None
