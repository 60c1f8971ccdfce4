"""The training loop, top to bottom: open the run (set up, resume), then step, roll back or log a row and do the
step's side work, until the budget is spent, the caller stops it or a signal arrives; then finish.

:func:`_train` is that sequence in a dozen lines; each part is a method of :class:`TrainingLoop`. The loop owns
time; what happens inside a step belongs to the task (gankit/tasks/), what is written goes through RunDir
(rundir.py) and RunOutputs (outputs.py), checkpoints through Checkpointer (checkpoint.py), which side work a step
owes through Paces (sidework.py), and the small decisions (budget, learning rate, finiteness, best score) through
parts.py.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from tqdm import tqdm

from ..config.layering import validate
from ..config.schema import Config, refuse_resume_change, to_dict
from ..core.errors import DivergedError, GankitError, Interrupted, StopTraining
from ..data import Batcher, load_dataset
from ..data.base import ImageData
from ..losses import LOSSES
from ..tasks import Task, TaskSpec, family_of, task_of
from . import distributed as ddp
from .checkpoint import Checkpointer, candidates
from .finetune import apply_init, resolve_source
from .outputs import RunOutputs
from .parts import BestKeeper, Budget, Monitor, StopFlag, host_values, nonfinite_weights, set_lr
from .rundir import RunDir, default_run_dir, load_run_config
from .precision import configure_backends
from .sidework import Due, Paces, SideWork
from .state import TrainState
from ..workers import usable_cores


@dataclass
class Run:
    """What :func:`train` returns."""

    dir: Path
    step: int
    epoch: float
    stopped_by: str
    metrics: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # the newest validation scores ("eval/...")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise GankitError(f"train.device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GankitError(f"train.device={name!r} but CUDA is not available here; use train.device=cpu")
    if dev.type == "mps" and not _mps_available():
        raise GankitError(
            f"train.device={name!r} but this PyTorch has no usable MPS (Apple GPU) backend here; use "
            f"train.device=cpu (or auto)"
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise GankitError(f"train.device={name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return dev


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Setup:
    """Everything the loop works with, built from the config (and restored from a checkpoint on resume)."""

    spec: TaskSpec
    task: Task
    batcher: Batcher
    budget: Budget
    ckpt: Checkpointer
    state: TrainState
    device: torch.device


def set_up(cfg: Config, run: RunDir, resume: bool, data: ImageData | None, device: torch.device | None = None) -> Setup:
    """Threads, device and seeds; the data, its validation split and the task; checkpoints (restored on resume)."""
    validate(cfg)  # Python callers may build a Config by hand; the CLI validated it already
    # Per process; by default the machine's cores are split between the processes torchrun started on it.
    cores = usable_cores()
    if cfg.train.threads > 2 * cores:  # oversubscribed threads wait on each other: steps get many times slower
        run.say(
            f"warning: train.threads={cfg.train.threads} is more than twice the {cores} cores this process may "
            f"use, which makes every step slower; use --threads {cores} (or 0 for that default)"
        )
    torch.set_num_threads(cfg.train.threads or max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    device = device if device is not None else pick_device(cfg.train.device)  # cuda:LOCAL_RANK under torchrun
    configure_backends(device, cfg.train.tf32)
    seed_everything(cfg.seed)
    spec = task_of(cfg)
    if data is None:
        data = ddp.main_first(lambda: load_dataset(cfg.data))  # a download or cache build happens once per machine
    data, val = spec.split_validation(cfg, data, run.say)
    if cfg.train.init_from and not resume:  # the folder the config records: the same weights when it is re-run
        cfg = cfg.replace(**{"train.init_from": str(resolve_source(cfg.train.init_from))})
    task = spec.build(cfg, data, device, val)
    shape = tuple(int(v) for v in task.image_shape)  # what the family makes (a translation's targets, not its inputs)
    family = family_of(cfg)
    origin = None
    if cfg.train.init_from and not resume:  # a resumed run's weights come from its own checkpoint
        origin = apply_init(
            task.modules, cfg.train.init_from, cfg.train.init_parts, family, to_dict(cfg.model), shape, run.say
        )
    if cfg.train.sync_bn:
        ddp.convert_sync_bn({k: m for k, m in task.modules.items() if k != "ema"}, device)
    ddp.broadcast_modules(task.modules)  # identical start even if a seed-dependent init differed
    batcher = Batcher(data, cfg.train.batch_size, cfg.seed, device)
    budget = Budget(cfg, batcher.batches_per_epoch)
    if budget.steps is None and not cfg.train.max_minutes:
        raise GankitError(
            "no training budget: set train.steps, train.epochs or train.max_minutes (--steps/--epochs/--max-minutes)"
        )
    meta = {
        "image_shape": list(shape),
        "input_channels": int(data.images.shape[1]),
        "num_images": len(data),
        "class_names": data.class_names,
        "class_counts": data.class_counts(),
        "family": family,
        "recipe": family,
        "device": str(device),  # recipe: the key older gankit reads
        "threads": torch.get_num_threads(),
        "world_size": ddp.world_size(),
    }
    if origin is not None:
        meta["init_from"] = origin
    ckpt = Checkpointer(run.checkpoints, task, batcher, cfg.to_dict(), meta, cfg.train.keep_last, run.active)
    state = TrainState()
    if resume:
        ck = ddp.from_main(lambda: ckpt.latest(say=run.say), "the checkpoint")  # only rank 0 needs the run folder
        ckpt.restore(ck, to_dict(cfg.model))
        if "init_from" in ck.state.get("meta", {}):
            meta["init_from"] = ck.state["meta"]["init_from"]  # where a fine-tuned run started, kept in run.json
        ddp.reseed(cfg.seed, ck.step)  # rank 0 has the saved RNG state; the other ranks derive theirs
        state = TrainState.from_json(ck.step, ck.state)
        was = ck.state.get("meta", {}).get("world_size", 1)
        if was != ddp.world_size():
            run.say(
                f"the run was trained on {was} process(es), continues on {ddp.world_size()} (the global batch "
                f"train.batch_size={cfg.train.batch_size} is unchanged)"
            )
        # Rows logged after this checkpoint describe steps that are about to be redone (exactly); drop them, and
        # any line a kill cut short, so the log reads as one run.
        run.trim_metrics(state.step)
        run.say(f"resuming {run.root} from {ck.path.name} (step {state.step}, epoch {batcher.progress:.2f})")
    run.open()
    run.write_config(cfg, meta)
    return Setup(spec, task, batcher, budget, ckpt, state, device)


ScoresCallback = Callable[[int, dict[str, float], bool], None]


def train(
    cfg: Config,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    data: ImageData | None = None,
    on_scores: ScoresCallback | None = None,
) -> Run:
    """Train per ``cfg`` into run folder ``out`` (or continue the run in ``resume``). Returns a :class:`Run`.

    ``on_scores(step, scores, final)`` is called after every validation (``train.eval_every``) with the "eval/..."
    scores; with it, the end of the budget is always validated too (``final=True``), so the caller sees the run's
    end result. The callback may raise :class:`~gankit.core.errors.StopTraining` to end the run cleanly there
    (checkpoint, summary with ``stopped_by`` and ``stop_note``): a hyperparameter search prunes a trial that way.

    Raises GankitError for bad input, DivergedError on NaN/Inf, Interrupted on SIGINT/SIGTERM (after saving).
    Under torchrun every process calls it; rank 0 decides and writes (gankit/training/distributed.py).
    """
    with StopFlag():  # a signal before the loop is kept for it, not fatal (see StopFlag)
        device = ddp.start(pick_device(cfg.train.device), cfg.train.dist_timeout)
        try:
            return _train(cfg, out, resume, data, device, on_scores)
        finally:
            ddp.stop()  # also on errors: the other ranks then fail fast instead of waiting for a collective


def _train(
    cfg: Config,
    out: str | Path | None,
    resume: str | Path | None,
    data: ImageData | None,
    device: torch.device,
    on_scores: ScoresCallback | None,
) -> Run:
    """The loop as its named parts (:class:`TrainingLoop`): open the run; step, then roll back or log a row and do
    the step's side work, until a signal, the caller or the budget stops it; finish (or save and raise Interrupted)."""
    run, setup = open_run(cfg, out, resume, data, device)
    loop = TrainingLoop(cfg, run, setup, on_scores)
    try:
        loop.begin()
        with StopFlag() as stop:
            while not loop.should_stop(stop):
                outputs = loop.one_step(stop.signum)
                due = loop.paces.due(loop.state.step)
                scalars = host_values(outputs) if due.check_outputs or due.log else {}  # one device-to-host copy
                if (diverged := loop.divergence(scalars, due)) is not None:
                    loop.roll_back(diverged)
                    continue
                loop.log_row(scalars, due)
                loop.side_work(due)
        if loop.signal is not None:
            loop.interrupt()
        return loop.finish()
    finally:
        loop.close()


