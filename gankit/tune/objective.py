"""One trial = one ordinary run folder, trained by gankit.training.loop.train; a worker runs trials until the study
has its count.

A trial samples the space, layers the values into the base config (the same layering as ``gankit train``), trains
``STUDY/trial-NNNN`` for the study's budget and returns the final validation score (classifier FD on the study's
held-out images for GANs, validation L1 for pix2pix). Training-time scores go to Optuna at every
``train.eval_every``; when the pruner says so the run stops cleanly there (checkpoint, summary "pruned at step N").

A trial whose worker died (``kill -9``, a lost machine) stops beating; Optuna fails it after the grace period and
queues it again with the same parameters, and the retry continues the dead trial's folder from its last checkpoint.
A trial stopped by Ctrl-C is checkpointed and queued again the next time the study is run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..core.errors import DivergedError, GankitError, Interrupted, StopTraining
from .space import Dist, grid_of, grid_points
from .study import SECOND_DIRECTIONS, StudySpec, create_or_load, need_optuna, open_storage


@dataclass
class Counts:
    """Trials of a study by what they mean for the count: ``done`` = complete + pruned + failed by an error of its
    own (diverged); trials failed by a lost worker or Ctrl-C are retried, so they do not count."""

    complete: int = 0
    pruned: int = 0
    errors: int = 0
    running: int = 0
    waiting: int = 0
    lost: int = 0  # failed by a lost worker or an interrupt (retried)

    @property
    def done(self) -> int:
        return self.complete + self.pruned + self.errors


def count(trials: list[Any]) -> Counts:
    from optuna.trial import TrialState

    c = Counts()
    for t in trials:
        if t.state == TrialState.COMPLETE:
            c.complete += 1
        elif t.state == TrialState.PRUNED:
            c.pruned += 1
        elif t.state == TrialState.RUNNING:
            c.running += 1
        elif t.state == TrialState.WAITING:
            c.waiting += 1
        elif t.state == TrialState.FAIL:
            if t.user_attrs.get("error"):
                c.errors += 1
            else:
                c.lost += 1
    return c


def suggest(trial: Any, key: str, d: Dist) -> Any:
    if d.kind == "loguniform":
        return trial.suggest_float(key, d.low, d.high, log=True)
    if d.kind == "uniform":
        return trial.suggest_float(key, d.low, d.high)
    if d.kind == "int":
        return trial.suggest_int(key, int(d.low), int(d.high), step=int(d.step or 1))
    return trial.suggest_categorical(key, list(d.choices))


def space_of(spec: StudySpec) -> dict[str, Dist]:
    return {k: Dist(v["kind"], v["low"], v["high"], v["step"], tuple(v["choices"])) for k, v in spec.space.items()}


def trial_config(spec: StudySpec, params: dict[str, Any], threads: int) -> Any:
    """The resolved config of a trial: base file <- flags <- sampled params <- tune's own keys (holdout, eval
    cadence, no progress bar) and this worker's thread share."""
    from ..config.layering import resolve

    return resolve(file=spec.config, overrides={**spec.flags, **params, **spec.tune_keys, "train.threads": threads})


def _folder_for(spec: StudySpec, trial: Any) -> tuple[Path, bool]:
    """(run folder, resume?) for a trial: a retried trial continues its predecessor's folder when that folder holds a
    checkpoint on this machine; otherwise a new folder named after this trial."""
    from ..training.checkpoint import candidates

    old = trial.user_attrs.get("folder")  # set only on a retry: Optuna copies the failed trial's attributes
    if old:
        prev = spec.root / old
        if prev.is_dir() and candidates(prev / "checkpoints"):
            return prev, True
    return spec.root / f"trial-{trial.number:04d}", False


@dataclass(frozen=True)
class SecondObjective:
    """An optional second objective beside the score (``--objective fd,NAME``): Optuna then searches for the Pareto
    front of the two instead of one best trial."""

    direction: str  # minimize / maximize
    measure: Callable[[Any, Path, int], float]  # (trial's config, its run folder, steps trained by this trial) -> value
    help: str


