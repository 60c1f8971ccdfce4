"""pix2pix (Isola et al. 2017): a U-Net generator and a PatchGAN discriminator for paired image-to-image translation.

G: the input image A (B, C_A, H, W) in [-1, 1] -> the translated image (B, C_B, H, W) in [-1, 1]. An encoder of
[LeakyReLU(0.2), Conv(4, 2, 1), norm] layers halves the image down to a bottleneck; a decoder of
[ReLU, ConvTranspose(4, 2, 1), norm] layers doubles it back, each decoder layer taking the encoder features of the
same size concatenated to its input (the skip connections), and ends in tanh. There is no z: as in the paper, dropout
in the innermost decoder layers is the only noise source.

D: the pair (A, B) concatenated on channels (B, C_A + C_B, H, W) -> a map of logits (B, 1, H', W'), one per
overlapping patch of the input. The patch size is the receptive field of one output unit: 70 (the paper's default),
16, 286, or 1 (the "PixelGAN" of 1x1 convolutions, which only judges colour).

For 256x256 with 64 channels both are the reference networks: G is the paper's ``unet_256`` (8 downs, widths
64-128-256-512-512-512-512-512), D is the 70x70 PatchGAN (64-128-256-512 -> a 30x30 map).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..config.schema import Config, ModelConfig
from ..core.errors import GankitError
from ..data.registry import DATASETS
from . import Nets, model

PATCHES = (1, 16, 70, 286)
# PatchGAN patch size -> number of stride-2 conv layers (each followed by the stride-1 layer and the output conv).
_STRIDED = {16: 1, 70: 3, 286: 5}
NORMS = ("batch", "instance", "none")

# (kernel, stride, padding) of one conv layer
ConvSpec = tuple[int, int, int]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        # affine=False and no running statistics, as in the reference implementation: every image is normalised by
        # its own statistics at train and test time alike.
        return nn.InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise GankitError(f"model.norm={kind!r}: choose one of {', '.join(NORMS)}")


def _suggest(size: int) -> str:
    lo, hi = max(32, size // 32 * 32), (size // 32 + 1) * 32
    return f"{lo} or {hi}" if lo != hi else str(lo)


def unet_depth(image_size: int, key: str = "data.image_size") -> int:
    """The number of halvings of the U-Net for square images of side ``image_size``.

    Rule: halve while the size is even (and so >= 2). Powers of two go down to 1x1 (256 -> 8 halvings, as in the
    paper); other sizes stop at their odd factor (96 = 3 * 2^5 -> 5 halvings to a 3x3 bottleneck). At least 3 halvings
    are required (the size must be a multiple of 8), because a shallower U-Net sees too little of the image to
    translate it; sizes that are multiples of 32 work best.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise GankitError(f"{key}={image_size!r}: must be a positive integer")
    depth, s = 0, image_size
    while s % 2 == 0 and s >= 2:
        s //= 2
        depth += 1
    if depth < 3:
        raise GankitError(
            f"{key}={image_size}: the pix2pix U-Net halves the image while its size stays even and needs "
            f"at least 3 halvings, so the size must be a multiple of 8; try {_suggest(image_size)}"
        )
    return depth


