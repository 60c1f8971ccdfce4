"""What a model family is to the rest of gankit: the :class:`Task` contract the training loop drives and checkpoints
save, the :class:`FamilyTask` base class that holds what every family's task does alike, and the :class:`TaskSpec`
that the task registry holds.

A task owns one family (GAN, pix2pix, ...): how to build its networks, run one training step, draw its previews,
score validation data, and what its checkpoints hold; its spec adds how a trained run is loaded for inference, scored
by ``gankit eval`` and which validation data it trains against. Nothing outside ``gankit.tasks`` (and the networks
in ``gankit.nets``) asks which family a run is. docs/adding-a-family.md says how to add one.

The base class keeps a family's ``step`` plain single-process PyTorch: :meth:`FamilyTask.batch` gives this process's
rows of the global batch (:meth:`FamilyTask.gather` those of a batch the family picks itself), :meth:`FamilyTask.rows`
its rows of a tensor drawn for the whole batch (:meth:`FamilyTask.whole` the way back), and :meth:`FamilyTask.update`
steps one network's optimizer through the precision policy (loss scaling) and the gradient all-reduce of several
processes. Under one process those are ``batcher.next()``, ``batcher.gather(indices)``, the tensor itself (twice)
and ``opt.step()``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ..config.schema import Config
from ..core.registry import Registry
from ..data.base import Batcher, ImageData
from ..nets import Nets, is_discriminator
from ..optim import build_optimizer
from ..training import distributed as ddp
from ..training.checkpoint import Checkpoint, Checkpointable
from ..training.precision import Precision


class Task(Checkpointable, Protocol):
    """The training side of a model family, built by ``TaskSpec.build(cfg, data, device, val)``. Its checkpoint
    half (``modules``, ``optimizers``, ``settle``, ``extra_state``, ``load_extra_state``) is
    :class:`~gankit.training.checkpoint.Checkpointable`: one contract, which the checkpointer reads a part of."""

    best_metric: tuple[str, str]  # (metric key, "min" or "max") that the `best` checkpoint follows
    image_shape: tuple[int, int, int]  # (C, H, W) of the images the family makes (run.json's image_shape)

    def step(self, batcher: Batcher, t: float) -> dict[str, torch.Tensor]: ...  # one G update (after its D updates)

    def images_per_step(self) -> int: ...  # real images consumed by one step, for images/s

    def preview(self) -> dict[str, tuple[torch.Tensor, int]]: ...  # name -> (images in [-1, 1], per row)

    def validate(self) -> dict[str, float]: ...  # "eval/..." scores on validation data; {} when there are none


# ---------------------------------------------------------------------------------------------------------------------
# what every family's task does alike


def is_conv(m: nn.Module) -> bool:
    return any(isinstance(x, (nn.Conv2d, nn.ConvTranspose2d)) for x in m.modules())


def memory_format_for(on: bool, *nets: nn.Module) -> torch.memory_format:
    """channels_last for conv models when ``on`` (train.channels_last): oneDNN/cuDNN pick their fastest conv kernels
    for it; MLPs gain nothing. The nets are converted in place; batches must be made in the same format."""
    if not (on and any(is_conv(m) for m in nets)):
        return torch.contiguous_format
    for m in nets:
        m.to(memory_format=torch.channels_last)
    return torch.channels_last


def set_requires_grad(
    m: nn.Module, flag: bool, frozen: frozenset[nn.Parameter] | set[nn.Parameter] = frozenset()
) -> None:
    """requires_grad of every parameter of ``m``; those in ``frozen`` (train.freeze_d) stay off."""
    for p in m.parameters():
        p.requires_grad_(flag and p not in frozen)


@contextlib.contextmanager
def eval_mode(*nets: nn.Module) -> Iterator[None]:
    """The nets in eval mode (BatchNorm on its running statistics, dropout off) for the block, then back in the mode
    each was in: previews and validation in the middle of training leave the training state as it was."""
    was = [m.training for m in nets]
    for m in nets:
        m.eval()
    try:
        yield
    finally:
        for m, w in zip(nets, was):
            m.train(w)


class EMA:
    """Exponential moving average of a generator's weights, set by a half-life in thousands of images (as
    stylegan2-ada): after ``half_life_kimg * 1000`` images the old weights count half.

    BatchNorm statistics are not averaged: the running statistics of the live G belong to other weights, and the
    average sampled with them scored a far worse FD than with its own statistics
    (docs/notes/time-to-quality-round-2.md, "EMA of G, once fixed"). So :meth:`ready` recomputes them from the
    average's own outputs before it is used or saved ("standing statistics", as BigGAN does): a few batches of inputs
    from a fixed seed, so the result depends only on the weights and a resumed run saves the same tensors."""

    STANDING_BATCHES = 8
    STANDING_BATCH = 256

    def __init__(
        self,
        g: nn.Module,
        half_life_kimg: float,
        batch_size: int,
        draw: Callable[[int, torch.Generator], tuple[Any, ...]],
    ) -> None:
        self.model = copy.deepcopy(g).eval()
        set_requires_grad(self.model, False)
        self.beta = 0.5 ** (batch_size / (half_life_kimg * 1000.0))
        self.draw = draw  # (n, generator) -> G's positional inputs for n images, on the model's device
        self.norms = [
            m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        self.stale = bool(self.norms)

    @torch.no_grad()
    def update(self, g: nn.Module) -> None:
        # One foreach call for all tensors instead of one kernel launch each (on a GPU a small G's step is mostly
        # launches); on the CPU it runs lerp_ / copy_ tensor by tensor, the same numbers as a loop.
        torch._foreach_lerp_(list(self.model.parameters()), list(g.parameters()), 1.0 - self.beta)
        if buffers := list(self.model.buffers()):
            torch._foreach_copy_(buffers, list(g.buffers()))
        self.stale = bool(self.norms)

    @torch.no_grad()
    def ready(self) -> nn.Module:
        """The averaged G, its BatchNorm statistics its own."""
        if self.stale:
            momenta = [m.momentum for m in self.norms]
            for m in self.norms:
                m.reset_running_stats()
                m.momentum = None  # a plain average over the batches below
            gen = torch.Generator().manual_seed(0)
            for m in self.norms:  # only the norms in batch mode: dropout stays off, as when sampling (and draws
                m.train()  # nothing from the global RNG, which would change the training that follows a save)
            for _ in range(self.STANDING_BATCHES):
                self.model(*self.draw(self.STANDING_BATCH, gen))
            self.model.eval()
            for m, momentum in zip(self.norms, momenta):
                m.momentum = momentum
            self.stale = False
        return self.model


class FamilyTask:
    """The opening and the plumbing that every family's task shares; a family subclasses it, sets ``best_metric``
    and writes ``step``, ``preview`` and (optionally) ``validate``, ``extra_state``/``load_extra_state``.

    ``nets``: the family's networks by name (``gankit.nets.build_models``); each is moved to ``device`` and (with
    ``channels_last``) to that memory format, and gets an optimizer under the same name, at ``optim.lr_d`` for a
    discriminator and ``optim.lr_g`` otherwise. ``self.fwd[name]`` is the network's forward pass for the step
    (compiled with train.compile); ``self.nets[name]`` stays the plain module (checkpoints, previews, penalties).
    A network may hold several (two generators trained by one optimizer): :meth:`compiled` gives the forward pass
    of each part. A task that keeps an average of a generator sets ``self.ema`` (an :class:`EMA`); it is saved as
    ``ema``. ``kept``: modules that are training state but not trained (a history of fakes, say), by name: moved to
    ``device`` and saved and restored with every checkpoint, with no optimizer; their floating buffers are averaged
    across processes after each step, like BatchNorm statistics (keep exact values in integer buffers)."""

    best_metric: tuple[str, str]

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        nets: Nets,
        *,
        channels_last: bool,
        kept: dict[str, nn.Module] | None = None,
    ) -> None:
        self.cfg, self.device = cfg, device
        self.nets = nets
        self.kept = dict(kept or {})
        if clash := set(self.kept) & {*nets, "ema"}:
            raise ValueError(f"kept module names {sorted(clash)} are taken by networks (or the EMA)")
        for m in (*nets.values(), *self.kept.values()):
            m.to(device)
        self.memory_format = memory_format_for(channels_last, *nets.values())  # before the optimizers
        self.opts = {
            name: build_optimizer(
                m.parameters(), cfg.optim, cfg.optim.lr_d if is_discriminator(name) else cfg.optim.lr_g
            )
            for name, m in nets.items()
        }
        # Mixed precision (a loss scaler per optimizer under fp16) and compiled forwards.
        self.prec = Precision(cfg.train.precision, device, self.opts, cfg.train.compile)
        self.fwd = {name: self.prec.compiled(m) for name, m in nets.items()}
        self.ema: EMA | None = None

    # -- what checkpoints save ---------------------------------------------------------------------------------------
    @property
    def modules(self) -> dict[str, nn.Module]:
        mods = dict(self.nets)
        if self.ema is not None:
            mods["ema"] = self.ema.model
        return {**mods, **self.kept}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opts

    def settle(self) -> None:
        if self.ema is not None:
            self.ema.ready()  # checkpoints hold the average with its own BatchNorm statistics

    def extra_state(self) -> dict[str, Any]:
        """The fp16 loss scalers; a family that keeps more state (generators, counters) adds its own keys."""
        scalers = self.prec.state_dict()
        return {"scalers": scalers} if scalers else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.prec.load_state_dict(state.get("scalers", {}))

    # -- defaults --------------------------------------------------------------------------------------------------
    def images_per_step(self) -> int:
        return self.cfg.train.batch_size

    def validate(self) -> dict[str, float]:
        return {}

    def compiled(self, part: nn.Module) -> Callable[..., Any]:
        """The forward pass of ``part``, a sub-module of one of ``self.nets`` (one of the generators a network holds),
        compiled with train.compile as ``self.fwd`` is; ``part`` itself otherwise."""
        return self.prec.compiled(part)

    # -- the step's plumbing: one process or several look the same to the family ---------------------------------
    def batch(self, batcher: Batcher) -> tuple[Tensor, Tensor, Tensor | None]:
        """This process's rows of the next global batch (all of it under one process): what ``Batcher.next()``
        returns, (images, labels, targets or None) as uint8/long on the device."""
        return ddp.next_shard(batcher)

    def gather(self, batcher: Batcher, indices: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """This process's rows of a global batch the family picks itself: ``indices`` (B,) rows of the training data,
        the same on every process (from a generator they hold alike). Returns what :meth:`batch` does. The loop's
        position in the data moves only with :meth:`batch` (or ``batcher.next_indices()``)."""
        return batcher.gather(self.rows(indices))

    def rows(self, t: Tensor) -> Tensor:
        """This process's rows of ``t``, drawn for the whole global batch (noise from a generator that every process
        holds alike): N processes use the numbers one process would."""
        return ddp.shard(t)

    def whole(self, t: Tensor) -> Tensor:
        """The way back from :meth:`rows`: the whole global batch (``train.batch_size`` rows) on every process, from
        each process's rows ``t`` (B_r, ...). Exact (no arithmetic on the values). Under one process ``t`` itself."""
        return ddp.unshard(t, self.cfg.train.batch_size)

    @property
    def rank(self) -> int:
        """This process's index among the processes training together (0 alone): for seeds that must differ."""
        return ddp.rank()

    def backward(self, loss: Tensor, name: str) -> None:
        """``loss.backward()`` for network ``name``'s optimizer (scaled under fp16); several calls before
        :meth:`update` sum their gradients."""
        self.prec.backward(loss, name)

    def update(self, name: str, loss: Tensor | None = None) -> None:
        """``loss.backward()`` (when given) and one step of network ``name``'s optimizer, on the gradient of the mean
        loss over the global batch: under several processes their gradients are all-reduced, each weighted by its
        share of the batch, before the (unscaled, overflow-checked under fp16) step. The caller zeroes gradients."""
        if loss is not None:
            self.prec.backward(loss, name)
        share = ddp.share(self.cfg.train.batch_size)
        net = self.nets[name]
        self.prec.step(name, self.opts[name], lambda: ddp.sync_grads(net, share))


