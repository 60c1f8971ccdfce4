"""A report's runs at a budget: planned, trained (resumably, by one or several workers), evaluated, then judged.

    DIR/reproduce.json        the plan: report, budget, data choices and every job (run x seed) with its overrides
    DIR/runs/<run>-seed<k>/   a gankit run folder per job, plus reproduce-eval.json (`gankit eval`'s numbers)
    DIR/.claims/<job>/.lock   while a worker trains or evaluates that job (a RunDir lock: a second one is refused)
    DIR/report.html, DIR/claims.json

Running the same command again skips jobs that have their evaluation, resumes a job with checkpoints and no
summary, and evaluates a trained job that has none. Workers share the job list the same way: each walks it in
order and takes a job only by taking its lock, so two workers never train the same run.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config.schema import DataConfig
from ..core.errors import DivergedError, GankitError
from ..core.io import read_jsonl, write_json
from .budgets import BUDGETS, Budget
from .claims import ReportClaims
from .cost import Stopwatch, add_call, job_clock, self_cpu_seconds
from .measures import measure
from .verdict import UNDECIDED, Verdict, best, rank, same, threshold

PLAN = "reproduce.json"
EVAL_FILE = "reproduce-eval.json"
PLAN_VERSION = 1


@dataclass(frozen=True)
class DataChoice:
    """What a data set of the report is replaced by or read from at this budget."""

    overrides: dict[str, Any]
    note: str = ""
    used: str = ""  # the data set actually trained on


# ---------------------------------------------------------------------------------------------------------------------
# plan


def _probe(cfg: DataConfig) -> str | None:
    """None when the split loads without a download, else the one-line reason (which names the files and folder)."""
    from ..data import load_dataset

    try:
        load_dataset(replace(cfg, download=False, limit=0))
        return None
    except GankitError as e:
        return str(e)


def choose_data(
    name: str, channels: int, budget: Budget, data_dirs: dict[str, str], download: bool
) -> DataChoice | str:
    """How the runs on data set ``name`` get their images at ``budget``, or a one-line reason they cannot."""
    from ..data import DATASETS, load_dataset

    size = budget.colour_size if channels == 3 else budget.gray_size
    sized = {"data.image_size": size} if size else {}
    if budget.digits_everywhere:
        return DataChoice(
            {"data.name": "digits", **sized}, f"{name}: the embedded digits stand in (smoke budget)", "digits"
        )
    spec = DATASETS.get(name)
    if spec.embedded:
        return DataChoice(sized, "", name)
    folder = data_dirs.get(name, data_dirs.get("", None))
    base = DataConfig(name=name, dir=folder, image_size=size or 28)
    if folder is not None:
        why = _probe(base)
        if why is None:
            return DataChoice({"data.dir": folder, **sized}, f"{name}: read from {folder}", name)
        if _probe(replace(base, split="test")) is None and name != "folder":
            return DataChoice(
                {"data.dir": folder, "data.split": "test", "data.holdout": budget.holdout, **sized},
                f"{name}: only the test files are in {folder}; trained on all but a fixed "
                f"{budget.holdout} of them, which are the evaluation reference",
                name,
            )
        return why
    if name == "folder":
        return f"{name}: pass --data-dir folder=DIR (an image folder; e.g. the 102 flowers' jpg/)"
    if _probe(base) is None:
        return DataChoice(sized, f"{name}: from the cache", name)
    if download:
        load_dataset(replace(base, download=True))  # here, once, not in every worker at the same time
        load_dataset(replace(base, split="test", download=True))
        return DataChoice(sized, f"{name}: downloaded into the cache", name)
    if budget.digits_for_mnist and name == "mnist":
        return DataChoice(
            {"data.name": "digits", **sized},
            "mnist: no MNIST files here, so scikit-learn's embedded 8x8 digits (upscaled) stand in "
            "for MNIST digits; pass --data-dir mnist=DIR for the real thing",
            "digits",
        )
    why = _probe(base)
    return (
        f"{why} (pass --data-dir {name}=DIR with the files, or --download)" if why else f"{name}: not readable"
    )  # pragma: no cover


def plan_jobs(
    claims: ReportClaims,
    budget_name: str,
    data_dirs: dict[str, str] | None = None,
    download: bool = False,
    skip_missing: bool = False,
) -> dict[str, Any]:
    """The plan written to DIR/reproduce.json: one job per (used run, seed) with every config override, and the
    data choices. Raises GankitError naming every missing data set's files when one cannot be reached, unless
    ``skip_missing``: then the runs on it are left out (``plan["missing"]``) and their claims are not decided."""
    from ..config.layering import resolve
    from ..data import DATASETS

    budget = BUDGETS.get(budget_name)
    data_dirs = dict(data_dirs or {})
    choices: dict[str, DataChoice] = {}
    missing: list[str] = []
    skipped: dict[str, str] = {}  # run -> why it is not run
    jobs: list[dict[str, Any]] = []
    for run_name in claims.used_runs():
        run = claims.runs[run_name]
        cfg = resolve(file=run.config_path, overrides=run.overrides)
        name = cfg.data.name
        if name not in choices:
            got = choose_data(name, cfg.data.channels or DATASETS.get(name).channels or 3, budget, data_dirs, download)
            if isinstance(got, str):
                missing.append(got)
                got = DataChoice({}, got, "")
            choices[name] = got
        choice = choices[name]
        if not choice.used:
            skipped[run_name] = choice.note
            continue
        over: dict[str, Any] = {**run.overrides, **choice.overrides, "train.progress": False}
        if budget.steps is not None:
            steps = max(1, round(claims.budget_steps.get(budget_name, budget.steps) * run.budget_fraction))
            over.update(
                {
                    "train.steps": steps,
                    "train.epochs": 0,
                    "train.max_minutes": 0,
                    "train.sample_every": max(steps // 10, min(steps, 10)),
                }
            )  # ~10 grids, not one a step
        elif run.budget_fraction < 1:
            if cfg.train.steps:
                over.update({"train.steps": max(1, round(cfg.train.steps * run.budget_fraction))})
            else:
                over.update({"train.epochs": cfg.train.epochs * run.budget_fraction})
        if budget.batch_cap and cfg.train.batch_size > budget.batch_cap:
            over["train.batch_size"] = budget.batch_cap
        if budget.log_every:
            over["train.log_every"] = budget.log_every
        for seed in claims.seeds:
            job_over = {**over, "seed": seed}
            # A bad override fails here, before anything trains; the resolved config says what the run will train.
            job_cfg = resolve(file=run.config_path, overrides=job_over)
            jobs.append(
                {
                    "name": f"{run_name}-seed{seed}",
                    "run": run_name,
                    "seed": seed,
                    "config": run.config,
                    "overrides": job_over,
                    "data": choice.used,
                    "image_size": job_cfg.data.image_size,
                    "steps": job_cfg.train.steps or f"{job_cfg.train.epochs:g} epochs",
                }
            )
    if missing and not skip_missing:
        raise GankitError(f"report {claims.report} needs data that is not here: {'; '.join(missing)}")
    return {
        "version": PLAN_VERSION,
        "report": claims.report,
        "budget": budget_name,
        "eval_n": budget.eval_n,
        "budget_description": budget.description,
        "used": size_and_steps(jobs, claims, budget_name),
        "data": {k: v.note for k, v in choices.items() if v.note},
        "missing": skipped,
        "jobs": jobs,
    }


def size_and_steps(jobs: list[dict[str, Any]], claims: ReportClaims, budget_name: str) -> str:
    """The image size and steps the runs use, in words: the page's and claims.json's statement of them."""
    groups: dict[tuple[Any, Any], list[str]] = {}
    for j in jobs:
        runs = groups.setdefault((j["image_size"], j["steps"]), [])
        if j["run"] not in runs:
            runs.append(j["run"])
    if not groups:
        return "no runs"
    parts = []
    for (size, steps), runs in groups.items():
        count = f"{steps} generator updates" if isinstance(steps, int) else steps
        who = "every run" if len(groups) == 1 else ", ".join(runs)
        parts.append(f"{size}x{size}, {count} per run: {who}")
    text = "; ".join(parts)
    if budget_name in claims.budget_steps:
        own = BUDGETS.get(budget_name).steps
        text += (
            f" (this report's claims file sets {claims.budget_steps[budget_name]} steps for the {budget_name} budget "
            f"instead of its {own})"
        )
    return text


def open_out_dir(out: Path, plan: dict[str, Any]) -> None:
    """Make ``out`` the reproduction's folder, or refuse (GankitError, nothing touched): a file, a folder holding
    something else, or another report's / budget's reproduction."""
    marker = out / PLAN
    if out.exists() and not out.is_dir():
        raise GankitError(f"--out {out} is a file; choose a folder path")
    if marker.is_file():
        try:
            old = json.loads(marker.read_text())
            key = (old["report"], old["budget"])
            old_jobs = {j["name"]: j for j in old["jobs"]}
        except (json.JSONDecodeError, KeyError, TypeError):
            raise GankitError(f"{marker} is damaged; choose another --out (nothing was changed)") from None
        if key != (plan["report"], plan["budget"]):
            raise GankitError(
                f"--out {out} holds report {key[0]} at budget {key[1]}, not report {plan['report']} at "
                f"{plan['budget']}; choose another --out (nothing was changed)"
            )
        for job in plan["jobs"]:
            was = old_jobs.get(job["name"])
            if was is not None and was["overrides"] != job["overrides"] and (out / "runs" / job["name"]).exists():
                diff = sorted(
                    k
                    for k in set(was["overrides"]) | set(job["overrides"])
                    if was["overrides"].get(k) != job["overrides"].get(k)
                )
                raise GankitError(
                    f"--out {out}: run {job['name']} was started with other settings ({diff[0]}: "
                    f"{was['overrides'].get(diff[0])!r} -> {job['overrides'].get(diff[0])!r}); use the "
                    f"same --data-dir, or another --out (nothing was changed)"
                )
    elif out.is_dir() and any(out.iterdir()):
        raise GankitError(
            f"--out {out} already holds files that are not a gankit reproduction; choose an empty or new "
            f"folder (nothing was changed)"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, plan)


# ---------------------------------------------------------------------------------------------------------------------
# work


def job_done(out: Path, job: dict[str, Any]) -> bool:
    return (out / "runs" / job["name"] / EVAL_FILE).is_file()


def run_job(out: Path, job: dict[str, Any], eval_n: int, threads: int, say: Callable[[str], None]) -> None:
    """Train (or resume) one job and evaluate it; the caller holds the job's lock."""
    from ..config.layering import resolve
    from ..eval import evaluate_run
    from ..training.checkpoint import candidates
    from ..training.loop import train
    from ..training.rundir import is_run_dir

    d = out / "runs" / job["name"]
    cfg = resolve(file=_config_path(job), overrides={**job["overrides"], "train.threads": threads})
    if not (d / "summary.json").is_file():
        if d.exists() and not (is_run_dir(d) and candidates(d / "checkpoints")):
            # Stopped before its first checkpoint: nothing to resume. Kept aside, not deleted.
            aside = d.with_name(f"{d.name}.unfinished-{int(time.time())}")
            d.rename(aside)
            say(f"{job['name']}: stopped before its first checkpoint; its folder moved to {aside.name}, starting again")
        try:
            with job_clock(d, "train"):  # adds up over resumes; d exists once training has started
                if d.exists():
                    say(f"{job['name']}: resuming")
                    train(cfg, resume=d)
                else:
                    say(f"{job['name']}: training")
                    train(cfg, out=d)
        except DivergedError as e:
            say(f"{job['name']}: {e}")
            write_json(d / EVAL_FILE, {"diverged": str(e)})
            return
    say(f"{job['name']}: evaluating ({eval_n} samples)")
    with job_clock(d, "eval"):
        ev = evaluate_run(d, n=eval_n, features="classifier", progress=False)
    write_json(d / EVAL_FILE, ev)


