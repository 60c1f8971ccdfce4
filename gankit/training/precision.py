"""How a task's step uses the hardware: mixed precision (``train.precision``), compiled forward passes
(``train.compile``) and the CUDA backend switches (``train.tf32``, cuDNN autotuning).

Every task has one :class:`Precision` (``FamilyTask.prec``, built by the base class) and routes its step through it::

    with self.prec.autocast():            # forward passes and losses
        loss_d = ...
    self.update("d", loss_d)              # FamilyTask.update: (scaled) backward, unscale, the gradient all-reduce
                                          # of several processes, skip-on-inf, step, scale update

:meth:`Precision.backward` and :meth:`Precision.step` are what ``FamilyTask.backward`` and ``FamilyTask.update`` call;
a family's step calls those, never these.

Penalties on input gradients (WGAN-GP, R1) turn autocast off and take the gradient of unscaled fp32 scores
(gankit.losses), so neither half precision nor a loss scale enters them: the classic NaN source of mixed precision
with gradient penalties. fp16 scales each optimizer's loss with its own :class:`torch.amp.GradScaler`, whose state is
part of :meth:`state_dict` (saved in checkpoints through the task's ``extra_state``), so a resume is exact.

Compiling never changes what checkpoints hold: :meth:`compiled` returns a compiled *callable* over the same module
(same parameters, same ``state_dict`` keys); tasks keep the original modules for checkpoints, previews and
penalties (torch.compile does not support the double backward that penalties need).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..core.errors import GankitError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def configure_backends(device: torch.device, tf32: bool) -> None:
    """CUDA: let cuDNN autotune convolution kernels for the (fixed) shapes of a GAN step, and choose TF32 for fp32
    matmuls and convolutions. Nothing to do elsewhere."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def check_precision(name: str, device: torch.device) -> None:
    """A clear error for a precision the device cannot run."""
    if name not in DTYPES:
        raise GankitError(f"train.precision={name!r}: use fp32, bf16 or fp16")
    if device.type == "mps" and name != "fp32":
        raise GankitError(f"train.precision={name} is not supported on mps here; use train.precision=fp32")
    if device.type == "cuda" and name == "bf16" and not torch.cuda.is_bf16_supported():
        raise GankitError("train.precision=bf16 but this GPU has no bf16; use train.precision=fp16")


class Precision:
    """Autocast, per-optimizer loss scaling (fp16) and compiled forwards for one task's step."""

    def __init__(
        self, precision: str, device: torch.device, optimizers: dict[str, torch.optim.Optimizer], compile: bool = False
    ) -> None:
        check_precision(precision, device)
        self.name, self.device, self.compile = precision, device, compile
        self.dtype = DTYPES[precision]
        # fp16's range is small: scale each loss up before backward (one scaler per optimizer, as the AMP docs
        # recommend for several losses), unscale before the step, skip steps whose gradients overflowed.
        self.scalers = {k: torch.amp.GradScaler(device.type) for k in optimizers} if precision == "fp16" else {}

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, name: str) -> None:
        """backward() of one loss (scaled under fp16); several calls before :meth:`step` sum their gradients
        (gradient accumulation, train.accumulate)."""
        scaler = self.scalers.get(name)
        (loss if scaler is None else scaler.scale(loss)).backward()

    def step(self, name: str, opt: torch.optim.Optimizer, before_step: Callable[[], None] | None = None) -> None:
        """opt.step() on the gradients summed since the caller zeroed them (unscaled first, skipped on Inf/NaN
        under fp16). ``before_step`` runs on the true (unscaled) gradients just before the step: the all-reduce of
        several processes, so every rank's scaler sees the same gradients and skips or steps alike."""
        scaler = self.scalers.get(name)
        if scaler is None:
            if before_step is not None:
                before_step()
            opt.step()
            return
        scaler.unscale_(opt)
        if before_step is not None:
            before_step()
        scaler.step(opt)  # skips the step when a gradient is Inf/NaN
        scaler.update()

    def compiled(self, module: nn.Module) -> Callable[..., Any]:
        """``module`` itself, or (train.compile) a compiled callable sharing its parameters and state_dict keys."""
        if not self.compile:
            return module
        return torch.compile(module)

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON: each fp16 loss scaler's scale and growth tracker ({} otherwise)."""
        out = {}
        for k, s in self.scalers.items():
            sd = s.state_dict()
            if sd:
                out[k] = {key: (float(v) if isinstance(v, float) else v) for key, v in sd.items()}
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, sd in state.items():
            if k in self.scalers and sd:
                self.scalers[k].load_state_dict(dict(sd))


@contextlib.contextmanager
def full_precision(device_type: str) -> Iterator[None]:
    """Autocast off: for penalties on input gradients, which under- or overflow in half precision."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield
