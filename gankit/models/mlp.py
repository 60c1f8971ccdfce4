"""Fully connected G and D: the 2014 GAN and its report variants (2x128 with uniform noise, +-BatchNorm)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from .blocks import Projection, activation, one_hot


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
        if self.num_classes:
            z = torch.cat([z, one_hot(y, self.num_classes)], 1)
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
        self.num_classes = num_classes
        self.concat = num_classes > 0 and conditioning == "concat"
        sizes = [math.prod(image_shape) + (num_classes if self.concat else 0), *hidden]
        self.body = _stack(sizes, batchnorm, act, dropout)
        self.out = nn.Linear(sizes[-1], 1)
        self.projection = Projection(num_classes, sizes[-1]) if num_classes and not self.concat else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = x.flatten(1)
        if self.concat:
            h = torch.cat([h, one_hot(y, self.num_classes)], 1)
        h = self.body(h)
        logit = self.out(h).squeeze(1)
        if self.projection is not None:
            logit = logit + self.projection(h, y)
        return logit
