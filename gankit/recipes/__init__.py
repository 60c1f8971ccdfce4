"""Recipes own the forward and backward passes of one training step; the loop in train.py owns everything else.

A recipe is built from the config and the data's shape, holds the models and optimizers, and exposes:
  modules / optimizers         name -> object, saved in every checkpoint under those names
  step(batcher, t) -> dict     one generator update (after its d_steps discriminator updates); detached scalars
  preview() -> dict            name -> images for the run folder's pictures, from a fixed input batch
  sample(n, generator, labels) images in [-1, 1] from the sampling copy of G
``t`` in [0, 1] is the fraction of the budget done (for schedules such as instance-noise annealing).
"""

from __future__ import annotations

from ..registry import Registry

RECIPES: Registry[type] = Registry("training recipe")

from . import gan, pix2pix  # noqa: E402,F401  (importing registers them)
