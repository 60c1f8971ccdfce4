"""The training loop, top to bottom: set up, resume, then step, log, preview, validate and checkpoint until the
budget is spent or a signal arrives.

The loop owns time; what happens inside a step belongs to the task (gankit/tasks/), what is written goes through
RunDir (rundir.py), checkpoints through Checkpointer (checkpoint.py), and the small decisions (budget, learning
rate, finiteness, best score) through parts.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config.layering import validate
from ..config.schema import Config, refuse_resume_change, to_dict
from ..core.errors import DivergedError, GankitError, Interrupted, StopTraining
from ..data import Batcher, load_dataset
from ..data.base import ImageData
from ..losses import LOSSES
from ..nets import MODELS
from ..tasks import Task, TaskSpec, task_of
from . import distributed as ddp
from .checkpoint import Checkpointer, candidates
from .finetune import apply_init, resolve_source
from .outputs import RunOutputs
from .parts import BestKeeper, Budget, Monitor, StopFlag, nonfinite, nonfinite_weights, set_lr
from .rundir import RunDir, default_run_dir, load_run_config
from .precision import configure_backends
from .sidework import SideWork
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
        raise GankitError(f"train.device={name!r} but this PyTorch has no usable MPS (Apple GPU) backend here; use "
                          f"train.device=cpu (or auto)")
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
        run.say(f"warning: train.threads={cfg.train.threads} is more than twice the {cores} cores this process may "
                f"use, which makes every step slower; use --threads {cores} (or 0 for that default)")
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
    shape = data.shape if data.targets is None else tuple(int(v) for v in data.targets.shape[1:])
    origin = None
    if cfg.train.init_from and not resume:  # a resumed run's weights come from its own checkpoint
        origin = apply_init(task.modules, cfg.train.init_from, cfg.train.init_parts, MODELS.get(cfg.model.name).task,
                            to_dict(cfg.model), shape, run.say)
    if cfg.train.sync_bn:
        ddp.convert_sync_bn({k: m for k, m in task.modules.items() if k != "ema"}, device)
    ddp.broadcast_modules(task.modules)  # identical start even if a seed-dependent init differed
    batcher = Batcher(data, cfg.train.batch_size, cfg.seed, device)
    budget = Budget(cfg, batcher.batches_per_epoch)
    if budget.steps is None and not cfg.train.max_minutes:
        raise GankitError("no training budget: set train.steps, train.epochs or train.max_minutes (--steps/--epochs/--max-minutes)")
    meta = {"image_shape": list(shape), "input_channels": int(data.images.shape[1]), "num_images": len(data),
            "class_names": data.class_names, "class_counts": data.class_counts(),
            "recipe": MODELS.get(cfg.model.name).task, "device": str(device),
            "threads": torch.get_num_threads(), "world_size": ddp.world_size()}
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
            run.say(f"the run was trained on {was} process(es), continues on {ddp.world_size()} (the global batch "
                    f"train.batch_size={cfg.train.batch_size} is unchanged)")
        # Rows logged after this checkpoint describe steps that are about to be redone (exactly); drop them, and
        # any line a kill cut short, so the log reads as one run.
        run.trim_metrics(state.step)
        run.say(f"resuming {run.root} from {ck.path.name} (step {state.step}, epoch {batcher.progress:.2f})")
    run.open()
    run.write_config(cfg, meta)
    return Setup(spec, task, batcher, budget, ckpt, state, device)


ScoresCallback = Callable[[int, dict[str, float], bool], None]


def train(cfg: Config, out: str | Path | None = None, resume: str | Path | None = None,
          data: ImageData | None = None, on_scores: ScoresCallback | None = None) -> Run:
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


def _train(cfg: Config, out: str | Path | None, resume: str | Path | None, data: ImageData | None,
           device: torch.device, on_scores: ScoresCallback | None) -> Run:
    if resume is None and out is not None and ddp.restarted() and candidates(Path(out) / "checkpoints"):
        resume = out  # torchrun restarted the group after a failure: continue from the newest checkpoint
    # Every rank must agree on the folder (a default name holds the time) and on whether it may be used.
    root = ddp.from_main(lambda: resume if resume is not None else out if out is not None
                         else default_run_dir(cfg.model.name, cfg.data.name), "the run folder")
    run = RunDir(root, ddp.rank(), reserved=resume is None and out is None)
    if resume is None:
        ddp.from_main(run.check_new, "the run folder check")
    else:  # a Python caller's Config may differ from the run's own in more than a budget: refused before any write
        ddp.from_main(lambda: refuse_resume_change(load_run_config(Path(root)).to_dict(), cfg.to_dict(), root),
                      "the resumed run's config check")
    # One writer per run folder, taken before anything is written (a new run's folder is made here); close() gives
    # it back, and removes a new folder that a failed set-up left empty.
    run.lock()
    try:
        s = set_up(cfg, run, resume is not None, data, device)
    except BaseException:
        run.close()
        raise
    task, batcher, budget, ckpt, state, t_cfg = s.task, s.batcher, s.budget, s.ckpt, s.state, cfg.train
    shows = RunOutputs(run, t_cfg.tensorboard)
    best = BestKeeper(*task.best_metric, state.best_value)
    sample_every = t_cfg.sample_every or max(1, batcher.batches_per_epoch // t_cfg.d_steps)
    side = SideWork(task=task, spec=s.spec, ckpt=ckpt, state=state, best=best, shows=shows,
                    progress=lambda: batcher.progress, sample_every=t_cfg.sample_every, eval_every=t_cfg.eval_every,
                    preview_seconds=t_cfg.preview_seconds, seed=cfg.seed, pace_clock=budget.now)
    clock = side.clock
    monitor = Monitor(enabled=LOSSES.get(cfg.loss.name).floor_zero)
    check_every_step = s.device.type == "cpu"  # a finiteness check costs a host sync on accelerators
    bar = tqdm(total=budget.steps, initial=state.step, unit="step", dynamic_ncols=True, leave=True,
               disable=not (t_cfg.progress and run.active), desc=run.root.name[-28:])
    row: dict[str, float] = {}
    stopped_by = "steps"
    stop_note: str | None = None
    try:
        if state.step == 0:
            with side.best_after():  # `best` at step 0: a link to step 0's checkpoint, not a second write
                side.previews()
                side.save("step-0000000")  # a good state to roll back to and a sign that this folder is a run
        budget.start_clock()
        wall0 = time.monotonic()
        last_log = (time.monotonic(), state.step)
        stop_now: int | None = None  # the stop signal every rank acts on (a signal during a collective waits a step)
        with StopFlag() as stop:
            while stop_now is None:
                if not ddp.active() and stop.signum is not None:
                    stop_now = stop.signum
                    break
                spent = budget.spent(state.step)
                if budget.deadline is not None and ddp.any_rank(spent == "time") and spent is None:
                    spent = "time"  # another rank's clock ran out first: stop at the same step
                if spent is not None:
                    stopped_by = spent
                    break
                t = budget.progress(state.step)
                set_lr(task.optimizers, cfg.optim, state.lr_scale, t)
                with clock.step():
                    out_t = task.step(batcher, t)
                ddp.sync_buffers(task.modules, ddp.share(cfg.train.batch_size))
                # The global batch's scalars and any rank's stop signal, on every rank (one small all-reduce).
                out_t, stop_now = ddp.agree(out_t, stop.signum, cfg.train.batch_size)
                state.step += 1
                step = state.step
                if t_cfg.compile and clock.first_step is not None and clock.step_seconds == clock.first_step:
                    run.say(f"train.compile: the first step took {clock.first_step:.1f} s (compiling G and D)")
                bad = nonfinite(out_t) if check_every_step or step % t_cfg.log_every == 0 else []
                if not bad and step % t_cfg.checkpoint_every == 0:
                    bad = nonfinite_weights(task.modules)  # checkpoints are what rollbacks and resumes trust
                if bad:
                    what = f"{bad[0]} = {float(out_t[bad[0]])}" if bad[0] in out_t else f"{bad[0]} hold NaN or Inf"
                    if t_cfg.on_nan != "rollback" or state.rollbacks >= t_cfg.nan_max_rollbacks:
                        raise DivergedError(f"training diverged at step {step}: {what}; the last good checkpoint in "
                                            f"{run.checkpoints} is untouched (try a lower learning rate or --set "
                                            f"train.on_nan=rollback)")
                    ck = ddp.from_main(lambda: ckpt.latest(say=run.say), "the checkpoint")
                    ckpt.restore(ck)
                    ddp.reseed(cfg.seed, ck.step)
                    state.step, state.rollbacks, state.lr_scale = ck.step, state.rollbacks + 1, state.lr_scale * t_cfg.nan_lr_factor
                    run.say(f"warning: {what} at step {step}; rolled back to step {ck.step}, learning rates "
                            f"x{state.lr_scale:g} (rollback {state.rollbacks} of {t_cfg.nan_max_rollbacks})")
                    run.trim_metrics(state.step)  # the abandoned steps' rows would plot twice
                    shows.event(state.step, "rollback", lr_scale=state.lr_scale)
                    continue
                if step % t_cfg.log_every == 0 or step == 1:
                    now = time.monotonic()
                    ips = (step - last_log[1]) * task.images_per_step() / max(now - last_log[0], 1e-9)
                    last_log = (now, step)
                    row = {k: round(float(v), 6) for k, v in out_t.items()}
                    shows.row(step, batcher.progress, row, images_per_s=round(ips, 1))
                    if warn := monitor.update(step, row):
                        run.say(warn)
                        shows.event(step, "d_collapse")
                    bar.set_postfix(progress_postfix(row, ips, budget.minutes_left()), refresh=False)
                bar.update(1)
                with side.best_after():
                    if step % sample_every == 0 and side.preview_pace.ready():
                        side.previews()
                    if t_cfg.eval_every and step % t_cfg.eval_every == 0:
                        scores = side.validate()
                        if on_scores is not None and scores:
                            try:
                                on_scores(step, scores, False)
                            except StopTraining as e:  # ends like a spent budget: checkpoint, summary, report
                                stopped_by, stop_note = e.reason, e.note
                    if step % t_cfg.checkpoint_every == 0:
                        side.save(f"step-{step:07d}")
                if stop_note is not None:
                    break
                if step % t_cfg.checkpoint_every == 0 and side.plot_pace.ready():
                    side.plots(gif=False)
            if stop_now is not None:
                bar.close()
                side.save(f"step-{state.step:07d}")
                side.previews()
                side.plots(gif=True)
                raise Interrupted(stop_now, run.root, state.step)
        bar.close()
        with side.best_after():  # the final scores first, so the last checkpoint holds them and `best` links to it
            if side.last_preview != state.step:  # the final grid, always
                side.previews()
            if on_scores is not None and t_cfg.eval_every:  # the caller asked for the end result: score it
                if side.last_scores[0] != state.step:
                    side.validate()
                if side.last_scores[1] and stop_note is None:
                    on_scores(state.step, side.last_scores[1], True)
            if state.step % t_cfg.checkpoint_every:  # else it was saved a moment ago
                side.save(f"step-{state.step:07d}", move_latest=False)
        # The same state, not serialised again, but a copy rather than hard links: one damaged file must not take
        # both the last numbered checkpoint and `final` with it (loading falls back from one to the other).
        side.alias("final", f"step-{state.step:07d}", copy=True)
        side.plots(gif=True)
        run.summary({"step": state.step, "epoch": round(batcher.progress, 4), "stopped_by": stopped_by,
                     "seconds": round(time.monotonic() - wall0, 1),
                     **({"cpu_seconds": round(budget.elapsed(), 1)} if t_cfg.clock == "cpu" else {}), "last": row, "rollbacks": state.rollbacks,
                     "d_collapse_at_step": monitor.collapsed_at, **clock.summary(),
                     **({"stop_note": stop_note} if stop_note else {})})
        shows.report()
        return Run(run.root, state.step, batcher.progress, stopped_by, row, side.last_scores[1])
    finally:
        bar.close()
        shows.close()
        run.close()


def progress_postfix(row: dict[str, float], ips: float, minutes_left: float | None) -> dict[str, str]:
    """The progress bar's right side: losses, images/s and the time left of a time budget."""
    post = {k.split("/")[-1]: f"{v:.3f}" for k, v in row.items() if k.startswith("loss/")}
    post["img/s"] = f"{ips:.0f}"
    if minutes_left is not None:
        post["left"] = f"{minutes_left:.1f}m"
    return post
