"""Fully connected G and D: the 2014 GAN and its report variants (2x128 with uniform noise, +-BatchNorm)."""

from __future__ import annotations

import math

import torch

import torch.nn as nn
from torch import Tensor

from .blocks import LabelConditioning, activation, with_label


def _stack(sizes: list[int], batchnorm: bool, act: str, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(n_in, n_out, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z (B, z_dim) [+ one-hot label] -> hidden layers -> tanh image (B, C, H, W) in [-1, 1]."""

    def __init__(
        self,
        z_dim: int,
        image_shape: tuple[int, int, int],
        hidden: tuple[int, ...] = (256, 512, 1024),
        batchnorm: bool = True,
        act: str = "leaky_relu",
        dropout: float = 0.0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.z_dim, self.num_classes, self.image_shape = z_dim, num_classes, tuple(image_shape)
        sizes = [z_dim + num_classes, *hidden]
        self.body = _stack(sizes, batchnorm, act, dropout)
        self.out = nn.Linear(sizes[-1], math.prod(image_shape))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z = with_label(z, y, self.num_classes)
        return torch.tanh(self.out(self.body(z))).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """Image (B, C, H, W) flattened [+ one-hot label, or a projection term] -> logit (B,)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden: tuple[int, ...] = (512, 256),
        batchnorm: bool = False,
        act: str = "leaky_relu",
        dropout: float = 0.0,
        num_classes: int = 0,
        conditioning: str = "concat",
    ) -> None:
        super().__init__()
        self.cond = LabelConditioning(num_classes, conditioning)
        sizes = [math.prod(image_shape) + self.cond.extra_inputs, *hidden]
        self.body = _stack(sizes, batchnorm, act, dropout)
        self.out = nn.Linear(sizes[-1], 1)
        self.cond.set_features(sizes[-1])

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.body(self.cond.join(x.flatten(1), y))
        return self.cond.logit(self.out(h).squeeze(1), h, y)