@dataclass(frozen=True)
class TrainedRun:
    """What every inference object knows of the run it was loaded from."""

    config: Config
    meta: dict[str, Any]  # run.json-style facts: image_shape, input_channels, class_names, ...
    step: int
    run_dir: Path


@dataclass(frozen=True)
class TaskSpec:
    build: Callable[[Config, ImageData, torch.device, ImageData | None], Task]
    # (config, training split, say) -> (training data, validation data or None), the same in training and eval
    split_validation: Callable[[Config, ImageData, Callable[[str], None]], tuple[ImageData, ImageData | None]]
    # (checkpoint, trained run) -> the family's inference object (TrainedGenerator, Translator)
    load: Callable[[Checkpoint, TrainedRun], Any]
    # (inference object, the run's config with eval's data overrides, options of `gankit eval`) -> metrics
    evaluate: Callable[..., dict[str, Any]]
    use: str  # the command that uses a trained run, for messages ("gankit sample", "gankit translate")
    next_steps: Callable[[Path], list[str]]  # lines `gankit train` prints at its end
    best_metric: tuple[str, str]  # (key, "min"/"max") that the `best` checkpoint follows (the Task's own)
    preview_title: str  # how reports name the preview grids over training
    preview_caption: str
    validation_title: str = ""  # how reports name the validation scores ("" = no table)
    latent_interpolation: bool = False  # its inference object walks a latent space (reports draw a strip)
    validate_with_previews: bool = False  # score at every preview grid when train.eval_every is 0 (cheap scores)
    scores_samples: bool = False  # `gankit eval` scores generated samples (FD protocols, --ref-stats apply)


TASKS: Registry[TaskSpec] = Registry("model family", TaskSpec)
