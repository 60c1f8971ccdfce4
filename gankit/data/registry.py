"""The data-set registry: a name maps to a :class:`DataSpec` (its reader and what gankit needs to know about it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.schema import DataConfig
from ..core.registry import Registry
from .base import ImageData


@dataclass(frozen=True)
class DataSpec:
    load: Callable[[DataConfig], ImageData]  # the split's images at their native size (or final size: own_resize)
    channels: int = 0  # of the stored images; 0 = known only after reading (image folders)
    num_classes: int = 0
    paired: bool = False  # images come with targets (image-to-image)
    input_channels: int = 0  # paired sets whose inputs differ in channels from the targets (0 = same)
    own_resize: bool = False  # the reader sizes and converts while decoding
    distinct_val: bool = False  # 'val' and 'test' are different files
    embedded: bool = False  # ships with gankit (no download, no folder)
    default_epochs: float = 20  # budget when the user gives none
    defaults: Mapping[str, Any] = field(default_factory=dict)  # dotted config keys suggested for this data set
    cache_plan: Callable[[DataConfig], Any] | None = None  # DataConfig -> memmap.CachePlan, for data.cache=memmap


DATASETS: Registry[DataSpec] = Registry("data set", DataSpec)


def dataset(name: str, **spec: Any) -> Callable[[Callable[[DataConfig], ImageData]], Callable[[DataConfig], ImageData]]:
    """Decorator: register a reader function under ``name`` with :class:`DataSpec` fields ``spec``."""

    def deco(fn: Callable[[DataConfig], ImageData]) -> Callable[[DataConfig], ImageData]:
        DATASETS.add(name, DataSpec(load=fn, **spec))
        return fn

    return deco
