"""Optimizers by name, each built from an :class:`OptimConfig` and a learning rate."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .config.schema import OptimConfig
from .core.registry import Registry

Builder = Callable[[Iterable[torch.nn.Parameter], OptimConfig, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[Builder] = Registry("optimizer")


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    """Adam's fused kernel (one pass over each tensor instead of about ten) runs on the CPU and CUDA. It is several
    times faster than the per-parameter loop, and at pix2pix's 57 M parameters and batch 1 the optimizer is most of a
    step (docs/notes/speed-and-side-work.md, "What was changed, and what paid"). A checkpoint's param groups keep
    the flag, so a run resumes with the kernel it started with (exact resume holds for runs saved before it was the
    default too)."""
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def memory_order(t: torch.Tensor) -> torch.Tensor | None:
    """``t``'s elements as a 1-d view in the order they lie in memory, or None when they are not one dense block
    (a channels_last conv weight is; a slice is not)."""
    order = sorted(range(t.ndim), key=t.stride, reverse=True)
    p = t.permute(order)
    return p.view(-1) if p.is_contiguous() else None


class LayoutAdam(torch.optim.Adam):
    """torch.optim.Adam whose fused kernel sees each channels_last parameter, its gradient and moments as the flat
    blocks they are. Adam is elementwise, so the update is the same (tested bit for bit); but the fused CPU kernel
    (torch 2.13) copies every non-contiguous tensor to a contiguous one first, a cost on every step that the views
    avoid (measured in docs/notes/time-to-quality-round-6.md, "Adam without layout copies").
    State, state dicts and checkpoints are Adam's: only the lists handed to the kernel hold views."""

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps):
        has_complex = super()._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps)
        # Only the CPU kernel copies: CUDA's fused kernel takes any dense tensors whose strides agree, and the views
        # below cost Python time at every step (a few hundred microseconds on a small model, whose step is mostly
        # Python and kernel launches on a GPU).
        if group["fused"] and params and params[0].device.type == "cpu":
            lists = [params, grads, exp_avgs, exp_avg_sqs] + ([max_exp_avg_sqs] if group["amsgrad"] else [])
            for i, p in enumerate(params):
                tensors = [lst[i] for lst in lists]
                if p.is_contiguous() or any(t.stride() != p.stride() for t in tensors):
                    continue  # flat views pair elements only when every tensor lies in memory the same way
                flat = [memory_order(t) for t in tensors]
                if all(f is not None for f in flat):
                    for lst, f in zip(lists, flat):
                        lst[i] = f
        return has_complex


@OPTIMIZERS.register("adam")
def _adam(params, c: OptimConfig, lr: float) -> torch.optim.Optimizer:
    params = list(params)
    return LayoutAdam(
        params, lr=lr, betas=(c.beta1, c.beta2), eps=c.eps, weight_decay=c.weight_decay, fused=_fusable(params) or None
    )


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params, c: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params, lr=lr, alpha=c.alpha, eps=c.eps, momentum=c.momentum, weight_decay=c.weight_decay
    )


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
