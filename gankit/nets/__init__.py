"""Network architectures and the model registry.

A model name maps to a :class:`ModelSpec`: a builder of (G, D), the task (model family) that trains it, the
``model.*`` keys it reads — its own typed section of the config: a key it does not read is an error when a user sets
it — its own defaults, and a check of the whole config. Builders take explicit arguments from the config's model
section, never the whole config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from ..config.schema import Config, ModelConfig
from ..core.errors import GankitError
from ..core.registry import Registry
from .blocks import add_spectral_norm, dcgan_init, sample_noise
from .dcgan import DCGANDiscriminator, DCGANGenerator, plan
from .mlp import MLPDiscriminator, MLPGenerator

# builder(model config, image shape (C, H, W) of what G makes, channels of G's conditioning image (0 for GANs))
Builder = Callable[[ModelConfig, tuple[int, int, int], int], tuple[nn.Module, nn.Module]]

# The model.* keys each family reads; a spec's ``fields`` names its whole section.
GAN_FIELDS = frozenset({"name", "z_dim", "noise", "num_classes", "conditioning", "init", "spectral_norm_d",
                        "spectral_norm_g"})
LAYER_FIELDS = frozenset({"g_batchnorm", "d_batchnorm", "g_activation", "d_activation", "g_dropout", "d_dropout"})
CONV_FIELDS = GAN_FIELDS | LAYER_FIELDS | {"g_channels", "d_channels", "max_channels"}
MLP_FIELDS = GAN_FIELDS | LAYER_FIELDS | {"g_hidden", "d_hidden"}
DCGAN_FIELDS = CONV_FIELDS | {"g_upsample", "g_output", "g_class_norm", "d_mbstd"}  # the generic DCGAN's own options


@dataclass(frozen=True)
class ModelSpec:
    build: Builder
    task: str  # the model family in gankit.tasks that trains it: "gan" or "pix2pix"
    fields: frozenset[str]  # the model.* keys this model reads
    defaults: Mapping[str, Any] = field(default_factory=dict)  # its own model.* defaults, under the user's layers
    train_defaults: Mapping[str, Any] = field(default_factory=dict)  # train.* settings it trains fastest with, likewise
    default_data: str | None = None  # data set when the user names none (None: the config's default)
    check: Callable[[Config], None] | None = None  # whole-config validation, run once before training
    non_square: bool = False  # trains on images of any width x height (data.image_height), not only squares


MODELS: Registry[ModelSpec] = Registry("model", ModelSpec)

__all__ = ["MODELS", "ModelSpec", "build_models", "model", "model_defaults", "sample_noise"]


def model(name: str, **spec: Any) -> Callable[[Builder], Builder]:
    """Decorator: register builder ``fn`` under ``name`` with the :class:`ModelSpec` fields ``spec``."""

    def deco(fn: Builder) -> Builder:
        MODELS.add(name, ModelSpec(build=fn, **spec))
        return fn

    return deco


def model_defaults(name: str) -> dict[str, Any]:
    return dict(MODELS.get(name).defaults) if name in MODELS else {}


def _check_dcgan(cfg: Config) -> None:
    plan(cfg.data.image_size)
    m = cfg.model
    if m.d_mbstd < 0:
        raise GankitError(f"model.d_mbstd={m.d_mbstd}: use 0 (off) or a group size such as 4")


@model("dcgan", task="gan", fields=DCGAN_FIELDS, check=_check_dcgan)
def _dcgan(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> tuple[nn.Module, nn.Module]:
    g = DCGANGenerator(c.z_dim, shape, c.g_channels, c.max_channels, c.g_batchnorm, c.g_activation, c.g_dropout, c.num_classes,
                       c.g_upsample, c.g_output, c.g_class_norm)
    d = DCGANDiscriminator(shape, c.d_channels, c.max_channels, c.d_batchnorm, c.d_activation, c.d_dropout, c.num_classes,
                           c.conditioning, c.d_mbstd)
    return g, d


@model(
    "mlp",
    task="gan",
    fields=MLP_FIELDS,
    defaults={"g_hidden": [256, 512, 1024], "d_hidden": [512, 256], "d_batchnorm": False, "g_activation": "leaky_relu", "init": "default"},
)
def _mlp(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> tuple[nn.Module, nn.Module]:
    g = MLPGenerator(c.z_dim, shape, c.g_hidden, c.g_batchnorm, c.g_activation, c.g_dropout, c.num_classes)
    d = MLPDiscriminator(shape, c.d_hidden, c.d_batchnorm, c.d_activation, c.d_dropout, c.num_classes, c.conditioning)
    return g, d


def build_models(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> tuple[nn.Module, nn.Module]:
    """(G, D) for images of ``shape`` (C, H, W), initialised and (optionally) spectrally normalised.

    ``cond_channels``: for image-to-image models, the channels of the input image G translates (0 otherwise)."""
    g, d = MODELS.get(c.name).build(c, shape, cond_channels)
    if c.init == "dcgan":
        dcgan_init(g)
        dcgan_init(d)
    if c.spectral_norm_d:
        add_spectral_norm(d)
    if c.spectral_norm_g:
        add_spectral_norm(g)
    return g, d


from . import cyclegan, pix2pix, variants  # noqa: F401,E402  (importing registers them)
