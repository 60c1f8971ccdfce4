"""CycleGAN (Zhu et al. 2017): two ResNet-block generators (A -> B, B -> A) and two PatchGAN discriminators (one per
domain), for unpaired image-to-image translation.

G (the paper's "c7s1-k, d2k, d4k, R4k x n, u2k, uk, c7s1-3"): reflection pad 3 + Conv(7) to ``channels``, two
stride-2 Conv(3) halvings (2x, 4x channels), ``blocks`` residual blocks of two reflection-padded Conv(3) at 4x
channels, two stride-2 transposed Conv(3) doublings back, reflection pad 3 + Conv(7) to the output channels, tanh.
Every conv but the last is followed by the norm (instance in the paper) and ReLU. 6 blocks is the paper's net for
128x128, 9 for 256x256; gankit's embedded default is much smaller, for a CPU.

D: gankit's PatchGAN (:class:`gankit.nets.pix2pix.PatchDiscriminator`, 70x70 in the paper), on one image of its
domain (not a pair): (B, C, H, W) -> a logit map (B, 1, H', W').

Both generators live in one :class:`CycleGenerators` module and both discriminators in one
:class:`CycleDiscriminators`, so a run has the "g" and "d" of every gankit family (checkpoints, fine-tuning parts,
the learning rates lr_g and lr_d), and one Adam steps both generators, as in the reference implementation.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ..config.schema import Config, ModelConfig
from ..core.errors import GankitError
from ..data.unpaired import UNPAIRED_SETS
from . import model
from .pix2pix import PatchDiscriminator, _norm, patch_output_size, patch_specs

HALVINGS = 2  # G's stride-2 layers: image sides must be multiples of 2**HALVINGS


class ResidualBlock(nn.Module):
    """x + [pad, Conv(3), norm, ReLU, pad, Conv(3), norm](x); shape-preserving, (B, C, H, W)."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        bias = norm != "batch"  # a bias right before batch norm is cancelled by its mean
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            _norm(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            _norm(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image (B, in_channels, H, W) in [-1, 1] -> image (B, out_channels, H, W) in [-1, 1]; H and W multiples of 4.

    Fully convolutional: a net trained on 64x64 crops translates larger images of sides divisible by 4."""

    def __init__(
        self, in_channels: int, out_channels: int, channels: int = 64, blocks: int = 6, norm: str = "instance"
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, channels, 7, bias=bias),
            _norm(norm, channels),
            nn.ReLU(True),
        ]
        c = channels
        for _ in range(HALVINGS):
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), _norm(norm, 2 * c), nn.ReLU(True)]
            c *= 2
        layers += [ResidualBlock(c, norm) for _ in range(blocks)]
        for _ in range(HALVINGS):
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
                _norm(norm, c // 2),
                nn.ReLU(True),
            ]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``y`` is unused; it keeps the ``G(input, labels)`` signature of the other models."""
        unit = 2**HALVINGS
        if x.shape[-2] % unit or x.shape[-1] % unit:
            raise ValueError(f"the CycleGAN generator needs H, W divisible by {unit}, got {tuple(x.shape)}")
        return self.net(x)


class CycleGenerators(nn.Module):
    """``ab``: domain A -> B; ``ba``: B -> A. Calling it translates A -> B (what export and `translate` default to)."""

    def __init__(self, ab: nn.Module, ba: nn.Module) -> None:
        super().__init__()
        self.ab, self.ba = ab, ba

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.ab(x)


class CycleDiscriminators(nn.Module):
    """``a`` judges images of domain A (real A against B -> A translations), ``b`` those of domain B."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.b(x)


def _check_cyclegan(cfg: Config) -> None:
    size = cfg.data.image_size
    unit = 2**HALVINGS
    if size % unit:
        raise GankitError(
            f"data.image_size={size}: the CycleGAN generator halves the image twice, so the size must be "
            f"a multiple of {unit}; try {max(unit, size // unit * unit)} or {(size // unit + 1) * unit}"
        )
    if cfg.train.d_steps != 1:
        raise GankitError(
            f"train.d_steps={cfg.train.d_steps}: CycleGAN updates its Gs and Ds once per batch; set it to 1"
        )
    if cfg.train.augment != "none" or cfg.loss.r1_gamma or cfg.train.ema_half_life:
        raise GankitError(
            "train.augment, loss.r1_gamma and train.ema_half_life are for GANs; CycleGAN does not use "
            "them: set train.augment=none, loss.r1_gamma=0 and train.ema_half_life=0"
        )
    patch_specs(cfg.model.patch)
    if patch_output_size(size, cfg.model.patch) < 1:
        raise GankitError(
            f"model.patch={cfg.model.patch} needs images larger than data.image_size={size}; use a "
            f"smaller patch (16 or 1) or a larger image size"
        )
    if cfg.data.name not in UNPAIRED_SETS:
        raise GankitError(
            f"model cyclegan translates between two unpaired image domains, but data set "
            f"'{cfg.data.name}' is not one; use one of: {', '.join(sorted(UNPAIRED_SETS))}"
        )


@model(
    "cyclegan",
    check=_check_cyclegan,
    family="cyclegan",
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
            "g_blocks",
            "pool_size",
        }
    ),
    default_data="sketch_unpaired",  # the embedded unpaired set, for `gankit train --model cyclegan` without data
    defaults={"init": "dcgan", "norm": "instance", "max_channels": 512, "g_blocks": 6},
)
def _cyclegan(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> dict[str, nn.Module]:
    """``shape``: (C, H, W) of both domains' images (the unpaired readers give both domains the same channels)."""
    ch = shape[0]
    g = CycleGenerators(
        ResnetGenerator(ch, ch, c.g_channels, c.g_blocks, c.norm),
        ResnetGenerator(ch, ch, c.g_channels, c.g_blocks, c.norm),
    )
    d = CycleDiscriminators(
        PatchDiscriminator(ch, c.d_channels, c.patch, c.norm, c.max_channels),
        PatchDiscriminator(ch, c.d_channels, c.patch, c.norm, c.max_channels),
    )
    # Both generators train as the run's "g" and both discriminators as its "d": one Adam per side, lr_g/lr_d and
    # --init-parts g,d as for the other families.
    return {"g": g, "d": d}