def _config_path(job: dict[str, Any]) -> Path:
    from .claims import CONFIGS_DIR

    return CONFIGS_DIR / job["config"]


def work(out: Path, threads: int, say: Callable[[str], None]) -> int:
    """Walk the plan's jobs in order; take each unfinished one by its lock (skip it when another worker holds it),
    train and evaluate it. Returns the number of jobs this call finished."""
    from ..training.rundir import RunDir

    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover - then BLAS keeps its own thread count
        from contextlib import nullcontext as threadpool_limits  # type: ignore[assignment]

    plan = json.loads((out / PLAN).read_text())
    done = 0
    # numpy's BLAS (the evaluation's FD, KID, Parzen) keeps to this worker's share of the cores too: on a busy
    # machine a second BLAS thread made KID many times slower (docs/notes/code-comments.md).
    with threadpool_limits(threads):
        done = _walk(out, plan, threads, say, RunDir)
    return done


def _walk(out: Path, plan: dict[str, Any], threads: int, say: Callable[[str], None], run_dir: Any) -> int:
    done = 0
    for job in plan["jobs"]:
        if job_done(out, job):
            continue
        claim = run_dir(out / ".claims" / job["name"], rank=0)
        try:
            claim.lock(say=lambda m: None)
        except GankitError:
            continue  # another worker has it
        try:
            if not job_done(out, job):  # it may have finished between the look and the lock
                run_job(out, job, plan["eval_n"], threads, say)
                done += 1
        finally:
            claim.close()
    return done