def _images_per_s(cfg: Any, folder: Path, steps: int) -> float:
    # The budget's own clock: CPU seconds with --cpu-minutes (what a trial cost, whatever the load), else wall seconds.
    summary = json.loads((folder / "summary.json").read_text())
    seconds = summary.get("cpu_seconds") if cfg.train.clock == "cpu" else summary.get("seconds")
    return steps * cfg.train.batch_size * cfg.train.d_steps / max(float(seconds or 0), 1e-9)


def _params(cfg: Any, folder: Path, steps: int) -> float:
    from ..tasks import load

    return float(sum(p.numel() for p in load(folder, "final").g.parameters()))


SECOND = {
    "images_per_s": SecondObjective(
        SECOND_DIRECTIONS["images_per_s"],
        _images_per_s,
        "training images per second on the budget's clock (CPU seconds with --cpu-minutes), side work included",
    ),
    "params": SecondObjective(
        SECOND_DIRECTIONS["params"], _params, "parameters of the generator (what sampling costs)"
    ),
}


class Objective:
    """``study.optimize`` calls it with one trial; it returns the trial's final score (and with a second objective,
    the pair)."""

    def __init__(self, spec: StudySpec, threads: int) -> None:
        self.spec, self.threads = spec, threads
        self.space = space_of(spec)
        self.second = SECOND[spec.objectives[1]] if len(spec.objectives) > 1 else None
        # a failed trial: NaN in every objective (Optuna records it as failed)
        self.failed: Any = float("nan") if self.second is None else (float("nan"), float("nan"))

    def __call__(self, trial: Any) -> float:
        optuna = need_optuna()
        from ..training.checkpoint import latest_name
        from .runs import train_in

        params = {k: suggest(trial, k, d) for k, d in self.space.items()}
        try:
            cfg = trial_config(self.spec, params, self.threads)
        except GankitError as e:  # a combination of sampled values the config's checks refuse: a failed trial
            message = " ".join(str(e).split())
            trial.set_user_attr("error", message)
            print(f"gankit: trial {trial.number} failed: {message}", file=sys.stderr)
            return self.failed
        folder, resume = _folder_for(self.spec, trial)
        resumed_from = None
        if resume:
            resumed_from = _step_of(latest_name(folder / "checkpoints"))
        for k, v in {
            "folder": folder.name,
            "resumed_from_step": resumed_from,
            "error": None,
            "interrupted_at": None,
            "pruned_at": None,
        }.items():
            trial.set_user_attr(k, v)
        metric = self.spec.metric

        def on_scores(step: int, scores: dict[str, float], final: bool) -> None:
            value = scores.get(metric)
            if value is None or final or not math.isfinite(value) or self.second is not None:
                return  # (Optuna neither records nor prunes on training-time scores of multi-objective studies)
            trial.report(value, step)
            if cfg.train.steps and step >= cfg.train.steps:  # the budget is spent: the trial's result, not a verdict
                return
            if trial.should_prune():
                trial.set_user_attr("pruned_at", step)
                raise StopTraining(
                    "pruned", f"pruned at step {step} by the study's {self.spec.pruner} pruner ({metric} {value:.4g})"
                )

        cpu0, wall0 = time.process_time(), time.monotonic()
        try:
            run = train_in(cfg, folder, on_scores=on_scores)
        except (DivergedError, GankitError) as e:
            # The recipe diverged, or a sampled value is one the data or model cannot take (e.g. a batch larger than
            # the data): this trial failed and counts as done; the search carries on with other values.
            message = " ".join(str(e).split())
            trial.set_user_attr("error", message)
            self._spent(trial, cpu0, wall0)
            if not isinstance(e, DivergedError):
                print(f"gankit: trial {trial.number} failed: {message}", file=sys.stderr)
            return self.failed  # Optuna records a failed trial
        except Exception as e:  # noqa: BLE001 - Interrupted, and anything else: the trial will be retried
            if isinstance(e, Interrupted):
                trial.set_user_attr("interrupted_at", str(e))
            self._spent(trial, cpu0, wall0)
            raise
        self._spent(trial, cpu0, wall0)
        trial.set_user_attr("steps", run.step)
        trial.set_user_attr("stopped_by", run.stopped_by)
        if run.stopped_by == "pruned":
            raise optuna.TrialPruned(f"pruned at step {trial.user_attrs.get('pruned_at')}")
        value = run.scores.get(metric)
        if value is None:
            trial.set_user_attr("error", f"the run reported no {metric}")
            return self.failed
        if self.second is None:
            return float(value)
        return float(value), self.second.measure(cfg, folder, run.step - (resumed_from or 0))

    @staticmethod
    def _spent(trial: Any, cpu0: float, wall0: float) -> None:
        # CPU seconds of this worker process (its training threads included): the cost that compares across loads.
        trial.set_user_attr("cpu_seconds", round(time.process_time() - cpu0, 2))
        trial.set_user_attr("wall_seconds", round(time.monotonic() - wall0, 2))