def open_run(
    cfg: Config, out: str | Path | None, resume: str | Path | None, data: ImageData | None, device: torch.device
) -> tuple[RunDir, Setup]:
    """The run folder every rank agrees on (a new one, or the run to resume), locked by this process, and the
    set-up in it; the folder is closed again (its lock given back) if the set-up fails."""
    if resume is None and out is not None and ddp.restarted() and candidates(Path(out) / "checkpoints"):
        resume = out  # torchrun restarted the group after a failure: continue from the newest checkpoint
    # Every rank must agree on the folder (a default name holds the time) and on whether it may be used.
    root = ddp.from_main(
        lambda: (
            resume if resume is not None else out if out is not None else default_run_dir(cfg.model.name, cfg.data.name)
        ),
        "the run folder",
    )
    run = RunDir(root, ddp.rank(), reserved=resume is None and out is None)
    if resume is None:
        ddp.from_main(run.check_new, "the run folder check")
    else:  # a Python caller's Config may differ from the run's own in more than a budget: refused before any write
        ddp.from_main(
            lambda: refuse_resume_change(load_run_config(Path(root)).to_dict(), cfg.to_dict(), root),
            "the resumed run's config check",
        )
    # One writer per run folder, taken before anything is written (a new run's folder is made here); close() gives
    # it back, and removes a new folder that a failed set-up left empty.
    run.lock()
    try:
        return run, set_up(cfg, run, resume is not None, data, device)
    except BaseException:
        run.close()
        raise


