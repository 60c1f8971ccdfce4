"""The reports' architectures that the generic ``dcgan`` and ``mlp`` builders cannot express.

- ``dcgan-tf``: the TensorFlow-tutorial DCGAN of report 004 (and the Keras conv GAN of report 000): a Dense layer to
  (s/4)x(s/4)x256, then 5x5 "same" transposed convolutions 128 (stride 1), 64 (stride 2), C (stride 2); D is two 5x5
  stride-2 convolutions 64, 128 with dropout 0.3, then Flatten and Dense(1). Keras' LeakyReLU slope 0.3 throughout.
- ``dcgan-3conv``: report 002's TensorFlow DCGAN: Dense to 7x7x256, two 5x5 stride-2 transposed convolutions with BN
  and LeakyReLU, dropout 0.5, then a single-filter 5x5 transposed convolution and tanh; D is three 5x5 stride-2
  convolutions with BN and LeakyReLU, then Flatten and Dense(1).
- ``dcgan-upsample``: report 002's Keras DCGAN (its best model): Dense, then two cells of [2x nearest upsampling, two
  3x3 convolutions with LeakyReLU and dropout]; D mirrors it with stride-2 convolutions, then Flatten and Dense(1).
- ``mlp-maxout``: the 2014 GAN paper's MNIST model that report 003 describes: a ReLU MLP generator and a maxout
  discriminator trained with dropout.

Widths follow the ``dcgan`` convention: ``g_channels`` is G's last hidden width and doubles inwards, ``d_channels`` is
D's first width and doubles with depth, both capped at ``max_channels``; with 64 each gives the reports' 256/128/64
and 64/128(/256). Every G maps z (B, z_dim) [+ labels (B,)] to images (B, C, H, W) in [-1, 1]; every D maps images
[+ labels] to logits (B,). Conditioning (``num_classes`` > 0) is a one-hot vector concatenated to z in G, and to D's
input as constant label planes (conv D) or to the flattened image (MLP D), or D's projection term.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch.nn as nn
from torch import Tensor

from ..config.schema import Config, ModelConfig
from ..core.errors import GankitError
from . import CONV_FIELDS, GAN_FIELDS, Nets, model
from .dcgan import widths
from .blocks import LabelConditioning, activation, with_label
from .mlp import MLPGenerator

# Keras' LeakyReLU() defaults to slope 0.3 (PyTorch's habit is 0.2); the TensorFlow tutorial relies on that default.

MAXOUT_PIECES = 5  # the 2014 paper's MNIST discriminator: maxout units of 5 pieces


def same_transpose(c_in: int, c_out: int, kernel: int, stride: int, bias: bool) -> nn.ConvTranspose2d:
    """A transposed convolution with TensorFlow's ``padding='same'``: (H, W) -> (stride*H, stride*W) for odd kernels."""
    return nn.ConvTranspose2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, output_padding=stride - 1, bias=bias)


def same_conv(c_in: int, c_out: int, kernel: int, stride: int, bias: bool) -> nn.Conv2d:
    """A convolution with TensorFlow's ``padding='same'`` output size: (H, W) -> (ceil(H/stride), ceil(W/stride))."""
    return nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, bias=bias)


