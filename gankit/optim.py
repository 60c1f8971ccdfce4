"""Optimizers by name, each built from an :class:`OptimConfig` and a learning rate."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .config.schema import OptimConfig
from .core.registry import Registry

Builder = Callable[[Iterable[torch.nn.Parameter], OptimConfig, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[Builder] = Registry("optimizer")


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    """Adam's fused kernel (one pass over each tensor instead of about ten) runs on the CPU and CUDA. It is 1.5-3x
    faster than the per-parameter loop (BENCHMARKS.md, issue 10): at pix2pix's 57 M parameters and batch 1 the
    optimizer is most of a step. A checkpoint's param groups keep the flag, so a run resumes with the kernel it
    started with (exact resume holds for runs saved before it was the default too)."""
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


@OPTIMIZERS.register("adam")
def _adam(params, c: OptimConfig, lr: float) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.Adam(params, lr=lr, betas=(c.beta1, c.beta2), eps=c.eps, weight_decay=c.weight_decay,
                            fused=_fusable(params) or None)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params, c: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, alpha=c.alpha, eps=c.eps, momentum=c.momentum, weight_decay=c.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params, c: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=c.momentum, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adadelta")
def _adadelta(params, c: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adadelta(params, lr=lr, rho=c.rho, eps=c.eps, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adagrad")
def _adagrad(params, c: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=lr, eps=c.eps, weight_decay=c.weight_decay)


def build_optimizer(params: Iterable[torch.nn.Parameter], c: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(c.name)(params, c, lr)
