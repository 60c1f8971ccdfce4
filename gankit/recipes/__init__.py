"""Recipes own the forward and backward passes of one training step; the loop in training.py owns everything else.

A recipe is built from the config and the data, holds the models and optimizers, and implements :class:`Recipe`.
``t`` in [0, 1] passed to ``step`` is the fraction of the budget done (for schedules such as instance-noise annealing).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ..registry import Registry


class Recipe(Protocol):
    """What the training loop needs from a recipe (``RECIPES.get(kind)(cfg, data, device, val)`` builds one)."""

    best_metric: tuple[str, str]  # (metric key, "min" or "max") that the `best` checkpoint follows

    @property
    def modules(self) -> dict[str, nn.Module]: ...  # saved in every checkpoint under these names

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def step(self, batcher, t: float) -> dict[str, torch.Tensor]: ...  # one G update (after its D updates)

    def images_per_step(self) -> int: ...  # real images consumed by one step, for images/s

    def preview(self) -> dict[str, tuple[torch.Tensor, int]]: ...  # name -> (images in [-1, 1], per row)

    def evaluate(self) -> dict[str, float]: ...  # "eval/..." scores; {} when the config asks for none


RECIPES: Registry[type] = Registry("training recipe")

from . import gan, pix2pix  # noqa: E402,F401  (importing registers them)
