from __future__ import annotations

from collections.abc import Callable

from ..config import DataConfig
from ..registry import Registry
from .base import ImageData

# name -> loader(cfg) returning the split's images at their native size; meta: channels, num_classes, paired, ...
DATASETS: Registry[Callable[[DataConfig], ImageData]] = Registry("data set")
