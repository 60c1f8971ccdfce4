"""Data sets: a registry of readers that load a split into memory once, plus the common post-processing."""

from __future__ import annotations

from ..config.schema import DataConfig
from ..core.errors import GankitError
from .base import Batcher, ImageData, to_float, to_uint8
from .registry import DATASETS
from .transforms import convert_channels, resize

# Importing the reader modules registers them.
from . import cifar, digits, folder, idx, paired  # noqa: F401,E402

__all__ = ["DATASETS", "Batcher", "ImageData", "load_dataset", "to_float", "to_uint8"]


def load_dataset(cfg: DataConfig) -> ImageData:
    """Load ``cfg.split`` of ``cfg.name`` as uint8 (N, C, H, W), converted to ``cfg.channels`` and resized to
    ``cfg.image_size``; ``limit`` keeps the first N images."""
    data = DATASETS.get(cfg.name).load(cfg)
    if cfg.limit:
        data = data.subset(slice(0, cfg.limit))
    if len(data) == 0:
        raise GankitError(f"data set '{cfg.name}' split '{cfg.split}' has no images")
    if DATASETS.get(cfg.name).own_resize:  # folder readers size and convert while decoding
        return data
    images = resize(convert_channels(data.images, cfg.channels), cfg.image_size)
    return ImageData(images, data.labels, data.name, data.class_names, data.targets)
