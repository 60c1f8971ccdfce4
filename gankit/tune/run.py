"""`gankit tune` from start to end: check everything, fix the study's reference, start the workers, show progress,
then write the report and best.yaml."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ..config.schema import flatten
from ..core.errors import GankitError
from .space import base_point, check_space, read_space, space_json
from .study import (
    BASE_ATTR,
    BASE_CLAIM,
    RequeueOnce,
    StudySpec,
    claim_once,
    check_writable,
    create_or_load,
    default_storage,
    need_optuna,
    open_storage,
    prepare_sqlite,
    redact,
)

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
EVAL_MIN_HELD = 500  # gankit.tasks.gan: fewer held-out images than this and the training-time FD uses training images
HOLDOUT_MAX = 2000


def default_folder(config: str | None, space: str | None) -> Path:
    """studies/<config>-<space>: the same command names the same study, so running it again continues it."""
    parts = [Path(p).stem for p in (config, space) if p] or ["study"]
    return Path("studies") / "-".join(parts)


def choose_holdout(n: int) -> int:
    """Images kept out of training to score every trial: enough for a held-out FD reference (>= 500) where the data
    allows while training keeps most, else a fifth."""
    if n >= 3 * EVAL_MIN_HELD:
        return min(HOLDOUT_MAX, max(EVAL_MIN_HELD, n // 10))
    if n >= 2 * EVAL_MIN_HELD:
        return EVAL_MIN_HELD
    return max(1, n // 5)


def reference_of(cfg: Any, say: Callable[[str], None]) -> tuple[dict[str, Any], int]:
    """(what scores the trials, data.holdout) for a GAN study: a fixed held-out part (seed 0) and the feature network
    trained on the rest, trained once here (cached) so every worker loads the same one."""
    from ..data import load_dataset
    from ..data.splits import holdout_split
    from ..metrics import build_extractor

    data = load_dataset(cfg.data)
    holdout = cfg.data.holdout or choose_holdout(len(data))
    train, held = holdout_split(data, holdout)
    kind = "classifier" if data.num_classes else "pixels"
    say(
        f"tune: scoring every trial by FD against {len(held)} held-out images in the features of a {kind} "
        f"network trained on the other {len(train)} (trained once, cached)"
    )
    ext = build_extractor(kind, train, progress=False)
    ref = "held-out images" if len(held) >= EVAL_MIN_HELD else "training images (too few held out for a reference)"
    return {
        "holdout": holdout,
        "reference_images": ref,
        "reference_sha256": hashlib.sha256(held.images.numpy().tobytes()).hexdigest()[:16],
        "extractor": ext.identity,
        "train_images": len(train),
    }, holdout


def eval_cadence(flags: dict[str, Any], given: int | None) -> int:
    if given is not None:
        if given < 1:
            raise GankitError(f"--eval-every {given}: give the steps between scores (1 or more)")
        return given
    steps = int(flags.get("train.steps") or 0)
    if steps:
        return max(1, steps // 8)
    # A time budget: steps per minute depend on the machine and its load; about 100 steps per budget minute gives
    # the pruner a few scores per trial on a busy laptop without spending a fast machine's minutes on scoring.
    minutes = float(flags.get("train.max_minutes") or 0)
    return max(50, int(round(100 * minutes))) if minutes else 250


def run_tune(
    config: str | None,
    space_file: str | None,
    params: list[str],
    flags: dict[str, Any],
    *,
    out: str | None,
    trials: int,
    workers: int,
    threads: int,
    sampler: str,
    pruner: str,
    seed: int,
    storage: str | None,
    study_name: str | None,
    eval_every: int | None,
    heartbeat: int,
    best_seeds: int = 0,
    objective: str = "score",
    enqueue_base: bool = False,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> int:
    """The whole command; returns the exit code (0, or 130/143 when stopped by a signal)."""
    need_optuna()
    from ..config.layering import resolve
    from ..data.splits import holdout_only
    from ..tasks import task_of
    from ..workers import run_workers
    from .objective import count, target_of, work

    if trials < 1:
        raise GankitError(f"--trials {trials}: give the number of trials (1 or more)")
    if workers < 1:
        raise GankitError(f"--workers {workers}: give the number of worker processes (1 or more)")
    if heartbeat < 1:
        raise GankitError(f"--heartbeat {heartbeat}: give seconds between a trial's heartbeats (1 or more)")
    if best_seeds < 0:
        raise GankitError(
            f"--best-seeds {best_seeds}: give the number of extra seeds to train the best trial on (0 or more)"
        )
    if sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ModuleNotFoundError:
            raise GankitError(
                "--sampler cmaes needs the cmaes package: pip install cmaes (or use --sampler tpe)"
            ) from None
    space = read_space(space_file, params)
    base = lambda extra: resolve(file=config, overrides={**flags, **extra})  # noqa: E731
    cfg0 = base({})
    check_space(space, base)
    if sampler == "grid":
        if enqueue_base:  # GridSampler does not count a queued trial as its grid point, so it would train it twice
            raise GankitError(
                "--enqueue-base with --sampler grid: the grid trains every point, the base's too when the space "
                "lists its values; leave out --enqueue-base"
            )
        for k, d in space.items():
            d.grid_values(k)
    start = base_point(space, flatten(cfg0.to_dict())) if enqueue_base else None  # checked before the study opens
    folder = Path(out) if out else default_folder(config, space_file)
    if folder.exists() and not folder.is_dir():
        raise GankitError(f"--out {folder} is a file; give a folder for the study")
    check_writable(folder)
    every = eval_cadence(flags, eval_every)
    url = storage or default_storage(folder)
    prepare_sqlite(url)
    store = open_storage(url, heartbeat=heartbeat, retry=True)  # a server that is down or refuses us: say so now
    metric, direction = task_of(cfg0).best_metric
    objectives = parse_objectives(objective, metric)
    if len(objectives) > 1 and pruner not in (None, "none"):
        raise GankitError(
            f"--pruner {pruner} with --objective {objective}: Optuna does not prune multi-objective "
            f"studies; leave out --pruner (or search one objective)"
        )
    pruner = pruner or ("median" if len(objectives) == 1 else "none")
    tune_keys: dict[str, Any] = {"train.eval_every": every, "train.checkpoint_every": every, "train.progress": False}
    spec = StudySpec(
        name=study_name or folder.resolve().name,
        folder=str(folder.resolve()),
        storage=url,
        config=str(Path(config).resolve()) if config else None,
        flags=flags,
        space=space_json(space),
        tune_keys=tune_keys,
        metric=metric,
        direction="minimize" if direction == "min" else "maximize",
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        trials=trials,
        heartbeat=heartbeat,
        reference={"metric": metric},
        resolved_base=cfg0.to_dict(),
        objectives=objectives,
    )
    optuna = need_optuna()
    study = create_or_load(spec, store)  # another search under this name is refused before any work
    if task_of(cfg0).split_validation is holdout_only:  # it validates only on data.holdout: choose one, fixed
        ref, holdout = reference_of(cfg0, say)
        spec.reference.update(ref)
        tune_keys["data.holdout"] = holdout  # follows from the base config, so not part of the fingerprint
    base(dict(tune_keys))  # tune's own keys are valid with this config
    spec.save()
    requeue_interrupted(study, store, say)
    optuna.storages.fail_stale_trials(study)  # a previous run's dead worker: its trial is retried now
    if start is not None:
        queue_base(study, start, store, say)
    target = target_of(spec)
    c = count(study.get_trials(deepcopy=False))
    say(
        f"tune: study {spec.name!r} in {redact(url)}: {c.done} of {target} trials done; {workers} worker(s), "
        f"sampler {sampler}, pruner {pruner}, {metric} every {every} steps ({'lower' if direction == 'min' else 'higher'} "
        f"is better)"
    )
    ticker = Progress(study, target, metric, say)
    spec_json = json.dumps({**asdict(spec)})
    exits, stopped = run_workers(workers, work, (spec_json,), threads=threads, tick=ticker.tick)
    ticker.tick(force=True)
    for e in exits:
        if e.exitcode not in (0, 130, 143) and not (stopped and e.exitcode in (-2, -15)):
            say(
                f"tune: {e.describe()}"
                + (
                    "; its trial is retried from its last checkpoint by the other workers "
                    "or the next run of this command"
                    if e.killed
                    else ""
                )
            )
    from .report import write_study_outputs

    files = write_study_outputs(spec.root, study)
    c = count(study.get_trials(deepcopy=False))
    for f in files:
        say(f"tune: wrote {f}")
    if stopped:
        say(f"tune: stopped by a signal with {c.done} of {target} trials done; run the same command to continue")
        return 128 + stopped
    if c.done >= target and not c.complete:
        say(
            f"tune: none of the {c.done} trials completed (each failed or was pruned; see the lines above and "
            f"{spec.root / 'report.html'}); no best.yaml"
        )
        return 1
    if c.done < target:
        if any(e.exitcode == 2 for e in exits):  # a trial met bad input; its worker said which in one line
            return 2
        say(f"tune: {c.done} of {target} trials done (workers ended early); run the same command to continue")
        return 1
    if best_seeds:
        return rerun_best(spec, study, best_seeds, workers, threads, say)
    return 0


def rerun_best(spec: StudySpec, study: Any, k: int, workers: int, threads: int, say: Callable[[str], None]) -> int:
    """The best trial's parameters on ``k`` new seeds (gankit.tune.seeds), then the report again with their spread."""
    from .report import best_trial, score_of, write_study_outputs
    from .runs import finished, train_runs
    from .seeds import SEEDS_DIR, seed_runs, seed_scores, spread

    best = best_trial(study)
    if best is None:  # run_tune returns before this when no trial completed; a caller may not
        raise GankitError(f"study {spec.name!r} has no completed trial to run on more seeds")
    runs = seed_runs(spec, best.number, dict(best.params), k)
    root = spec.root / SEEDS_DIR
    todo = [r for r in runs if not finished(root / r.name)]
    say(
        f"tune: the best trial ({best.number}, {spec.metric} {score_of(best):.4g}) on {k} seed(s) the search did not "
        f"train ({', '.join(str(r.overrides['seed']) for r in runs)}): {len(runs) - len(todo)} done, {len(todo)} to "
        f"train in {root}"
    )
    ended = None
    if todo:  # in worker processes, as the trials were, whatever their number
        ended = train_runs(root, runs, workers=min(workers, len(todo)), threads=threads, spawn=True, label="tune")
    write_study_outputs(spec.root, study)
    rows = seed_scores(spec.root, best.number, spec.metric)
    for r in rows:
        say(
            f"tune: seed {r['seed']}: {spec.metric} "
            + ("-" if r["score"] is None else f"{r['score']:.4g}")
            + f" ({r['folder']})"
        )
    stat = spread(rows, spec.metric)
    if stat is not None:
        say(
            f"tune: the best trial's recipe on {stat[2]} new seeds: {spec.metric} {stat[0]:.4g} ± {stat[1]:.2g} "
            f"(n={stat[2]}; the trial itself: {score_of(best):.4g})"
        )
    if ended and ended.stopped:
        say("tune: stopped by a signal; run the same command to continue the seeds")
        return 128 + ended.stopped
    if ended and ended.bad_input:
        return 2
    if not all(finished(root / r.name) for r in runs):
        say("tune: not every seed finished; run the same command to continue")
        return 1
    return 0


