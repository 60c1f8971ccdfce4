"""Differentiable augmentation of D's inputs (DiffAugment) with an optional adaptive probability (ADA).

Why: with few images or few steps, D memorises the training set and G's gradients stop carrying information.
Augmenting *every* image D sees — reals, and fakes in both the D and the G step — with transforms that are
differentiable in the image lets G be trained through them, so G learns the clean distribution while D sees a
larger one (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"). ADA (Karras et al.
2020) applies each transform to each sample with probability ``p`` and steers ``p`` by how confident D is on reals.

Real and fake batches go through the same *pipeline* with independently drawn parameters (as in both papers); the
call order on the shared generator is part of the run's determinism, so resume restores the generator state.

Several processes (``Augment.shard``): each process augments its own rows of the global batch. Every draw is made for
the whole global batch from the generator (the same on every process) and the process keeps its rows, so the
processes draw different parameters, the generator's state stays identical everywhere (rank 0's checkpoint resumes
every rank exactly, on any number of processes) and N processes augment as one process would. ADA's statistic is
summed over the processes (``Augment.reduce``) before p moves, so p is the same on every process.

Pieces, each usable alone:

- pure transforms with explicit parameters (``brightness``, ``saturation``, ``contrast``, ``color`` (the three
  at once), ``translate``, ``cutout``) — what the tests pin down exactly;
- ``AUG_OPS``: registry of ops ``op(x, p, gen) -> x`` that draw their own parameters and apply per sample with
  probability ``p``;
- ``Augment``: a policy (ops in order) + ``p`` + the ADA controller + ``state_dict``;
- ``build_augment(spec, ...)``: the config string -> ``Augment | None``;
- ``cutout_score(images)``: the leak check (share of images showing a flat cutout-like square).

All images are (B, C, H, W) floats in [-1, 1]; C may be 1 or 3; contiguous or channels_last; H, W >= 8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.errors import GankitError
from ..core.registry import Registry

MIN_SIZE = 8  # a 1/8 shift of fewer than 8 pixels rounds to nothing


# -- sizes ------------------------------------------------------------------------------------------------------------
def translation_shift(size: int) -> int:
    """Largest shift in pixels along an axis of ``size`` pixels: 1/8 of it, rounded (4 at 32, 8 at 64)."""
    return int(size * 0.125 + 0.5)


def cutout_size(size: int) -> int:
    """Side of the cutout square along an axis of ``size`` pixels: half of it, rounded (16 at 32, 14 at 28)."""
    return int(size * 0.5 + 0.5)


# -- pure transforms with explicit parameters -------------------------------------------------------------------------
def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A tensor drawn on the CPU, on ``device``. On CUDA through pinned memory, without waiting: a copy from ordinary
    (pageable) memory waits until every kernel queued before it has run, several times per augmented batch. The
    values are the same; the pinned block is not reused before the copy is done (PyTorch's host allocator)."""
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def brightness(x: Tensor, delta: Tensor) -> Tensor:
    """x + delta per sample. x (B, C, H, W); delta (B,), DiffAugment draws it from [-0.5, 0.5)."""
    return x + delta.to(x.dtype).view(-1, 1, 1, 1)


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Scale each pixel's deviation from its channel mean by ``factor`` (B,), drawn from [0, 2); 1 = identity.

    With one channel every pixel equals its channel mean, so this is the identity for grey images (as it should).
    """
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    # Written as x + (f - 1)(x - mean) so that f = 1 gives back x bit for bit (samples ADA leaves alone).
    return x + (x - mean) * (factor.to(x.dtype).view(-1, 1, 1, 1) - 1.0)


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Scale each image's deviation from its mean (over C, H, W) by ``factor`` (B,), drawn from [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return x + (x - mean) * (factor.to(x.dtype).view(-1, 1, 1, 1) - 1.0)


def color(x: Tensor, delta: Tensor, sat: Tensor, con: Tensor) -> Tensor:
    """``contrast(saturation(brightness(x, delta), sat), con)`` in two passes over x instead of about ten.

    The three are affine per image, so their composition is A x + B m + C with m the channel mean (B, 1, H, W):
    A = con * sat, B = con * (1 - sat), C = delta + (1 - con) * mean(x) (saturation keeps the image mean, and
    brightness moves every mean by delta). Equal to the three applied in turn up to float rounding; neutral
    parameters (0, 1, 1) give back x bit for bit (A = 1, B = C = 0).
    """
    b, c = x.shape[:2]
    delta, sat, con = (to_device(t.to(x.dtype), x.device).view(b, 1, 1, 1) for t in (delta, sat, con))
    # The channel mean as a sum of channel slices: for direct callers with channels_last batches, where a reduction
    # over the (innermost) channel axis is slow; Augment hands the ops contiguous batches.
    m = x[:, :1]
    for i in range(1, c):
        m = m + x[:, i : i + 1]
    m = m / c  # (B, 1, H, W)
    offset = delta + (1.0 - con) * m.mean(dim=(2, 3), keepdim=True)  # (B, 1, 1, 1)
    return torch.addcmul(con * (1.0 - sat) * m + offset, x, con * sat)


def translate(x: Tensor, shift: Tensor) -> Tensor:
    """Shift each image by whole pixels, filling the uncovered border with 0 (mid-grey in [-1, 1]).

    shift: (B, 2) integers (dy, dx); out[b, :, i, j] = x[b, :, i - dy, j - dx] where that lies inside, else 0.
    Positive dy moves the content down, positive dx right. Linear in x, so gradients flow to every kept pixel.
    """
    b, _, h, w = x.shape
    # Nearest-neighbour sampling at whole-pixel offsets is an exact shift, and grid_sample's kernels (forward and
    # backward) are several times faster than advanced indexing, whose backward (an accumulating index_put) was
    # most of the cost of augmenting a 64x64 batch (benchmarks/augment_cost.py). With align_corners=False pixel i's
    # centre is at (2i + 1) / size - 1 (any size, 1 included); nearest rounding recovers i exactly as long as the
    # coordinate's error stays far below half a pixel, hence a float32 grid at least (half precision would not
    # promise that for large images). On CUDA the backward is flagged nondeterministic (atomic adds), though no two
    # output pixels share a source here, so its sums are exact; torch.use_deterministic_algorithms(True) refuses it.
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    shift = to_device(shift.to(torch.long), x.device).to(work.dtype)  # whole pixels, as documented
    rows = torch.arange(h, device=x.device, dtype=work.dtype).view(1, h) - shift[:, :1]  # (B, H) source rows
    cols = torch.arange(w, device=x.device, dtype=work.dtype).view(1, w) - shift[:, 1:]  # (B, W) source columns
    grid = torch.stack(
        [
            ((2 * cols + 1) / w - 1).view(b, 1, w).expand(b, h, w),
            ((2 * rows + 1) / h - 1).view(b, h, 1).expand(b, h, w),
        ],
        dim=-1,
    )  # (B, H, W, (x, y))
    out = F.grid_sample(work, grid, mode="nearest", padding_mode="zeros", align_corners=False)  # outside -> 0
    return out.to(x.dtype)


def cutout(x: Tensor, top_left: Tensor, size: int) -> Tensor:
    """Zero a ``size`` x ``size`` square per image; top_left (B, 2) integer (row, col), may lie partly outside.

    The part of the square inside the image is set to 0 (mid-grey); gradients flow to every other pixel.
    """
    b, _, h, w = x.shape
    top_left = to_device(top_left.to(torch.long), x.device)
    rows = torch.arange(h, device=x.device).view(1, h) - top_left[:, :1]  # (B, H): row offset into the square
    cols = torch.arange(w, device=x.device).view(1, w) - top_left[:, 1:]  # (B, W)
    in_r = (rows >= 0) & (rows < size)
    in_c = (cols >= 0) & (cols < size)
    keep = ~(in_r.view(b, 1, h, 1) & in_c.view(b, 1, 1, w))  # (B, 1, H, W)
    return x * keep.to(x.dtype)


# -- ops: draw parameters from a generator, apply per sample with probability p ---------------------------------------
@dataclass(frozen=True)
class Rows:
    """A generator that draws for a whole global batch of ``total`` samples and hands back rows
    ``start .. start + n`` (this process's shard): the processes of a run share one generator state."""

    gen: torch.Generator
    start: int
    total: int


Draws = torch.Generator | Rows
AugOp = Callable[[Tensor, float, Draws], Tensor]  # op(x, p, gen) -> x'
AUG_OPS: Registry[AugOp] = Registry("augmentation op")


def _uniform(gen: Draws, n: int) -> Tensor:
    # Drawn on the generator's device (CPU) whatever x's device, so a run draws the same numbers on CPU and GPU.
    if isinstance(gen, Rows):
        if gen.start + n > gen.total:
            raise GankitError(
                f"augmentation shard rows {gen.start}..{gen.start + n} exceed the global batch {gen.total}"
            )
        return torch.rand(gen.total, generator=gen.gen, device=gen.gen.device)[gen.start : gen.start + n]
    return torch.rand(n, generator=gen, device=gen.device)


def _applied(gen: Draws, n: int, p: float) -> Tensor:
    """(B,) bool: which samples this op touches. Always drawn, so the generator advances the same for every p."""
    return _uniform(gen, n) < p


def _mix_factor(factor: Tensor, on: Tensor) -> Tensor:
    return torch.where(on, factor, torch.ones_like(factor))


# Each colour op's draws: applied?, then its parameter (neutral where not applied). One place, so the single ops and
# "color" draw the same numbers in the same order.
def _draw_brightness(gen: Draws, n: int, p: float) -> Tensor:
    on = _applied(gen, n, p)
    return (_uniform(gen, n) - 0.5) * on


def _draw_saturation(gen: Draws, n: int, p: float) -> Tensor:
    on = _applied(gen, n, p)
    return _mix_factor(_uniform(gen, n) * 2.0, on)


def _draw_contrast(gen: Draws, n: int, p: float) -> Tensor:
    on = _applied(gen, n, p)
    return _mix_factor(_uniform(gen, n) + 0.5, on)


@AUG_OPS.register("brightness")  # add a per-image offset in [-0.5, 0.5)
def _brightness_op(x: Tensor, p: float, gen: Draws) -> Tensor:
    return brightness(x, to_device(_draw_brightness(gen, x.shape[0], p), x.device))


@AUG_OPS.register("saturation")  # scale deviation from the channel mean by [0, 2)
def _saturation_op(x: Tensor, p: float, gen: Draws) -> Tensor:
    return saturation(x, to_device(_draw_saturation(gen, x.shape[0], p), x.device))


@AUG_OPS.register("contrast")  # scale deviation from the image mean by [0.5, 1.5)
def _contrast_op(x: Tensor, p: float, gen: Draws) -> Tensor:
    return contrast(x, to_device(_draw_contrast(gen, x.shape[0], p), x.device))


@AUG_OPS.register("color")  # brightness, saturation, contrast (each applied independently with p)
def _color_op(x: Tensor, p: float, gen: Draws) -> Tensor:
    # The three ops' draws in their order, so "color" and "brightness,saturation,contrast" draw the same numbers;
    # applied at once by ``color`` (two passes over the batch instead of about ten).
    n = x.shape[0]
    delta = _draw_brightness(gen, n, p)
    sat = _draw_saturation(gen, n, p)
    return color(x, delta, sat, _draw_contrast(gen, n, p))


@AUG_OPS.register("translation")  # shift by up to 1/8 of the size, zero fill
def _translation_op(x: Tensor, p: float, gen: Draws) -> Tensor:
    b, _, h, w = x.shape
    on = _applied(gen, b, p)
    sy, sx = translation_shift(h), translation_shift(w)
    # Integers uniform in [-s, s] from uniforms, so every op draws through the same call.
    dy = (_uniform(gen, b) * (2 * sy + 1)).floor().long() - sy
    dx = (_uniform(gen, b) * (2 * sx + 1)).floor().long() - sx
    shift = torch.stack([dy, dx], dim=1) * on.view(b, 1)
    return translate(x, shift)


@AUG_OPS.register("cutout")  # zero a square of half the size at a random centre
def _cutout_op(x: Tensor, p: float, gen: Draws) -> Tensor:
    b, _, h, w = x.shape
    on = _applied(gen, b, p)
    s = cutout_size(min(h, w))
    # The square's centre is uniform over the image, so near the border part of it falls outside (as in DiffAugment);
    # at least ceil(s/2) rows and columns of it always stay visible — what cutout_score looks for.
    lo = -(s // 2)
    top = (_uniform(gen, b) * (h - (s + 1) // 2 - lo + 1)).floor().long() + lo
    left = (_uniform(gen, b) * (w - (s + 1) // 2 - lo + 1)).floor().long() + lo
    # Samples left alone get a square parked fully outside the image.
    top = torch.where(on, top, torch.full_like(top, -s))
    return cutout(x, torch.stack([top, left], dim=1), s)


DEFAULT_POLICY = "color,translation,cutout"


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> ('color', 'translation', 'cutout'), each checked against AUG_OPS."""
    names = tuple(part.strip() for part in policy.split(","))
    for name in names:
        if not name:
            raise GankitError(
                f"augmentation policy '{policy}' has an empty op; write ops separated by single commas, "
                f"from: {', '.join(AUG_OPS.names())}"
            )
        AUG_OPS.get(name)  # unknown -> GankitError naming it and the choices
    if len(set(names)) != len(names):
        raise GankitError(f"augmentation policy '{policy}' repeats an op; list each op once")
    return names


# -- the pipeline and the ADA controller ------------------------------------------------------------------------------
@dataclass
class Augment:
    """Apply ``ops`` in order, each to each sample with probability ``p``; optionally adapt ``p`` (ADA).

    ``augment(x)`` returns the augmented batch (same shape, dtype, device and memory format; differentiable in x).
    Call it on reals and on fakes in the D step *and* on fakes in the G step, so G is trained through it.

    ADA (``adaptive=True``): ``p`` starts at 0. Feed D's logits on (augmented) reals to ``update`` every D step;
    every ``interval`` calls, r_t = mean(sign(logits)) over the scores seen since the last adjustment, and
    p += sign(r_t - target) * n_images / (speed_kimg * 1000), clamped to [0, 1]; n_images counts the leading
    (batch) dimension of the logits, so a patch D that scores (B, 1, h, w) moves p as fast as a (B,) one. So p can
    cross its whole range in ``speed_kimg`` thousand real images. One host sync per interval (the read of r_t).

    Several processes: ``shard = (start, global_batch)`` makes every draw for the global batch and keeps this
    process's rows; ``reduce`` (an in-place sum over processes) is applied to each update's (sum of signs, scores,
    images), so every process accumulates the global batch's statistic and moves p identically.
    """

    ops: tuple[str, ...]
    seed: int = 0
    p: float = 1.0
    adaptive: bool = False
    target: float = 0.6
    speed_kimg: float = 100.0
    interval: int = 4
    shard: tuple[int, int] | None = None
    reduce: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        for name in self.ops:
            AUG_OPS.get(name)
        if not 0.0 <= self.p <= 1.0:
            raise GankitError(f"augmentation probability {self.p} is outside [0, 1]")
        if not 0.0 <= self.target <= 1.0:
            raise GankitError(f"ADA target {self.target} is outside [0, 1]; 0.6 is the paper's value")
        if self.speed_kimg <= 0:
            raise GankitError(f"ADA speed_kimg {self.speed_kimg} must be > 0")
        if self.interval < 1:
            raise GankitError(f"ADA interval {self.interval} must be >= 1")
        self.gen = torch.Generator().manual_seed(self.seed)
        # Since the last adjustment: (sum of sign(D(real)), scores in that sum, images behind them; scores = images
        # unless D scores patches), left on D's device until read; a host tuple when nothing is on a device yet.
        self._acc: Tensor | tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._calls = 0
        self.rt: float | None = None  # the last r_t read, for logging

    # -- applying --------------------------------------------------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [-1, 1] -> augmented x, same layout. p = 0 returns x itself (and draws nothing)."""
        if x.ndim != 4 or x.shape[-1] < MIN_SIZE or x.shape[-2] < MIN_SIZE:
            raise GankitError(
                f"augmentation needs (B, C, H, W) images of at least {MIN_SIZE}x{MIN_SIZE}, "
                f"got shape {tuple(x.shape)}; use train.augment=none for smaller images"
            )
        if self.p <= 0.0:
            return x
        fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        gen: Draws = self.gen if self.shard is None else Rows(self.gen, *self.shard)
        # The ops run on a contiguous (B, C, H, W) copy: their elementwise kernels, channel mean and grid_sample are
        # slower on channels_last strides by more than one copy each way costs (docs/notes/code-comments.md).
        out = x.contiguous()
        for name in self.ops:
            out = AUG_OPS.get(name)(out, self.p, gen)
        return out.contiguous(memory_format=fmt)

    # -- ADA -------------------------------------------------------------------------------------------------------
    def update(self, d_real_logits: Tensor) -> None:
        """Accumulate sign(D(real)); every ``interval`` calls move p. No-op unless adaptive."""
        if not self.adaptive:
            return
        logits = d_real_logits.detach()
        # float32 holds these integer counts exactly up to 2**24 (an interval of a few global batches of patch scores)
        # (new_full, not new_tensor: a number copied from the host to an accelerator waits for the device)
        inc = torch.stack(
            [
                logits.sign().sum().float(),
                logits.new_full((), float(logits.numel()), dtype=torch.float32),
                logits.new_full((), float(logits.shape[0] if logits.ndim else 1), dtype=torch.float32),
            ]
        )
        if self.reduce is not None:
            inc = self.reduce(inc)  # the global batch's statistic, on every process
        if isinstance(self._acc, Tensor):
            acc = self._acc
        else:  # a fresh interval starts from zeros made on the device; a resumed one from the saved host numbers
            acc = inc.new_zeros(3) if self._acc == (0.0, 0.0, 0.0) else inc.new_tensor(self._acc)
        self._acc = inc + acc
        self._calls += 1
        if self._calls < self.interval:
            return
        acc, n, images = self._acc.tolist()  # the one host sync
        self.rt = acc / max(n, 1.0)
        step = images / (self.speed_kimg * 1000.0)
        direction = (self.rt > self.target) - (self.rt < self.target)
        self.p = min(max(self.p + direction * step, 0.0), 1.0)
        self._acc, self._calls = (0.0, 0.0, 0.0), 0

    def stats(self) -> dict[str, float]:
        """Floats to log under stable keys: 'aug/p' always, 'aug/rt' once ADA has read one."""
        out = {"aug/p": float(self.p)}
        if self.rt is not None:
            out["aug/rt"] = float(self.rt)
        return out

    # -- checkpointing ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next outputs: p, the ADA accumulator, the generator state."""
        acc, n, images = self._acc.tolist() if isinstance(self._acc, Tensor) else self._acc
        return {
            "ops": list(self.ops),
            "p": float(self.p),
            "acc": float(acc),
            "acc_n": int(n),
            "acc_images": int(images),
            "calls": self._calls,
            "rt": self.rt,
            "generator": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state["p"])
        self._acc = (float(state["acc"]), float(state["acc_n"]), float(state["acc_images"]))
        self._calls = int(state["calls"])
        self.rt = None if state.get("rt") is None else float(state["rt"])
        self.gen.set_state(state["generator"])


def _is_channels_last(x: Tensor) -> bool:
    # A (B, 1, H, W) or 1x1 tensor is both layouts at once; call it contiguous unless it is not.
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def build_augment(
    spec: str,
    *,
    seed: int,
    target: float = 0.6,
    speed_kimg: float = 100.0,
    interval: int = 4,
) -> Augment | None:
    """The ``train.augment`` string -> an Augment, or None for no augmentation.

    - ``"none"`` (or ``""``): None.
    - a policy, e.g. ``"color,translation,cutout"`` or ``"translation"``: DiffAugment, every op on every sample
      (p = 1, fixed; ``update`` does nothing).
    - ``"ada"``: adaptive p (starts at 0) over the full policy ``color,translation,cutout``.
    - ``"ada:<policy>"``, e.g. ``"ada:color,translation"``: adaptive p over that policy.

    Ops: ``AUG_OPS.names()`` — brightness, saturation, contrast, color (= the three), translation, cutout.
    ``seed`` seeds the augmentation's own generator (pass the run's seed plus a constant, so it does not repeat the
    noise stream). ``speed_kimg``: thousands of real images for p to move by 1 (the paper's 500 suits runs of tens of
    millions of images; a 10-minute CPU run sees ~0.3 million, so 100 lets p move within the run).
    """
    text = spec.strip()
    if text in ("", "none"):
        return None
    if text == "ada" or text.startswith("ada:"):
        policy = text[4:].strip() or DEFAULT_POLICY
        return Augment(
            parse_policy(policy),
            seed=seed,
            p=0.0,
            adaptive=True,
            target=target,
            speed_kimg=speed_kimg,
            interval=interval,
        )
    return Augment(parse_policy(text), seed=seed, p=1.0)


# -- leak check -------------------------------------------------------------------------------------------------------
def cutout_score(images: Tensor, *, window: int | None = None, fill: float = 0.0, tol: float = 0.1) -> float:
    """Share of images (in [0, 1]) that contain a flat ``window`` x ``window`` square at the cutout fill value.

    The signature of a cutout leak: a generator that learnt to paint cutout squares draws flat mid-grey blocks.
    images: (N, C, H, W) float in [-1, 1], or uint8 in [0, 255]. A pixel counts as flat when every channel is within
    ``tol`` of ``fill`` (cutout fills 0); an image counts when some window is entirely flat. ``window`` defaults to
    the smallest part of a cutout square that always stays visible, ceil(cutout_size / 2) (8 at 32x32): wider than
    translation's zero border (1/8 of the size), so translation alone does not score.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise GankitError(f"cutout_score needs a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    x = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.detach().float()
    h, w = x.shape[-2:]
    k = window if window is not None else (cutout_size(min(h, w)) + 1) // 2
    if not 1 <= k <= min(h, w):
        raise GankitError(f"cutout_score window {k} must be between 1 and the image size {min(h, w)}")
    dev = (x - fill).abs().amax(dim=1, keepdim=True)  # (N, 1, H, W): worst channel per pixel
    worst = F.max_pool2d(dev, k, stride=1)  # (N, 1, H-k+1, W-k+1): worst pixel in each window
    flat = worst.flatten(1).amin(dim=1) < tol  # (N,)
    return flat.float().mean().item()