class UNetGenerator(nn.Module):
    """U-Net with skip connections; depth from :func:`unet_depth`.

    Widths from the image end inwards: channels, 2*channels, 4*channels, ... capped at ``max_channels``.
    ``dropout`` (the paper's 0.5) is applied after the ``dropout_layers`` innermost decoder layers (the paper's
    "CD512-CD1024-CD1024"); with dropout = 0 G is deterministic. The innermost encoder layer has no norm, so a 1x1
    bottleneck works with instance norm and with batches of one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        image_size: int,
        channels: int = 64,
        max_channels: int = 512,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_layers: int = 3,
        image_height: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.image_size = in_channels, out_channels, image_size
        # non-square (image_height > 0): as many halvings as both sides allow
        n = self.depth = min(unet_depth(image_size), unet_depth(image_height or image_size, "data.image_height"))
        w = [min(channels * 2**i, max_channels) for i in range(n)]
        bias = norm != "batch"  # a bias right before batch norm is cancelled by its mean
        # Encoder: down[i] maps size/2^i -> size/2^(i+1), w[i] channels out.
        self.down = nn.ModuleList()
        for i in range(n):
            if i == 0:  # the layer that sees the image has no activation before it and no norm
                self.down.append(nn.Conv2d(in_channels, w[0], 4, 2, 1, bias=True))
                continue
            # not in place: the previous layer's output is also kept as a skip connection
            layers: list[nn.Module] = [nn.LeakyReLU(0.2), nn.Conv2d(w[i - 1], w[i], 4, 2, 1, bias=bias or i == n - 1)]
            if i < n - 1:
                layers.append(_norm(norm, w[i]))
            self.down.append(nn.Sequential(*layers))
        # Decoder: up[i] maps size/2^(i+1) -> size/2^i. Its input is down[i]'s output, concatenated with up[i+1]'s
        # output for all but the innermost layer.
        n_drop = min(dropout_layers, max(n - 2, 0)) if dropout > 0 else 0
        self.up = nn.ModuleList()
        for i in range(n):
            c_in = w[i] if i == n - 1 else 2 * w[i]
            if i == 0:
                self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()))
                continue
            layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, w[i - 1], 4, 2, 1, bias=bias), _norm(norm, w[i - 1])]
            if i >= n - n_drop:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x: the input image (B, C_in, H, W) in [-1, 1] -> (B, C_out, H, W) in [-1, 1].

        H = W = image_size in training; being fully convolutional, G also takes any H and W divisible by
        2^depth (a 256 net translates 512x384 images). ``y`` is unused; it keeps the ``G(input, labels)`` signature
        of the other models."""
        unit = 2**self.depth
        if x.shape[-2] % unit or x.shape[-1] % unit:
            raise ValueError(f"this U-Net (depth {self.depth}) needs H, W divisible by {unit}, got {tuple(x.shape)}")
        skips = []
        h = x
        for layer in self.down:
            h = layer(h)
            skips.append(h)  # skips[i]: (B, w[i], H / 2^(i+1), W / 2^(i+1))
        h = self.up[-1](skips[-1])
        for i in range(self.depth - 2, -1, -1):
            h = self.up[i](torch.cat([skips[i], h], 1))
        return h


# ---------------------------------------------------------------------------------------------------------------------
# PatchGAN


def patch_specs(patch: int) -> list[ConvSpec]:
    """(kernel, stride, padding) of every conv layer of the PatchGAN for ``patch``, input first."""
    if patch == 1:
        return [(1, 1, 0)] * 3
    if patch not in _STRIDED:
        raise GankitError(f"model.patch={patch!r}: choose one of {', '.join(map(str, PATCHES))}")
    return [(4, 2, 1)] * _STRIDED[patch] + [(4, 1, 1), (4, 1, 1)]


def layers_receptive_field(specs: Sequence[ConvSpec]) -> int:
    """The receptive field, in input pixels, of one output unit of a stack of convolutions.

    Walking back from the output: a unit that sees r positions of layer l's output sees (r - 1) * stride + kernel
    positions of its input."""
    r = 1
    for k, s, _ in reversed(list(specs)):
        r = (r - 1) * s + k
    return r


def layers_output_size(size: int, specs: Sequence[ConvSpec]) -> int:
    """Spatial size of the output of a stack of convolutions for an input of side ``size`` (<= 0: too small)."""
    for k, s, p in specs:
        if size + 2 * p < k:
            return 0
        size = (size + 2 * p - k) // s + 1
    return size


def receptive_field(patch: int) -> int:
    """The receptive field of the PatchGAN ``patch`` computed from its layers (it equals ``patch``)."""
    return layers_receptive_field(patch_specs(patch))


def patch_output_size(image_size: int, patch: int) -> int:
    """Side of D's logit map for square inputs of side ``image_size`` (256 -> 30 for patch 70, 256 for patch 1)."""
    return layers_output_size(image_size, patch_specs(patch))


