"""Model registry: a name maps to a builder of (G, D) from a :class:`ModelConfig` and the image shape.

Each entry may carry its own defaults (``defaults=``), layered under the user's config, and a ``check`` that
validates the whole config up front.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from ..config import Config, ModelConfig
from ..registry import Registry
from .blocks import add_spectral_norm, dcgan_init, sample_noise
from .dcgan import DCGANDiscriminator, DCGANGenerator, plan
from .mlp import MLPDiscriminator, MLPGenerator

# builder(model config, image shape (C, H, W) of what G makes, channels of G's conditioning image (0 for GANs))
Builder = Callable[[ModelConfig, tuple[int, int, int], int], tuple[nn.Module, nn.Module]]
MODELS: Registry[Builder] = Registry("model")

__all__ = ["MODELS", "build_models", "model_defaults", "sample_noise"]


def model_defaults(name: str) -> dict[str, Any]:
    if name not in MODELS:
        return {}
    return dict(MODELS.meta(name).get("defaults", {}))


def _check_dcgan(cfg: Config) -> None:
    plan(cfg.data.image_size)


@MODELS.register("dcgan", check=_check_dcgan, kind="gan")
def _dcgan(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> tuple[nn.Module, nn.Module]:
    g = DCGANGenerator(c.z_dim, shape, c.g_channels, c.max_channels, c.g_batchnorm, c.g_activation, c.g_dropout, c.num_classes)
    d = DCGANDiscriminator(shape, c.d_channels, c.max_channels, c.d_batchnorm, c.d_activation, c.d_dropout, c.num_classes, c.conditioning)
    return g, d


@MODELS.register(
    "mlp",
    kind="gan",
    defaults={"g_hidden": [256, 512, 1024], "d_hidden": [512, 256], "d_batchnorm": False, "g_activation": "leaky_relu", "init": "default"},
)
def _mlp(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> tuple[nn.Module, nn.Module]:
    g = MLPGenerator(c.z_dim, shape, c.g_hidden, c.g_batchnorm, c.g_activation, c.g_dropout, c.num_classes)
    d = MLPDiscriminator(shape, c.d_hidden, c.d_batchnorm, c.d_activation, c.d_dropout, c.num_classes, c.conditioning)
    return g, d


def build_models(c: ModelConfig, shape: tuple[int, int, int], cond_channels: int = 0) -> tuple[nn.Module, nn.Module]:
    """(G, D) for images of ``shape`` (C, H, W), initialised and (optionally) spectrally normalised.

    ``cond_channels``: for image-to-image models, the channels of the input image G translates (0 otherwise)."""
    g, d = MODELS.get(c.name)(c, shape, cond_channels)
    if c.init == "dcgan":
        dcgan_init(g)
        dcgan_init(d)
    if c.spectral_norm_d:
        add_spectral_norm(d)
    if c.spectral_norm_g:
        add_spectral_norm(g)
    return g, d


from . import pix2pix, variants  # noqa: F401,E402  (importing registers them)