def _step_of(name: str | None) -> int | None:
    """step-0000120 -> 120 (the checkpoint a resume starts from)."""
    return int(name[5:]) if name and name.startswith("step-") and name[5:].isdigit() else None


def target_of(spec: StudySpec) -> int:
    """The trial count: --trials, at most the grid's size for a grid search."""
    if spec.sampler != "grid":
        return spec.trials
    return min(spec.trials, len(grid_points(grid_of(space_of(spec)))))


def build_sampler(spec: StudySpec, worker: int, seen: int) -> Any:
    """Optuna's sampler for one worker. Each worker (and each re-run) seeds its own stream from the study's seed: with
    one seed, two workers would propose the same first points."""
    optuna = need_optuna()
    seed = spec.seed + 7919 * worker + seen
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, spec.trials // 3)))
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(grid_of(space_of(spec)), seed=seed)
    if spec.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ValueError(spec.sampler)


def build_pruner(spec: StudySpec) -> Any:
    optuna = need_optuna()
    every = int(spec.tune_keys["train.eval_every"])
    if spec.pruner == "median":
        # A GAN's first score is mostly noise: a trial is judged from its second score on, and only once a few
        # trials have finished.
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, spec.trials // 4)), n_warmup_steps=2 * every)
    if spec.pruner == "hyperband":
        steps = int(spec.flags.get("train.steps") or 0)
        return optuna.pruners.HyperbandPruner(min_resource=every, max_resource=steps or "auto", reduction_factor=3)
    return optuna.pruners.NopPruner()


def work(index: int, threads: int, spec_json: str) -> int:
    """A worker (gankit.workers.run_workers target): run trials of the study one at a time until it has its count."""
    optuna = need_optuna()
    spec = StudySpec(**{k: v for k, v in json.loads(spec_json).items() if k != "fingerprint"})
    storage = open_storage(spec.storage, heartbeat=spec.heartbeat, retry=True)
    first = create_or_load(spec, storage)
    study = optuna.load_study(
        study_name=spec.name,
        storage=storage,
        sampler=build_sampler(spec, index, len(first.get_trials(deepcopy=False))),
        pruner=build_pruner(spec),
    )
    objective = Objective(spec, threads)
    target = target_of(spec)
    while True:
        c = count(study.get_trials(deepcopy=False))
        if c.done >= target:
            return 0
        if c.done + c.running >= target and not c.waiting:
            # The count is in the running trials' hands; one of them may belong to a dead worker, which only
            # stops beating: fail it when its grace period is over, so its retry gets queued for us.
            optuna.storages.fail_stale_trials(study)
            time.sleep(1.0)
            continue
        try:
            study.optimize(objective, n_trials=1, catch=())
        except Interrupted:  # the trial's checkpoint is written; the next run of the study continues it
            return 130
        except GankitError as e:  # bad input only a trial meets (e.g. a sampled size the data cannot take)
            print(f"gankit: error: trial of study {spec.name!r}: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