class TrainingLoop:
    """The parts of one run's training that :func:`_train` calls in order, over the explicit state of a
    :class:`Setup` (models, optimizers and data position in the task and batcher; step, learning-rate scale,
    rollbacks and best score in :class:`TrainState`). Each part is one decision or one kind of work; which side
    work a step owes is decided in one place, :meth:`Paces.due`."""

    def __init__(self, cfg: Config, run: RunDir, setup: Setup, on_scores: ScoresCallback | None) -> None:
        train_cfg = cfg.train
        self.cfg, self.run, self.on_scores = cfg, run, on_scores
        self.task, self.batcher, self.budget, self.ckpt = setup.task, setup.batcher, setup.budget, setup.ckpt
        self.state = setup.state
        self.paces = Paces.of(train_cfg, self.batcher.batches_per_epoch, setup.device.type)
        self.shows = RunOutputs(run, train_cfg.tensorboard)
        self.side = SideWork(
            task=self.task,
            spec=setup.spec,
            ckpt=self.ckpt,
            state=self.state,
            best=BestKeeper(*self.task.best_metric, self.state.best_value),
            shows=self.shows,
            progress=lambda: self.batcher.progress,
            sample_every=train_cfg.sample_every,
            eval_every=train_cfg.eval_every,
            preview_seconds=train_cfg.preview_seconds,
            seed=cfg.seed,
            pace_clock=self.budget.now,
        )
        self.monitor = Monitor(enabled=LOSSES.get(cfg.loss.name).floor_zero)
        self.bar = tqdm(
            total=self.budget.steps,
            initial=self.state.step,
            unit="step",
            dynamic_ncols=True,
            leave=True,
            disable=not (train_cfg.progress and run.active),
            desc=run.root.name[-28:],
        )
        self.last_log = (time.monotonic(), self.state.step)  # (time, step) of the last row, for images/s
        self.wall_start = time.monotonic()  # wall clock of the budget's start (the budget may run on CPU time)
        self.last_row: dict[str, float] = {}  # the newest metrics row (summary.json's "last")
        self.stopped_by = "steps"  # why the run ended: the budget's kind, or the caller's StopTraining reason
        self.stop_note: str | None = None  # the caller's StopTraining note
        self.signal: int | None = None  # the stop signal every rank acts on (one during a collective waits a step)

    def begin(self) -> None:
        """A new run's step 0 (preview grids and the first checkpoint); then the budget's clock starts."""
        if self.state.step == 0:
            with self.side.best_after():  # `best` at step 0: a link to step 0's checkpoint, not a second write
                self.side.previews()
                self.side.save("step-0000000")  # a good state to roll back to and a sign that this folder is a run
        self.budget.start_clock()
        self.wall_start = time.monotonic()
        self.last_log = (time.monotonic(), self.state.step)

    def should_stop(self, stop: StopFlag) -> bool:
        """Before each step: stop for a signal (the one every rank agreed on, or this process's own when it runs
        alone), for the caller's StopTraining, or because the budget is spent (``stopped_by`` says which)."""
        if self.signal is not None or self.stop_note is not None:
            return True
        if not ddp.active() and stop.signum is not None:
            self.signal = stop.signum
            return True
        spent = self.budget.spent(self.state.step)
        if self.budget.deadline is not None and ddp.any_rank(spent == "time") and spent is None:
            spent = "time"  # another rank's clock ran out first: stop at the same step
        if spent is not None:
            self.stopped_by = spent
        return spent is not None

    def one_step(self, signum: int | None) -> dict[str, torch.Tensor]:
        """The task's step at this point of the budget (learning rates set for it), its scalars and the stop signal
        agreed by every rank; counts the step. Returns the scalars, left on the device."""
        progress = self.budget.progress(self.state.step)
        set_lr(self.task.optimizers, self.cfg.optim, self.state.lr_scale, progress)
        clock = self.side.clock
        with clock.step():
            outputs = self.task.step(self.batcher, progress)
        ddp.sync_buffers(self.task.modules, ddp.share(self.cfg.train.batch_size))
        # The global batch's scalars and any rank's stop signal, on every rank (one small all-reduce).
        outputs, self.signal = ddp.agree(outputs, signum, self.cfg.train.batch_size)
        self.state.step += 1
        if self.cfg.train.compile and clock.first_step is not None and clock.step_seconds == clock.first_step:
            self.run.say(f"train.compile: the first step took {clock.first_step:.1f} s (compiling G and D)")
        return outputs

    def divergence(self, scalars: dict[str, float], due: Due) -> str | None:
        """What is NaN or Inf after this step ("loss/d = nan", "weights/g hold NaN or Inf"), or None."""
        if due.check_outputs and (bad := [k for k, v in scalars.items() if not math.isfinite(v)]):
            return f"{bad[0]} = {scalars[bad[0]]}"
        if due.check_weights and (bad := nonfinite_weights(self.task.modules)):
            return f"{bad[0]} hold NaN or Inf"
        return None

    def roll_back(self, what: str) -> None:
        """With train.on_nan=rollback (and rollbacks left): back to the newest checkpoint with lower learning rates;
        else DivergedError, the checkpoints untouched."""
        train_cfg, state, step = self.cfg.train, self.state, self.state.step
        if train_cfg.on_nan != "rollback" or state.rollbacks >= train_cfg.nan_max_rollbacks:
            raise DivergedError(
                f"training diverged at step {step}: {what}; the last good checkpoint in "
                f"{self.run.checkpoints} is untouched (try a lower learning rate or --set "
                f"train.on_nan=rollback)"
            )
        checkpoint = ddp.from_main(lambda: self.ckpt.latest(say=self.run.say), "the checkpoint")
        self.ckpt.restore(checkpoint)
        ddp.reseed(self.cfg.seed, checkpoint.step)
        state.step, state.rollbacks = checkpoint.step, state.rollbacks + 1
        state.lr_scale *= train_cfg.nan_lr_factor
        self.run.say(
            f"warning: {what} at step {step}; rolled back to step {checkpoint.step}, learning rates "
            f"x{state.lr_scale:g} (rollback {state.rollbacks} of {train_cfg.nan_max_rollbacks})"
        )
        self.run.trim_metrics(state.step)  # the abandoned steps' rows would plot twice
        self.shows.event(state.step, "rollback", lr_scale=state.lr_scale)

    def log_row(self, scalars: dict[str, float], due: Due) -> None:
        """At log steps a metrics.jsonl row (the step's scalars, images/s) and the D-collapse watch; the bar moves."""
        step = self.state.step
        if due.log:
            now = time.monotonic()
            images_per_s = (step - self.last_log[1]) * self.task.images_per_step() / max(now - self.last_log[0], 1e-9)
            self.last_log = (now, step)
            self.last_row = {k: round(v, 6) for k, v in scalars.items()}
            self.shows.row(step, self.batcher.progress, self.last_row, images_per_s=round(images_per_s, 1))
            if warning := self.monitor.update(step, self.last_row):
                self.run.say(warning)
                self.shows.event(step, "d_collapse")
            self.bar.set_postfix(
                progress_postfix(self.last_row, images_per_s, self.budget.minutes_left()), refresh=False
            )
        self.bar.update(1)

    def side_work(self, due: Due) -> None:
        """What the step owes: previews, validation (shown to the caller's on_scores, which may stop the run),
        a numbered checkpoint (`best` settled after it), losses.png."""
        side, step = self.side, self.state.step
        with side.best_after():
            if due.preview and side.preview_pace.ready():
                side.previews()
            if due.validate:
                scores = side.validate()
                if self.on_scores is not None and scores:
                    try:
                        self.on_scores(step, scores, False)
                    except StopTraining as e:  # ends like a spent budget: checkpoint, summary, report
                        self.stopped_by, self.stop_note = e.reason, e.note
            if due.checkpoint:
                side.save(f"step-{step:07d}")
        if due.plots and self.stop_note is None and side.plot_pace.ready():
            side.plots(gif=False)

    def interrupt(self) -> NoReturn:
        """A stop signal: checkpoint, grids and plots of this step, then Interrupted (the CLI's exit code)."""
        assert self.signal is not None
        self.bar.close()
        self.side.save(f"step-{self.state.step:07d}")
        self.side.previews()
        self.side.plots(gif=True)
        raise Interrupted(self.signal, self.run.root, self.state.step)

    def finish(self) -> Run:
        """The end of the budget (or the caller's stop): the final grid, the end result scored for the caller, a
        last checkpoint unless this step's is written and its `final` copy, plots, summary.json, report.html."""
        side, step = self.side, self.state.step
        self.bar.close()
        with side.best_after():  # the final scores first, so the last checkpoint holds them and `best` links to it
            if side.last_preview != step:  # the final grid, always
                side.previews()
            if self.on_scores is not None and self.cfg.train.eval_every:  # the caller asked for the end result
                if side.last_scores[0] != step:
                    side.validate()
                if side.last_scores[1] and self.stop_note is None:
                    self.on_scores(step, side.last_scores[1], True)
            if not self.paces.due(step).checkpoint:  # else it was saved a moment ago
                side.save(f"step-{step:07d}", move_latest=False)
        # The same state, not serialised again, but a copy rather than hard links: one damaged file must not take
        # both the last numbered checkpoint and `final` with it (loading falls back from one to the other).
        side.alias("final", f"step-{step:07d}", copy=True)
        side.plots(gif=True)
        self.run.summary(
            {
                "step": step,
                "epoch": round(self.batcher.progress, 4),
                "stopped_by": self.stopped_by,
                "seconds": round(time.monotonic() - self.wall_start, 1),
                **({"cpu_seconds": round(self.budget.elapsed(), 1)} if self.cfg.train.clock == "cpu" else {}),
                "last": self.last_row,
                "rollbacks": self.state.rollbacks,
                "d_collapse_at_step": self.monitor.collapsed_at,
                **side.clock.summary(),
                **({"stop_note": self.stop_note} if self.stop_note else {}),
            }
        )
        self.shows.report()
        return Run(self.run.root, step, self.batcher.progress, self.stopped_by, self.last_row, side.last_scores[1])

    def close(self) -> None:
        """On every way out: the bar, TensorBoard's writer and the run folder's lock."""
        self.bar.close()
        self.shows.close()
        self.run.close()


def progress_postfix(row: dict[str, float], ips: float, minutes_left: float | None) -> dict[str, str]:
    """The progress bar's right side: losses, images/s and the time left of a time budget."""
    post = {k.split("/")[-1]: f"{v:.3f}" for k, v in row.items() if k.startswith("loss/")}
    post["img/s"] = f"{ips:.0f}"
    if minutes_left is not None:
        post["left"] = f"{minutes_left:.1f}m"
    return post
