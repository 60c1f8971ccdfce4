"""Network architectures and the model registry.

A model name maps to a :class:`ModelSpec`: a builder of its named networks (any number of generators and
discriminators, each trained by an optimizer of its own: ``{"g": G, "d": D}`` for a GAN; CycleGAN's ``"g"`` holds
both its generators and ``"d"`` both its discriminators, one optimizer each, as in the paper), the task (model
family) that trains it, the ``model.*`` keys it reads — its own typed section of the config: a key it does not read
is an error when a user sets it — its own defaults, and a check of the whole config. Builders take explicit arguments
from the config's model section, never the whole config.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from ..config.schema import Config, ModelConfig
from ..core.registry import Registry
from .blocks import add_spectral_norm, dcgan_init, sample_noise
from .dcgan import DCGANDiscriminator, DCGANGenerator, plan_hw
from .mlp import MLPDiscriminator, MLPGenerator

# A builder's networks by name. A name starting with "d" is a discriminator (model.spectral_norm_d applies to it),
# any other name a generator; the names are the checkpoint's file stems and what --init-parts may name.
Nets = dict[str, nn.Module]
# builder(model config, image shape (C, H, W) of what G makes, channels of G's conditioning image (0 for GANs))
Builder = Callable[[ModelConfig, tuple[int, int, int], int], Nets]


def is_discriminator(name: str) -> bool:
    """Whether network ``name`` of a builder's :data:`Nets` is a discriminator (by the naming rule above)."""
    return name.startswith("d")


# The model.* keys the GAN family's models read (shared keys of gankit/config/schema.py and the family's own,
# declared in gankit/tasks/gan.py; the lists stay here, beside the builders, because tasks import nets, not back).
# A spec's ``fields`` names its whole section.
GAN_FIELDS = frozenset(
    {"name", "z_dim", "noise", "num_classes", "conditioning", "init", "spectral_norm_d", "spectral_norm_g"}
)
LAYER_FIELDS = frozenset({"g_batchnorm", "d_batchnorm", "g_activation", "d_activation", "g_dropout", "d_dropout"})
CONV_FIELDS = GAN_FIELDS | LAYER_FIELDS | {"g_channels", "d_channels", "max_channels"}
MLP_FIELDS = GAN_FIELDS | LAYER_FIELDS | {"g_hidden", "d_hidden"}
DCGAN_FIELDS = CONV_FIELDS | {"g_upsample", "g_output", "g_class_norm", "d_mbstd"}  # the generic DCGAN's own options


@dataclass(frozen=True)
class ModelSpec:
    build: Builder
    family: str  # the model family in gankit.tasks that trains it (a key of gankit.tasks.TASKS)
    fields: frozenset[str]  # the model.* keys this model reads
    defaults: Mapping[str, Any] = field(default_factory=dict)  # its own model.* defaults, under the user's layers
    train_defaults: Mapping[str, Any] = field(default_factory=dict)  # train.* settings it trains fastest with, likewise
    default_data: str | None = None  # data set when the user names none (None: the config's default)
    check: Callable[[Config], None] | None = None  # whole-config validation, run once before training
    non_square: bool = False  # trains on images of any width x height (data.image_height), not only squares

    @property
    def task(self) -> str:
        """The family's old name in this spec (gankit <= 0.x called families tasks); use :attr:`family`."""
        return self.family


MODELS: Registry[ModelSpec] = Registry("model", ModelSpec)

__all__ = ["MODELS", "ModelSpec", "Nets", "build_models", "is_discriminator", "model", "model_defaults", "sample_noise"]


def model(name: str, **spec: Any) -> Callable[[Builder], Builder]:
    """Decorator: register builder ``fn`` under ``name`` with the :class:`ModelSpec` fields ``spec`` (``task=`` is
    accepted for ``family=``, its older name)."""
    if "task" in spec:
        spec["family"] = spec.pop("task")

    def deco(fn: Builder) -> Builder:
        MODELS.add(name, ModelSpec(build=fn, **spec))
        return fn

    return deco


def model_defaults(name: str) -> dict[str, Any]:
    return dict(MODELS.get(name).defaults) if name in MODELS else {}


def _check_dcgan(cfg: Config) -> None:
    # (model.d_mbstd's value is checked where the GAN family declares it, gankit/tasks/gan.py)
    plan_hw(cfg.data.image_height or cfg.data.image_size, cfg.data.image_size)  # data.image_size is the width


@model("dcgan", family="gan", fields=DCGAN_FIELDS, check=_check_dcgan, non_square=True)
def _dcgan(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    g = DCGANGenerator(
        c.z_dim,
        shape,
        c.g_channels,
        c.max_channels,
        c.g_batchnorm,
        c.g_activation,
        c.g_dropout,
        c.num_classes,
        c.g_upsample,
        c.g_output,
        c.g_class_norm,
    )
    d = DCGANDiscriminator(
        shape,
        c.d_channels,
        c.max_channels,
        c.d_batchnorm,
        c.d_activation,
        c.d_dropout,
        c.num_classes,
        c.conditioning,
        c.d_mbstd,
    )
    return {"g": g, "d": d}


@model(
    "mlp",
    family="gan",
    fields=MLP_FIELDS,
    non_square=True,  # flattened images: any height x width
    defaults={
        "g_hidden": [256, 512, 1024],
        "d_hidden": [512, 256],
        "d_batchnorm": False,
        "g_activation": "leaky_relu",
        "init": "default",
    },
)
def _mlp(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    g = MLPGenerator(c.z_dim, shape, c.g_hidden, c.g_batchnorm, c.g_activation, c.g_dropout, c.num_classes)
    d = MLPDiscriminator(shape, c.d_hidden, c.d_batchnorm, c.d_activation, c.d_dropout, c.num_classes, c.conditioning)
    return {"g": g, "d": d}


def build_models(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> Nets:
    """The named networks of model ``c.name`` for images of ``shape`` (C, H, W), initialised and (optionally)
    spectrally normalised; a GAN's are ``{"g": G, "d": D}``.

    ``cond_channels``: for image-to-image models, the channels of the input image G translates (0 otherwise)."""
    nets = MODELS.get(c.name).build(c, shape, cond_channels)
    if c.init == "dcgan":
        for m in nets.values():
            dcgan_init(m)
    # Discriminators first, then generators: spectral norm draws its power-iteration vector from the global RNG, and
    # this order keeps fixed-seed runs as they were when a builder returned one (G, D) pair.
    for name, m in nets.items():
        if c.spectral_norm_d and is_discriminator(name):
            add_spectral_norm(m)
    for name, m in nets.items():
        if c.spectral_norm_g and not is_discriminator(name):
            add_spectral_norm(m)
    return nets


# Every module of this package registers its models when imported: a new architecture is a new file, no list to edit.
for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_m.name}")