class DenseConvGenerator(nn.Module):
    """z [+ one-hot label] -> Dense -> (widths[0], b, b) -> 'same' convolutions up to the image -> tanh.

    ``layers``: (output channels, scale) of each convolution after the Dense layer; the last one outputs the image's
    channels and its width entry is ignored. ``upsample="transpose"``: a transposed convolution of stride ``scale``;
    ``"nearest"``: nearest-neighbour upsampling by ``scale`` then a stride-1 convolution (the Keras UpSampling2D style).
    Hidden layers get [BN], activation; dropout goes after every hidden convolution (``dropout_every``) or only once,
    just before the output convolution (report 002's TensorFlow DCGAN).
    """

    def __init__(
        self,
        z_dim: int,
        image_shape: tuple[int, int, int],
        dense_channels: int,
        layers: Sequence[tuple[int, int]],
        kernel: int = 5,
        upsample: str = "transpose",
        batchnorm: bool = True,
        act: str = "leaky_relu",
        dropout: float = 0.0,
        dropout_every: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        c_img, height, width = image_shape
        self.z_dim, self.num_classes, self.image_shape = z_dim, num_classes, tuple(image_shape)
        scale = math.prod(s for _, s in layers)
        self.base = (height // scale, width // scale)  # (b, b) for square images
        self.dense_channels = dense_channels
        units = dense_channels * self.base[0] * self.base[1]
        # Keras layers before BN carry no bias (use_bias=False in the tutorial): BN's shift replaces it.
        dense: list[nn.Module] = [nn.Linear(z_dim + num_classes, units, bias=not batchnorm)]
        if batchnorm:
            dense.append(nn.BatchNorm1d(units))
        dense.append(activation(act))
        self.dense = nn.Sequential(*dense)
        body: list[nn.Module] = []
        c_in = dense_channels
        for i, (c_out, s) in enumerate(layers):
            last = i == len(layers) - 1
            if last:
                c_out = c_img
                if dropout > 0 and not dropout_every:
                    body.append(nn.Dropout(dropout))
            norm = batchnorm and not last
            if upsample == "transpose":
                body.append(same_transpose(c_in, c_out, kernel, s, bias=not norm and not last))
            else:
                if s > 1:
                    body.append(nn.Upsample(scale_factor=s, mode="nearest"))
                body.append(same_conv(c_in, c_out, kernel, 1, bias=not norm))
            if not last:
                if norm:
                    body.append(nn.BatchNorm2d(c_out))
                body.append(activation(act))
                if dropout > 0 and dropout_every:
                    body.append(nn.Dropout(dropout))
            c_in = c_out
        body.append(nn.Tanh())
        self.body = nn.Sequential(*body)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, z_dim), y (B,) labels when conditional -> images (B, C, H, W) in [-1, 1]."""
        z = with_label(z, y, self.num_classes)
        h = self.dense(z).view(z.shape[0], self.dense_channels, *self.base)  # (B, C0, b_h, b_w)
        return self.body(h)


class ConvDenseDiscriminator(nn.Module):
    """Image [+ label planes] -> 'same' convolutions [BN from the second], activation, [dropout] -> Flatten -> Dense(1).

    ``layers``: (output channels, stride) of each convolution. The flattened features also feed the projection term
    when ``conditioning="projection"``.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        layers: Sequence[tuple[int, int]],
        kernel: int = 5,
        batchnorm: bool = False,
        act: str = "leaky_relu",
        dropout: float = 0.0,
        num_classes: int = 0,
        conditioning: str = "concat",
    ) -> None:
        super().__init__()
        c_img, height, width = image_shape
        self.cond = LabelConditioning(num_classes, conditioning)
        body: list[nn.Module] = []
        c_in = c_img + self.cond.extra_inputs
        for i, (c_out, s) in enumerate(layers):
            norm = batchnorm and i > 0  # DCGAN: no BN on the layer that sees the images
            body.append(same_conv(c_in, c_out, kernel, s, bias=not norm))
            if norm:
                body.append(nn.BatchNorm2d(c_out))
            body.append(activation(act))
            if dropout > 0:
                body.append(nn.Dropout(dropout))
            c_in = c_out
            height, width = -(-height // s), -(-width // s)  # 'same' padding: ceil
        self.features = nn.Sequential(*body)
        flat = c_in * height * width
        self.head = nn.Linear(flat, 1)
        self.cond.set_features(flat)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) in [-1, 1] -> logits (B,)."""
        h = self.features(self.cond.join(x, y)).flatten(1)  # (B, F)
        return self.cond.logit(self.head(h).squeeze(1), h, y)


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al. 2013): the max over ``pieces`` linear pieces. (B, n_in) -> (B, n_out)."""

    def __init__(self, n_in: int, n_out: int, pieces: int = MAXOUT_PIECES) -> None:
        super().__init__()
        self.n_out, self.pieces = n_out, pieces
        self.linear = nn.Linear(n_in, n_out * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(x.shape[0], self.n_out, self.pieces).amax(2)


class MaxoutDiscriminator(nn.Module):
    """Image flattened [+ one-hot label] -> maxout layers with dropout -> logit (B,): the 2014 paper's D."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden: Sequence[int] = (240, 240),
        dropout: float = 0.5,
        num_classes: int = 0,
        conditioning: str = "concat",
        pieces: int = MAXOUT_PIECES,
    ) -> None:
        super().__init__()
        self.cond = LabelConditioning(num_classes, conditioning)
        sizes = [math.prod(image_shape) + self.cond.extra_inputs, *hidden]
        body: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            body.append(Maxout(n_in, n_out, pieces))
            if dropout > 0:
                body.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*body)
        self.out = nn.Linear(sizes[-1], 1)
        self.cond.set_features(sizes[-1])

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.body(self.cond.join(x.flatten(1), y))
        return self.cond.logit(self.out(h).squeeze(1), h, y)


# ---------------------------------------------------------------------------------------------------------------------
# registry entries


def _size_check(name: str, multiple: int) -> Callable[[Config], None]:
    """A ``check`` that data.image_size (and data.image_height, for non-square images) is a multiple of the model's
    total up-sampling."""

    def check(cfg: Config) -> None:
        for key, size in (("image_size", cfg.data.image_size), ("image_height", cfg.data.image_height)):
            if size % multiple:
                raise GankitError(
                    f"data.{key}={size}: model '{name}' needs a multiple of {multiple} (e.g. 28 for MNIST, 32 or 64)"
                )

    return check


@model(
    "dcgan-tf",
    family="gan",
    fields=CONV_FIELDS,
    check=_size_check("dcgan-tf", 4),
    non_square=True,
    defaults={
        "g_activation": "leaky_relu_0.3",
        "d_activation": "leaky_relu_0.3",
        "g_batchnorm": True,
        "d_batchnorm": False,
        "d_dropout": 0.3,
        "g_channels": 64,
        "d_channels": 64,
    },
    # Trained contiguous: its 5x5 (transposed) convolutions gain little from channels_last on the CPU with AVX-512
    # and lose with AVX2 or on an AMD EPYC (docs/notes/against-plain.md, "Where gankit was slower than plain, and
    # what changed"). `--set train.channels_last=true` still turns it on.
    train_defaults={"channels_last": False},
)
def _dcgan_tf(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    """Report 004 (TensorFlow DCGAN tutorial): G Dense 7*7*256 -> ConvT5 128 s1 -> 64 s2 -> C s2; D Conv5 64, 128 s2."""
    g_w = widths(c.g_channels, 3, c.max_channels)[::-1]  # 256, 128, 64
    d_w = widths(c.d_channels, 2, c.max_channels)  # 64, 128
    g = DenseConvGenerator(
        c.z_dim,
        shape,
        g_w[0],
        [(g_w[1], 1), (g_w[2], 2), (shape[0], 2)],
        5,
        "transpose",
        c.g_batchnorm,
        c.g_activation,
        c.g_dropout,
        True,
        c.num_classes,
    )
    d = ConvDenseDiscriminator(
        shape, [(w, 2) for w in d_w], 5, c.d_batchnorm, c.d_activation, c.d_dropout, c.num_classes, c.conditioning
    )
    return {"g": g, "d": d}


@model(
    "dcgan-3conv",
    family="gan",
    fields=CONV_FIELDS,
    check=_size_check("dcgan-3conv", 4),
    non_square=True,
    defaults={
        "g_activation": "leaky_relu",
        "d_activation": "leaky_relu",
        "g_batchnorm": True,
        "d_batchnorm": True,
        "g_dropout": 0.5,
        "d_dropout": 0.0,
        "g_channels": 64,
        "d_channels": 64,
    },
)
def _dcgan_3conv(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    """Report 002 (TensorFlow DCGAN): G Dense 7*7*256 -> ConvT5 128 s2 -> 64 s2 -> dropout -> C s1;
    D Conv5 64/128/256 s2 -> Dense."""
    g_w = widths(c.g_channels, 3, c.max_channels)[::-1]  # 256, 128, 64
    d_w = widths(c.d_channels, 3, c.max_channels)  # 64, 128, 256
    g = DenseConvGenerator(
        c.z_dim,
        shape,
        g_w[0],
        [(g_w[1], 2), (g_w[2], 2), (shape[0], 1)],
        5,
        "transpose",
        c.g_batchnorm,
        c.g_activation,
        c.g_dropout,
        False,
        c.num_classes,
    )
    d = ConvDenseDiscriminator(
        shape, [(w, 2) for w in d_w], 5, c.d_batchnorm, c.d_activation, c.d_dropout, c.num_classes, c.conditioning
    )
    return {"g": g, "d": d}


@model(
    "dcgan-upsample",
    family="gan",
    fields=CONV_FIELDS,
    check=_size_check("dcgan-upsample", 4),
    non_square=True,
    defaults={
        "g_activation": "leaky_relu",
        "d_activation": "leaky_relu",
        "g_batchnorm": False,
        "d_batchnorm": False,
        "g_dropout": 0.25,
        "d_dropout": 0.25,
        "g_channels": 64,
        "d_channels": 64,
    },
)
def _dcgan_upsample(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    """Report 002 (Keras DCGAN): G Dense -> [up x2, Conv3, Conv3] x 2 (the last conv makes the image); D mirrors it."""
    g_w = widths(c.g_channels, 3, c.max_channels)[::-1]  # 256, 128, 64
    d_w = widths(c.d_channels, 2, c.max_channels)  # 64, 128
    g = DenseConvGenerator(
        c.z_dim,
        shape,
        g_w[0],
        [(g_w[1], 2), (g_w[1], 1), (g_w[2], 2), (shape[0], 1)],
        3,
        "nearest",
        c.g_batchnorm,
        c.g_activation,
        c.g_dropout,
        True,
        c.num_classes,
    )
    d = ConvDenseDiscriminator(
        shape,
        [(d_w[0], 1), (d_w[0], 2), (d_w[1], 1), (d_w[1], 2)],
        3,
        c.d_batchnorm,
        c.d_activation,
        c.d_dropout,
        c.num_classes,
        c.conditioning,
    )
    return {"g": g, "d": d}


@model(
    "mlp-maxout",
    family="gan",
    non_square=True,
    # Maxout D has no BatchNorm option: d_batchnorm is fixed off (so WGAN-GP needs no flag) and not the user's to set.
    fields=GAN_FIELDS | {"g_hidden", "d_hidden", "g_batchnorm", "g_activation", "g_dropout", "d_dropout"},
    defaults={
        "g_hidden": [1200, 1200],
        "d_hidden": [240, 240],
        "g_batchnorm": False,
        "g_activation": "relu",
        "d_dropout": 0.5,
        "init": "default",
        "d_batchnorm": False,
    },
)
def _mlp_maxout(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    """Report 003 (the 2014 paper's MNIST nets): G ReLU MLP 1200-1200 -> tanh; D maxout 240x5, 240x5 with dropout."""
    g = MLPGenerator(c.z_dim, shape, c.g_hidden, c.g_batchnorm, c.g_activation, c.g_dropout, c.num_classes)
    d = MaxoutDiscriminator(shape, c.d_hidden, c.d_dropout, c.num_classes, c.conditioning)
    return {"g": g, "d": d}
