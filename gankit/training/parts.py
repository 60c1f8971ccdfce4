"""Small pieces of the training loop, each testable alone: the budget, the learning-rate schedule, the finiteness
guard, the best-score keeper, the D-collapse monitor and the signal flag."""

from __future__ import annotations

import math
import signal
import time
from typing import Any

import torch
from torch import nn

from ..config.schema import Config, OptimConfig


# train.clock -> the clock a time budget runs on. process_time counts every thread of this process, so it stays the
# same compute when other programs share the cores (it does not count waiting for the disk).
CLOCKS = {"wall": time.monotonic, "cpu": time.process_time}


class Budget:
    """When training ends: a step budget (from train.steps and train.epochs, the smaller wins) and/or a deadline
    (train.max_minutes), whichever comes first. The deadline runs on the wall clock, or with train.clock=cpu on this
    process's CPU time: on a machine shared with other work, a CPU-minute trains about as many steps as on an idle
    one, so recipes given the same CPU budget get the same compute whatever the load."""

    def __init__(self, cfg: Config, batches_per_epoch: int) -> None:
        t = cfg.train
        steps = []
        if t.steps:
            steps.append(t.steps)
        if t.epochs:
            steps.append(max(1, math.ceil(t.epochs * batches_per_epoch / t.d_steps)))
        self.steps: int | None = min(steps) if steps else None
        self.seconds = t.max_minutes * 60
        self.by_epochs = bool(t.epochs and not t.steps)
        self.now = CLOCKS[t.clock]
        self.start = self.now()
        self.deadline: float | None = None

    def start_clock(self) -> None:
        self.start = self.now()
        self.deadline = self.start + self.seconds if self.seconds else None

    def progress(self, step: int) -> float:
        """Fraction of the budget done, in [0, 1]: steps when there is a step budget, else time on the budget's clock."""
        if self.steps:
            return step / self.steps
        return min(1.0, (self.now() - self.start) / max(1.0, self.seconds))

    def spent(self, step: int) -> str | None:
        """Why training should stop now ('steps', 'epochs', 'time'), or None."""
        if self.steps is not None and step >= self.steps:
            return "epochs" if self.by_epochs else "steps"
        if self.deadline is not None and self.now() >= self.deadline:
            return "time"
        return None

    def minutes_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - self.now()) / 60

    def elapsed(self) -> float:
        """Seconds on the budget's clock since training started."""
        return self.now() - self.start


def lr_factor(decay: str, t: float) -> float:
    """The schedule as a function of budget progress ``t`` (stateless, so resume needs no scheduler state):
    'none' keeps 1; 'linear' holds 1 for the first half, then falls linearly to 0."""
    return 1.0 if decay == "none" or t < 0.5 else max(0.0, 2.0 * (1.0 - t))


def set_lr(optimizers: dict[str, torch.optim.Optimizer], c: OptimConfig, scale: float, t: float) -> None:
    """Learning rates at progress ``t``: base rate (G's for 'g', D's otherwise) x NaN-rollback scale x schedule."""
    decay = lr_factor(c.lr_decay, t)
    for name, opt in optimizers.items():
        base = c.lr_g if name == "g" else c.lr_d
        for group in opt.param_groups:
            group["lr"] = base * scale * decay


def host_values(outputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """``float(v)`` of every scalar tensor, in the same order, with one device-to-host copy per (device, dtype)
    instead of one host sync per value (the values are the same: ``tolist`` and ``float`` both widen exactly)."""
    groups: dict[tuple[torch.device, torch.dtype], list[str]] = {}
    for k, v in outputs.items():
        groups.setdefault((v.device, v.dtype), []).append(k)
    read: dict[str, float] = {}
    for keys in groups.values():
        read.update(zip(keys, map(float, torch.stack([outputs[k].detach().reshape(()) for k in keys]).tolist())))
    return {k: read[k] for k in outputs}


def nonfinite(outputs: dict[str, torch.Tensor]) -> list[str]:
    """Keys of a step's outputs that are NaN or Inf (one host sync per key)."""
    return [k for k, v in outputs.items() if not bool(torch.isfinite(v))]


def all_finite(t: torch.Tensor) -> bool:
    """No NaN or Inf in ``t`` (non-float tensors always pass). Its max and min are finite exactly then (both
    reductions propagate NaN), without the bool tensor of t's size that ``isfinite(t).all()`` builds, which made
    the check of a large checkpoint slow (docs/notes/speed-and-side-work.md, "Then:")."""
    if not t.is_floating_point() or t.numel() == 0:
        return True
    return bool(torch.isfinite(t.amax())) and bool(torch.isfinite(t.amin()))


def nonfinite_weights(modules: dict[str, nn.Module]) -> list[str]:
    """'weights/<module>' for every module with a NaN or Inf parameter or buffer."""
    return [f"weights/{name}" for name, m in modules.items() if not all(map(all_finite, m.state_dict().values()))]


class BestKeeper:
    """Tracks the best value of one score ('min' or 'max'); ``update`` says whether a new best arrived."""

    def __init__(self, key: str, mode: str, value: float | None = None) -> None:
        self.key, self.mode, self.value = key, mode, value

    def update(self, scores: dict[str, float]) -> bool:
        v = scores.get(self.key)
        if v is None or not math.isfinite(v):
            return False
        if self.value is None or (v < self.value if self.mode == "min" else v > self.value):
            self.value = v
            return True
        return False


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
                return (
                    f"warning: discriminator collapse at step {step}: D loss < 1e-3 for {self.window} log intervals "
                    f"while G loss grows ({self.g[0]:.3g} -> {self.g[-1]:.3g}); G gets no useful gradient"
                )
        return None


class StopFlag:
    """Signal handlers only set this flag; the loop finishes its step and saves.

    ``train`` holds one from its first line to its last, so a SIGINT/SIGTERM during set-up, the step-0 checkpoint or
    the final save is kept instead of killing the process half-way (under torchrun the signal reaches each rank at
    its own moment; a rank killed outside the loop left the others without its stop line). The loop holds another;
    a flag entered inside one that already caught a signal starts with that signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                continue
            outer = getattr(self._old[s], "__self__", None)
            if isinstance(outer, StopFlag) and self.signum is None:
                self.signum = outer.signum
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
