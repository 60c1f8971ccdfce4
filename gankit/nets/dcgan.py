"""DCGAN (Radford et al. 2016) for 28x28 and any power of two from 16 to 256, conditional by an argument; also
non-square images whose sides are both powers of two from 16 to 256 (W x H = 64x32, 32x128, ...).

G: z -> ConvTranspose 4x4 (or 7x7 for 28) -> [ConvTranspose(4, 2, 1), BN, ReLU] ... -> tanh.
D: [Conv(4, 2, 1), BN, LeakyReLU(0.2)] ... down to 4x4 (7x7 for 28) -> Conv to one logit. No BN on D's first layer.
Widths double with depth from ``channels`` at the image end, capped at ``max_channels``; for 64x64 with 64 channels
G is exactly the reference 100 -> 512 -> 256 -> 128 -> 64 -> 3. A non-square image keeps the layers of its shorter
side: the shorter side ends at 4 as a square's would and the longer at 4 times the aspect ratio (64 wide, 32 high: a
4x8 first map, three stride-2 layers), so G's first layer and D's last one are 4 x (4 * aspect) rather than 4 x 4.

Options (all off by default, so the above stays the reference): G's stride-2 layers as nearest upsampling + 3x3 conv
(``upsample``), a hardtanh output (``output="clamp"``), class-conditional BatchNorm in a conditional G
(``class_norm``), and a minibatch-stddev feature map before D's last layer (``mbstd``).
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ..core.errors import GankitError
from .blocks import (
    ClassBatchNorm2d,
    DenseTranspose2d,
    LabelConditioning,
    MinibatchStd,
    activation,
    first_format,
    with_label,
)


SIDES = (16, 32, 64, 128, 256)  # the powers of two a DCGAN side may have


def plan(size: int) -> tuple[int, int]:
    """(base spatial size, number of stride-2 layers) for a square image size."""
    if size == 28:
        return 7, 2
    if size in SIDES:
        n = size.bit_length() - 1 - 2
        return 4, n
    raise GankitError(f"data.image_size={size}: DCGAN supports 28 and powers of two from 16 to 256")


def plan_hw(height: int, width: int) -> tuple[int | tuple[int, int], int]:
    """(base map, number of stride-2 layers) for an image ``height`` x ``width``: for a square, :func:`plan`'s int;
    otherwise (base height, base width) with the shorter side's 4 and as many layers as that side needs.

    Both sides must be powers of two from 16 to 256, the square DCGAN's sizes: every layer doubles both sides, so the
    longer side's base is then 4 times the aspect ratio, a whole number (28, the square MNIST plan, has no such pair)."""
    if height == width:
        return plan(width)
    if height not in SIDES or width not in SIDES:
        raise GankitError(
            f"data.image_size={width} (width) x data.image_height={height}: a non-square DCGAN needs both sides powers "
            f"of two from 16 to 256 (e.g. image_size={_nearest(width)}, image_height={_nearest(height)})"
        )
    n = min(height, width).bit_length() - 1 - 2
    return (height >> n, width >> n), n


def _nearest(side: int) -> int:
    return min(SIDES, key=lambda s: (abs(s - side), -s))  # a tie goes to the larger side (48 -> 64)


def widths(channels: int, n: int, max_channels: int) -> list[int]:
    """Widths from the image end inwards: channels, 2*channels, ... (n of them), capped."""
    return [min(channels * 2**i, max_channels) for i in range(n)]


class DCGANGenerator(nn.Module):
    def __init__(
        self,
        z_dim: int,
        image_shape: tuple[int, int, int],
        channels: int = 64,
        max_channels: int = 1024,
        batchnorm: bool = True,
        act: str = "relu",
        dropout: float = 0.0,
        num_classes: int = 0,
        upsample: str = "transpose",
        output: str = "tanh",
        class_norm: bool = False,
    ) -> None:
        super().__init__()
        c_img, height, width = image_shape
        self.z_dim, self.num_classes, self.image_shape = z_dim, num_classes, tuple(image_shape)
        base, n = plan_hw(height, width)
        w = widths(channels, n, max_channels)[::-1]  # inner (widest) first
        layers: list[nn.Module] = [DenseTranspose2d(z_dim + num_classes, w[0], base, 1, 0, bias=not batchnorm)]
        for i in range(n):
            if batchnorm:
                layers.append(
                    ClassBatchNorm2d(w[i], num_classes) if class_norm and num_classes else nn.BatchNorm2d(w[i])
                )
            layers.append(activation(act))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            last = i == n - 1
            c_out, bias = (c_img if last else w[i + 1]), last or not batchnorm
            if upsample == "nearest" or (upsample == "nearest_last" and last):
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[i], c_out, 3, 1, 1, bias=bias)]
            else:
                layers.append(nn.ConvTranspose2d(w[i], c_out, 4, 2, 1, bias=bias))
        # tanh reaches -1 and 1 only in the limit; "clamp" (hardtanh) gives exact black and white, as digits have
        layers.append(nn.Tanh() if output == "tanh" else nn.Hardtanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, z_dim), y (B,) labels when conditional -> images (B, C, H, W) in [-1, 1]."""
        h = with_label(z, y, self.num_classes)[:, :, None, None]
        for layer in self.net:
            h = layer(h, y) if isinstance(layer, ClassBatchNorm2d) else layer(h)
        return h


class DCGANDiscriminator(nn.Module):
    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: int = 64,
        max_channels: int = 1024,
        batchnorm: bool = True,
        act: str = "leaky_relu",
        dropout: float = 0.0,
        num_classes: int = 0,
        conditioning: str = "concat",
        mbstd: int = 0,
    ) -> None:
        super().__init__()
        c_img, height, width = image_shape
        self.cond = LabelConditioning(num_classes, conditioning)
        base, n = plan_hw(height, width)
        w = widths(channels, n, max_channels)
        layers: list[nn.Module] = []
        c_in = c_img + self.cond.extra_inputs
        for i in range(n):
            norm = batchnorm and i > 0  # DCGAN: no BN on the layer that sees the images
            layers.append(nn.Conv2d(c_in, w[i], 4, 2, 1, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(w[i]))
            layers.append(activation(act))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c_in = w[i]
        if mbstd:
            layers.append(MinibatchStd(mbstd))
            c_in += 1  # the spread feature map
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, 1, base, 1, 0)
        self.cond.set_features(c_in)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) in [-1, 1] -> logits (B,)."""
        h = self.features(self.cond.join(x, y, first_format(self.features)))  # (B, F, base h, base w)
        return self.cond.logit(self.head(h).flatten(1).squeeze(1), h.sum((2, 3)), y)
