"""The training loop, top to bottom: set-up, resume, step, log, picture, checkpoint, stop.

What happens inside a step belongs to the recipe (gankit/recipes/); what is written to disk goes through
RunWriter (gankit/runlog.py), the only code that knows the process rank.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint as ckpt
from .config import Config, read_yaml, to_dict, validate
from .data import Batcher, load_dataset
from .data.base import ImageData
from .evaluation import split_validation
from .losses import LOSSES
from .errors import DivergedError, GankitError
from .models import MODELS
from .recipes import RECIPES, Recipe
from .runlog import RunWriter


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was written. ``exit_code`` is 130 or 143."""

    def __init__(self, signum: int, run_dir: Path, step: int) -> None:
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}: checkpoint saved; continue with `gankit train --resume {run_dir}`")


@dataclass
class Run:
    """What :func:`train` returns."""

    dir: Path
    step: int
    epoch: float
    stopped_by: str
    metrics: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# set-up helpers


def usable_cores() -> int:
    """Cores this process may run on (affinity/cgroup-aware where the OS says), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise GankitError(f"train.device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GankitError(f"train.device={name!r} but CUDA is not available here; use train.device=cpu")
    return dev


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_run_dir(cfg: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.model.name}-{cfg.data.name}"


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def total_steps(cfg: Config, batches_per_epoch: int) -> int | None:
    """The step budget from train.steps and train.epochs (the smaller wins); None when only time limits."""
    budgets = []
    if cfg.train.steps:
        budgets.append(cfg.train.steps)
    if cfg.train.epochs:
        budgets.append(max(1, math.ceil(cfg.train.epochs * batches_per_epoch / cfg.train.d_steps)))
    return min(budgets) if budgets else None


class StopFlag:
    """Signal handlers only set this flag; the loop finishes its step and saves."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class Monitor:
    """Warns once when D wins outright: D loss near 0 for a long window while G's loss keeps growing."""

    def __init__(self, window: int = 10, enabled: bool = True) -> None:
        # Only for losses bounded below by 0 (BCE, LSGAN, hinge): a Wasserstein critic's loss is negative by design.
        self.enabled = enabled
        self.window = window
        self.d: list[float] = []
        self.g: list[float] = []
        self.collapsed_at: int | None = None

    def update(self, step: int, row: dict[str, float]) -> str | None:
        if not self.enabled or "loss/d" not in row or "loss/g" not in row:
            return None
        self.d.append(row["loss/d"])
        self.g.append(row["loss/g"])
        self.d, self.g = self.d[-self.window :], self.g[-self.window :]
        if self.collapsed_at is None and len(self.d) == self.window:
            if max(self.d) < 1e-3 and self.g[-1] > self.g[0]:
                self.collapsed_at = step
                return (f"warning: discriminator collapse at step {step}: D loss < 1e-3 for {self.window} log intervals "
                        f"while G loss grows ({self.g[0]:.3g} -> {self.g[-1]:.3g}); G gets no useful gradient")
        return None


# ---------------------------------------------------------------------------------------------------------------------
# the loop