def queue_base(study: Any, params: dict[str, Any], storage: Any, say: Callable[[str], None]) -> None:
    """Queue the base config's own values as the next trial, so the study measures the recipe it starts from; a study
    that already holds a trial with these values (this command run before) is left as it is.

    Optuna's ``skip_if_exists`` looks, then queues: two processes starting at once would both queue it. A claim in
    the study's database (as for requeues) lets one of them through."""
    if not claim_once(storage.engine, study.study_name, BASE_CLAIM):
        return  # another process of this study has queued it (or this command did, on an earlier run)
    before = len(study.get_trials(deepcopy=False))
    study.enqueue_trial(params, user_attrs={BASE_ATTR: True}, skip_if_exists=True)
    if len(study.get_trials(deepcopy=False)) > before:
        say(
            f"tune: queued the base config's values as the next trial: {', '.join(f'{k}={v}' for k, v in params.items())}"
        )


def parse_objectives(text: str, metric: str) -> list[str]:
    """``--objective``: the study's score (named fd, score or the metric), optionally with a second objective after a
    comma: ["score"] or ["score", "images_per_s"]."""
    from .objective import SECOND

    short = metric.split("/")[-1]
    names = [n.strip() for n in text.split(",")]
    if names[0] not in ("score", "fd", metric, short) or len(names) > 2 or (len(names) == 2 and names[1] not in SECOND):
        raise GankitError(
            f"--objective {text}: give the score ({short}), optionally with one of "
            f"{', '.join(SECOND)} after a comma, e.g. --objective {short},params"
        )
    if names[0] == "fd" and short != "fd":
        raise GankitError(f"--objective {text}: this model is scored by {metric}, not FD; use --objective {short}")
    return ["score", *names[1:]]