class PatchDiscriminator(nn.Module):
    """PatchGAN: a fully convolutional D that classifies each overlapping ``patch`` x ``patch`` patch.

    patch 16 / 70 / 286: 1 / 3 / 5 stride-2 [Conv(4, 2, 1), norm, LeakyReLU(0.2)] layers, then one stride-1 such
    layer, then Conv(4, 1, 1) to one logit per position; widths channels, 2*channels, ... capped at ``max_channels``.
    patch 1 (PixelGAN): 1x1 convolutions channels -> 2*channels -> 1. No norm on the layer that sees the images.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 64,
        patch: int = 70,
        norm: str = "batch",
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        self.in_channels, self.patch = in_channels, patch
        specs = patch_specs(patch)
        bias = norm != "batch"
        layers: list[nn.Module] = []
        c_in = in_channels
        # all but the output conv: widths double per layer
        for i, (k, s, p) in enumerate(specs[:-1]):
            c_out = min(channels * 2**i, max_channels)
            layers.append(nn.Conv2d(c_in, c_out, k, s, p, bias=bias or i == 0))
            if i > 0:
                layers.append(_norm(norm, c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        k, s, p = specs[-1]
        layers.append(nn.Conv2d(c_in, 1, k, s, p))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x: input and output concatenated, (B, C_A + C_B, H, W) in [-1, 1] -> logits (B, 1, H', W'),
        H' = :func:`patch_output_size` (H, patch). ``y`` is unused."""
        return self.net(x)


# ---------------------------------------------------------------------------------------------------------------------
# registration


def _check_pix2pix(cfg: Config) -> None:
    size = cfg.data.image_size
    if cfg.data.image_height:
        unet_depth(cfg.data.image_height, "data.image_height")
    if cfg.train.d_steps != 1:
        raise GankitError(f"train.d_steps={cfg.train.d_steps}: pix2pix updates D and G once per batch; set it to 1")
    if cfg.train.augment != "none" or cfg.loss.r1_gamma:
        raise GankitError(
            "train.augment and loss.r1_gamma are for GANs; pix2pix's D sees (input, output) pairs whose "
            "geometry must match: set train.augment=none and loss.r1_gamma=0 (data.jitter/flip augment pairs)"
        )
    unet_depth(size)
    patch_specs(cfg.model.patch)
    if patch_output_size(min(size, cfg.data.image_height or size), cfg.model.patch) < 1:
        raise GankitError(
            f"model.patch={cfg.model.patch} needs images larger than data.image_size={size}; "
            f"use a smaller patch (16 or 1) or a larger image size"
        )
    if cfg.data.load_size and cfg.data.load_size < size:
        raise GankitError(
            f"data.load_size={cfg.data.load_size} is smaller than data.image_size={size}; the jitter resizes up to "
            f"load_size and crops back, so use load_size >= image_size (0 = image_size * 286 / 256)"
        )
    if not DATASETS.get(cfg.data.name).paired:
        paired = [n for n, spec in DATASETS.items() if spec.paired]
        raise GankitError(
            f"model pix2pix translates image pairs, but data set '{cfg.data.name}' is not paired; "
            f"use one of: {', '.join(paired)}"
        )


@model(
    "pix2pix",
    check=_check_pix2pix,
    family="pix2pix",
    non_square=True,
    fields=frozenset(
        {
            "name",
            "init",
            "spectral_norm_d",
            "spectral_norm_g",
            "g_channels",
            "d_channels",
            "max_channels",
            "norm",
            "patch",
            "g_dropout",
        }
    ),
    default_data="sketch",  # the embedded paired set, for `gankit train --model pix2pix` without a data argument
    defaults={"init": "dcgan", "g_dropout": 0.5, "max_channels": 512, "norm": "batch"},
)
def _pix2pix(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    """``shape``: (C_B, H, W) of what G makes; ``cond_channels``: C_A, the channels of the input image."""
    if cond_channels < 1:
        raise GankitError("model pix2pix needs paired data (an input image per target); use --data sketch or paired")
    c_out, h, w = shape
    g = UNetGenerator(cond_channels, c_out, w, c.g_channels, c.max_channels, c.norm, c.g_dropout, image_height=h)
    d = PatchDiscriminator(cond_channels + c_out, c.d_channels, c.patch, c.norm, c.max_channels)
    return {"g": g, "d": d}