def train(
    cfg: Config,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    data: ImageData | None = None,
) -> Run:
    """Train per ``cfg`` into run folder ``out`` (or continue the run in ``resume``). Returns a :class:`Run`.

    Raises GankitError for bad input, DivergedError on NaN/Inf, Interrupted on SIGINT/SIGTERM (after saving).
    """
    run_dir = Path(resume) if resume is not None else Path(out) if out is not None else default_run_dir(cfg)
    if resume is None and run_dir.exists():
        if run_dir.is_file():
            raise GankitError(f"--out {run_dir} is a file; choose a folder path")
        if any(run_dir.iterdir()):
            hint = f"continue it with --resume {run_dir}" if is_run_dir(run_dir) else "choose another --out"
            raise GankitError(f"--out {run_dir} already exists and is not empty; {hint} (nothing was overwritten)")

    validate(cfg)  # Python callers may build a Config by hand; the CLI validated it already
    torch.set_num_threads(cfg.train.threads or usable_cores())
    device = pick_device(cfg.train.device)
    seed_everything(cfg.seed)

    writer = RunWriter(run_dir)
    if data is None:
        data = load_dataset(cfg.data)
    kind = MODELS.meta(cfg.model.name).get("kind", "gan")
    data, val = split_validation(cfg, data, kind, writer.say)
    recipe: Recipe = RECIPES.get(kind)(cfg, data, device, val)
    batcher = Batcher(data, cfg.train.batch_size, cfg.seed, device)
    budget = total_steps(cfg, batcher.batches_per_epoch)
    if budget is None and not cfg.train.max_minutes:
        raise GankitError("no training budget: set train.steps, train.epochs or train.max_minutes (--steps/--epochs/--max-minutes)")

    step, lr_scale, rollbacks = 0, 1.0, 0
    # The `best` checkpoint follows the recipe's chosen score, e.g. ("eval/fd", "min"); its value survives resumes.
    best_key, best_mode = recipe.best_metric
    best_value: float | None = None
    ckpt_dir = run_dir / "checkpoints"
    if resume is not None:
        ck = ckpt.load_latest(ckpt_dir, say=writer.say)
        restore(recipe, batcher, ck)
        step = ck.step
        lr_scale = float(ck.state.get("lr_scale", 1.0))
        rollbacks = int(ck.state.get("rollbacks", 0))
        best_value = ck.state.get("best_value")
        # Rows logged after this checkpoint describe steps that are about to be redone (exactly); drop them, and
        # any line a kill cut short, so the log reads as one run.
        writer.trim_metrics(step)
        writer.say(f"resuming {run_dir} from {ck.path.name} (step {step}, epoch {batcher.progress:.2f})")
    writer.open()
    shape = data.shape if data.targets is None else tuple(int(v) for v in data.targets.shape[1:])
    meta = {"image_shape": list(shape), "input_channels": int(data.images.shape[1]),
            "num_images": len(data), "class_names": data.class_names,
            "recipe": kind, "device": str(device), "threads": torch.get_num_threads()}
    writer.write_config(cfg, meta)

    def save(name: str, move_latest: bool = True) -> None:
        if not writer.active:
            return
        tensors = {f"{k}": ckpt.module_tensors(m) for k, m in recipe.modules.items()}
        optim_plain = {}
        for k, opt in recipe.optimizers.items():
            t, plain = ckpt.flatten_optimizer(opt.state_dict())
            tensors[f"optim_{k}"] = t
            optim_plain[k] = plain
        state = {
            "config": cfg.to_dict(), "meta": meta, "step": step, "epoch": batcher.progress,
            "data": batcher.state_dict(), "rng": ckpt.rng_state(), "optim": optim_plain,
            "lr_scale": lr_scale, "rollbacks": rollbacks, "best_value": best_value,
        }
        ckpt.save(ckpt_dir, name, tensors, state, move_latest=move_latest)
        ckpt.prune(ckpt_dir, cfg.train.keep_last, protect={"final", "best"})

    def pictures() -> None:
        for name, (imgs, nrow) in recipe.preview().items():
            writer.sample_grid(imgs, f"{name}-{step:07d}.png", nrow)
        if not cfg.train.eval_every:  # without an interval, recipes with cheap scores (pix2pix) score at each grid
            evaluation()

    def evaluation() -> None:
        nonlocal best_value
        scores = recipe.evaluate()
        if scores:
            writer.log({"step": step, "epoch": round(batcher.progress, 4), **{k: round(v, 6) for k, v in scores.items()}})
        v = scores.get(best_key) if best_key else None
        if v is not None and math.isfinite(v) and (
            best_value is None or (v < best_value if best_mode == "min" else v > best_value)
        ):
            best_value = v
            save("best", move_latest=False)

    def progress() -> float:
        """Fraction of the budget done, in [0, 1]: steps when there is a step budget, else wall-clock time."""
        if budget:
            return step / budget
        return min(1.0, (time.monotonic() - start) / max(1.0, cfg.train.max_minutes * 60))

    def set_lr(t: float) -> None:
        # Stateless schedule (a function of progress), so resume needs no scheduler state.
        decay = 1.0 if cfg.optim.lr_decay == "none" or t < 0.5 else max(0.0, 2.0 * (1.0 - t))
        for k, opt in recipe.optimizers.items():
            base = cfg.optim.lr_g if k == "g" else cfg.optim.lr_d
            for group in opt.param_groups:
                group["lr"] = base * lr_scale * decay

    if step == 0:
        save("step-0000000")  # a good state to roll back to and a sign that this folder is a run
        pictures()

    monitor = Monitor(enabled=LOSSES.get(cfg.loss.name).floor_zero)
    start = time.monotonic()
    deadline = start + cfg.train.max_minutes * 60 if cfg.train.max_minutes else None
    sample_every = cfg.train.sample_every or max(1, batcher.batches_per_epoch // cfg.train.d_steps)
    check_every_step = device.type == "cpu"  # a finiteness check costs a host sync on accelerators
    bar = tqdm(total=budget, initial=step, unit="step", dynamic_ncols=True, leave=True,
               disable=not (cfg.train.progress and writer.active), desc=run_dir.name[-28:])
    last_log_t, last_log_step = time.monotonic(), step
    stopped_by = "steps"
    row: dict[str, float] = {}
    try:
        with StopFlag() as stop:
            while True:
                if budget is not None and step >= budget:
                    stopped_by = "epochs" if cfg.train.epochs and not cfg.train.steps else "steps"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stopped_by = "time"
                    break
                if stop.signum is not None:
                    break
                t = progress()
                set_lr(t)
                out_t = recipe.step(batcher, t)
                step += 1
                bad: list[str] = []
                if check_every_step or step % cfg.train.log_every == 0:
                    bad = [k for k, v in out_t.items() if not bool(torch.isfinite(v))]
                if not bad and step % cfg.train.checkpoint_every == 0:
                    bad = nonfinite_weights(recipe)  # checkpoints are what rollbacks and resumes trust
                if bad:
                    what = f"{bad[0]} = {float(out_t[bad[0]])}" if bad[0] in out_t else f"{bad[0]} hold NaN or Inf"
                    if cfg.train.on_nan == "rollback" and rollbacks < cfg.train.nan_max_rollbacks:
                        ck = ckpt.load_latest(ckpt_dir, say=writer.say)
                        restore(recipe, batcher, ck)
                        rollbacks += 1
                        lr_scale *= cfg.train.nan_lr_factor
                        writer.say(f"warning: {what} at step {step}; rolled back to step {ck.step}, learning rates "
                                   f"x{lr_scale:g} (rollback {rollbacks} of {cfg.train.nan_max_rollbacks})")
                        step = ck.step
                        writer.trim_metrics(step)  # the abandoned steps' rows would plot twice
                        writer.log({"step": step, "event": "rollback", "lr_scale": lr_scale})
                        continue
                    raise DivergedError(
                        f"training diverged at step {step}: {what}; the last good checkpoint in {ckpt_dir} is "
                        f"untouched (try a lower learning rate or --set train.on_nan=rollback)"
                    )
                if step % cfg.train.log_every == 0 or step == 1:
                    now = time.monotonic()
                    ips = (step - last_log_step) * recipe.images_per_step() / max(now - last_log_t, 1e-9)
                    last_log_t, last_log_step = now, step
                    row = {k: round(float(v), 6) for k, v in out_t.items()}
                    writer.log({"step": step, "epoch": round(batcher.progress, 4), **row, "images_per_s": round(ips, 1)})
                    warn = monitor.update(step, row)
                    if warn:
                        writer.say(warn)
                        writer.log({"step": step, "event": "d_collapse"})
                    post = {k.split("/")[-1]: f"{v:.3f}" for k, v in row.items() if k.startswith("loss/")}
                    post["img/s"] = f"{ips:.0f}"
                    if deadline is not None:
                        post["left"] = f"{max(0.0, deadline - now) / 60:.1f}m"
                    bar.set_postfix(post, refresh=False)
                bar.update(1)
                if step % sample_every == 0:
                    pictures()
                if cfg.train.eval_every and step % cfg.train.eval_every == 0:
                    evaluation()
                if step % cfg.train.checkpoint_every == 0:
                    save(f"step-{step:07d}")
                    writer.refresh_plots(gif=False)
            if stop.signum is not None:
                bar.close()
                save(f"step-{step:07d}")
                pictures()
                writer.refresh_plots()
                raise Interrupted(stop.signum, run_dir, step)
        bar.close()
        if step % cfg.train.checkpoint_every:  # else it was saved a moment ago
            save(f"step-{step:07d}", move_latest=False)
        save("final")
        if step % sample_every:
            pictures()
        writer.refresh_plots()
        elapsed = time.monotonic() - start
        summary = {"step": step, "epoch": round(batcher.progress, 4), "stopped_by": stopped_by,
                   "seconds": round(elapsed, 1), "last": row, "rollbacks": rollbacks,
                   "d_collapse_at_step": monitor.collapsed_at}
        writer.summary(summary)
        return Run(run_dir, step, batcher.progress, stopped_by, row)
    finally:
        bar.close()
        writer.close()


def nonfinite_weights(recipe: Any) -> list[str]:
    """'weights/<module>' for every module with a NaN or Inf parameter or buffer."""
    return [f"weights/{name}" for name, m in recipe.modules.items()
            if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in m.state_dict().values())]