def _worker(index: int, threads: int, out: str) -> int:
    """One process of `--workers N` (module level: spawned processes import it by name)."""
    from ..core.errors import Interrupted

    def say(msg: str) -> None:
        print(f"reproduce[{index}]: {msg}", file=sys.stderr, flush=True)

    try:
        work(Path(out), threads, say)
    except GankitError as e:
        print(f"gankit: error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return e.exit_code
    except Interrupted as e:
        return e.exit_code
    return 0


def run_all(
    out: Path, workers: int, threads: int, say: Callable[[str], None], facts: dict[str, Any] | None = None
) -> int | None:
    """Every unfinished job of DIR's plan, in this process (workers <= 1) or in ``workers`` processes. Returns the
    signal that stopped the workers, or None. ``facts`` (when given) receives what the cost record needs: the
    workers started, their threads, the cores that makes, and the CPU seconds the evaluation classifiers took."""
    from ..workers import run_workers, threads_per_worker, usable_cores

    facts = {} if facts is None else facts
    plan = json.loads((out / PLAN).read_text())
    todo = [j for j in plan["jobs"] if not job_done(out, j)]
    say(f"{len(plan['jobs']) - len(todo)} of {len(plan['jobs'])} runs already finished")
    if not todo:
        return None
    n_workers = 1 if workers <= 1 else min(workers, len(todo))
    per = threads_per_worker(n_workers, threads)
    facts.update(workers=n_workers, threads=per, cores=min(n_workers * per, usable_cores()), runs_todo=len(todo))
    cpu0 = self_cpu_seconds()
    _warm_classifiers(plan, say)
    facts["classifier_cpu_s"] = round(self_cpu_seconds() - cpu0, 2)
    if workers <= 1:
        from ..core.errors import Interrupted

        try:
            work(out, per, say)
        except Interrupted as e:  # the run saved a checkpoint; the page still shows everything measured so far
            return e.exit_code - 128
        except KeyboardInterrupt:  # outside training (evaluating, loading data): nothing half-written is kept
            return int(signal.SIGINT)
        return None
    total = len(plan["jobs"])

    said = [-1]

    def tick() -> None:  # a line when the count moves, not every tick (logs and CI read it line by line)
        n = sum(job_done(out, j) for j in plan["jobs"])
        if n != said[0]:
            said[0] = n
            say(f"{n}/{total} runs finished")

    exits, stopped = run_workers(n_workers, _worker, (str(out),), threads=threads, tick=tick, tick_seconds=30.0)
    for e in exits:
        if e.exitcode not in (0, None) and stopped is None:
            say(e.describe())
    return stopped


def _warm_classifiers(plan: dict[str, Any], say: Callable[[str], None]) -> None:
    """Train (or find cached) each data set's evaluation classifier once, before workers would race to train it."""
    from ..config.layering import resolve
    from ..data.splits import reference_data
    from ..metrics.features import build_extractor

    seen: set[str] = set()
    for job in plan["jobs"]:
        cfg = resolve(file=_config_path(job), overrides=job["overrides"])
        key = json.dumps(
            [cfg.data.name, cfg.data.dir, cfg.data.split, cfg.data.holdout, cfg.data.image_size, cfg.data.channels]
        )
        if key in seen:
            continue
        seen.add(key)
        train_part, _ = reference_data(cfg)
        if bool((train_part.labels >= 0).all()):
            say(f"evaluation classifier for {cfg.data.name} at {cfg.data.image_size}x{cfg.data.image_size}")
            build_extractor("classifier", train_part, progress=False)


# ---------------------------------------------------------------------------------------------------------------------
# judge


@dataclass
class Measured:
    """Per job: the evaluation and the training log, read once."""

    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def read(cls, out: Path, plan: dict[str, Any]) -> Measured:
        m = cls()
        for job in plan["jobs"]:
            d = out / "runs" / job["name"]
            if (d / EVAL_FILE).is_file():
                m.evaluations[job["name"]] = json.loads((d / EVAL_FILE).read_text())
                m.rows[job["name"]] = read_jsonl(d / "metrics.jsonl") if (d / "metrics.jsonl").is_file() else []
        return m

    def values(self, plan: dict[str, Any], metric: str) -> dict[str, dict[int, float | None]]:
        """run -> seed -> value (None: not measured, diverged, or not applicable)."""
        out: dict[str, dict[int, float | None]] = {}
        for job in plan["jobs"]:
            ev = self.evaluations.get(job["name"])
            v = None if ev is None or "diverged" in ev else measure(metric, ev, self.rows.get(job["name"], []))
            out.setdefault(job["run"], {})[job["seed"]] = v
        return out


def _requirements_unmet(requires: dict[str, Any], plan: dict[str, Any], run: str) -> list[str]:
    from ..config.layering import resolve

    jobs = [j for j in plan["jobs"] if j["run"] == run]
    if not jobs:
        return ["the run was not planned"]
    cfg = resolve(file=_config_path(jobs[0]), overrides=jobs[0]["overrides"])
    facts = {
        "data": cfg.data.name,
        "image_size": cfg.data.image_size,
        "budget": plan["budget"],
        "min_samples": plan["eval_n"],
    }
    unmet = []
    for key, want in requires.items():
        have = facts[key]
        ok = have >= want if key == "min_samples" else have == want
        if not ok:
            unmet.append(f"{key} {have} (needs {'>= ' if key == 'min_samples' else ''}{want})")
    return unmet


def judge(claims: ReportClaims, plan: dict[str, Any], measured: Measured) -> list[dict[str, Any]]:
    """Every claim's verdict and numbers, in the file's order (what claims.json holds)."""
    from .measures import METRICS

    results = []
    skipped = plan.get("missing", {})
    for claim in claims.claims:
        c = claim.check
        spec = METRICS.get(c.metric)
        per_seed = measured.values(plan, c.metric)
        runs = c.runs()
        series = {r: [per_seed.get(r, {}).get(s) for s in claims.seeds] for r in runs}
        f = c.fields
        not_run = [r for r in runs if r in skipped]
        if not_run:
            v = Verdict(UNDECIDED, f"not run here: {not_run[0]} needs data that is missing ({skipped[not_run[0]]})")
        elif c.kind == "rank":
            v = rank(series, f["order"], spec.lower_is_better, spec.label)
        elif c.kind == "best":
            v = best(series, f["winner"], f["among"], spec.lower_is_better, spec.label)
        elif c.kind == "same":
            v = same(series, f["runs"], float(f.get("tolerance", 0.1)), spec.label)
        else:
            unmet = _requirements_unmet(f.get("requires") or {}, plan, f["run"])
            v = (
                Verdict(UNDECIDED, "the report's number holds only for " + ", ".join(unmet) + " at this budget")
                if unmet
                else threshold(series[f["run"]], f["op"], float(f["value"]), spec.label)
            )
        numbers = {}
        for r in runs:
            xs = [x for x in series[r] if x is not None]
            numbers[r] = {
                "seeds": dict(zip((str(s) for s in claims.seeds), series[r])),
                "mean": sum(xs) / len(xs) if xs else None,
                "spread": (max(xs) - min(xs)) if len(xs) > 1 else None,
            }
        results.append(
            {
                "id": claim.id,
                "section": claim.section,
                "quote": claim.quote,
                "their": claim.their,
                "check": c.describe(),
                "metric": c.metric,
                "lower_is_better": spec.lower_is_better,
                "verdict": v.verdict,
                "reason": v.reason,
                "pairs": v.pairs,
                "numbers": numbers,
            }
        )
    return results


def reproduce(
    claims: ReportClaims,
    budget: str,
    out: Path,
    workers: int = 1,
    threads: int = 0,
    data_dirs: dict[str, str] | None = None,
    download: bool = False,
    skip_missing: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Plan, run what is unfinished, judge, and write DIR/claims.json and DIR/report.html. Returns
    ``{"results", "plan", "stopped", "unfinished", "cost"}``; the call's CPU and wall time are added to DIR/cost.json."""
    from .page import write_outputs

    clock = Stopwatch().start()  # before planning: a --download inside it is part of the cost
    try:
        plan = plan_jobs(claims, budget, data_dirs, download, skip_missing)
        open_out_dir(out, plan)
        facts: dict[str, Any] = {}
        stopped = run_all(out, workers, threads, say, facts)
        measured = Measured.read(out, plan)
        results = judge(claims, plan, measured)
        unfinished = [j["name"] for j in plan["jobs"] if j["name"] not in measured.evaluations]
        if facts:  # something was run (a call that found every run finished only re-renders the page)
            add_call(out, clock.record(**facts, runs_unfinished=len(unfinished)))
    finally:
        clock.stop()
    cost = write_outputs(out, claims, plan, results, unfinished)
    return {"results": results, "plan": plan, "stopped": stopped, "unfinished": unfinished, "cost": cost}