def requeue_interrupted(study: Any, storage: Any, say: Callable[[str], None]) -> None:
    """Trials a Ctrl-C (or a dead worker seen by a previous run) left failed, not yet queued again: queue them, so
    they continue from their checkpoints. Each is queued once, however many `gankit tune` processes of the study
    start at the same time (see RequeueOnce)."""
    need_optuna()  # one line naming the extra to install, before the import below
    from optuna.trial import TrialState

    requeue = RequeueOnce(storage.engine)
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for t in trials:
        if t.state == TrialState.FAIL and not t.user_attrs.get("error") and t.number not in retried:
            before = len(study.get_trials(deepcopy=False))
            if not requeue(study, t):
                continue  # another process of this study queued it a moment ago
            if len(study.get_trials(deepcopy=False)) > before:
                say(f"tune: trial {t.number} was stopped before it finished; queued again (continues its checkpoint)")
            else:  # the callback's retry limit is reached: say so instead of silently dropping it
                say(f"tune: trial {t.number} was stopped before it finished and has used its retries; not queued")


class Progress:
    """The progress line: trials done/pruned/failed/running and the best score so far, read from the storage."""

    def __init__(self, study: Any, target: int, metric: str, say: Callable[[str], None]) -> None:
        self.study, self.target, self.metric, self.say = study, target, metric, say
        self.last = ""
        self.t0 = time.monotonic()

    def tick(self, force: bool = False) -> None:
        from .objective import count
        from .report import best_trial, score_of

        try:
            trials = self.study.get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - a busy database: the next tick reads it
            return
        c = count(trials)
        try:
            pick = best_trial(self.study)  # with two objectives: the Pareto front's best score
        except Exception:  # noqa: BLE001 - a busy database: the next tick reads it
            return
        line = (
            f"tune: {c.done}/{self.target} done ({c.complete} complete, {c.pruned} pruned, {c.errors} failed), "
            f"{c.running} running"
            + (f", {c.waiting} queued" if c.waiting else "")
            + (f"; best {self.metric} {score_of(pick):.4g} (trial {pick.number})" if pick else "")
        )
        if line != self.last:
            self.say(f"{line}  [{_clock(time.monotonic() - self.t0)}]")
            self.last = line


def _clock(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