def restore(recipe: Any, batcher: Batcher, ck: ckpt.Checkpoint) -> None:
    """Put models, optimizers, data position and RNGs back exactly as they were at the checkpoint."""
    cfg = getattr(recipe, "cfg", None)
    built = to_dict(cfg.model) if cfg is not None else None  # lists, as in the saved JSON
    for name, module in recipe.modules.items():
        if name not in ck.tensors:
            raise GankitError(f"checkpoint {ck.path} has no '{name}' weights; it was saved by a different recipe/config")
        ckpt.load_module(module, ck.tensors[name], name, ck, built)
    try:
        for name, opt in recipe.optimizers.items():
            sd = ckpt.unflatten_optimizer(ck.tensors.get(f"optim_{name}", {}), ck.state["optim"][name])
            try:
                opt.load_state_dict(sd)
            except (ValueError, KeyError) as e:
                raise GankitError(f"checkpoint {ck.path}: optimizer '{name}' does not match this config ({e})") from None
        batcher.load_state_dict(ck.state["data"])
        ckpt.set_rng_state(ck.state["rng"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        # state.json is not hashed (it holds the hashes); a damaged or hand-edited one ends up here.
        raise GankitError(f"checkpoint {ck.path}/state.json is damaged or incomplete ({type(e).__name__}: {e})") from None


def load_run_config(run_dir: Path) -> Config:
    """The resolved config a run saved."""
    if not run_dir.exists():
        raise GankitError(f"run folder {run_dir} does not exist")
    if not is_run_dir(run_dir):
        raise GankitError(f"{run_dir} is not a gankit run folder (no config.yaml and checkpoints/); pass the --out of a `gankit train`")
    d = read_yaml(run_dir / "config.yaml")
    return Config.from_dict(d, where="config")
