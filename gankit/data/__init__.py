"""Data sets: a registry of readers that load a split into memory once, plus the common post-processing."""

from __future__ import annotations

from ..config.schema import DataConfig
from ..core.errors import GankitError
from .base import Batcher, ImageData, shard_indices, to_float, to_uint8
from .download import cache_dir
from .fit import image_hw
from .memmap import build_in_ram, choose_cache, load_or_build
from .registry import DATASETS
from .transforms import convert_channels, resize

# Importing the reader modules registers them.
from . import cifar, digits, folder, idx, paired, unpaired  # noqa: F401,E402

__all__ = ["DATASETS", "Batcher", "ImageData", "load_dataset", "shard_indices", "to_float", "to_uint8"]


def load_dataset(cfg: DataConfig) -> ImageData:
    """Load ``cfg.split`` of ``cfg.name`` as uint8 (N, C, H, W), converted to ``cfg.channels`` and resized to
    ``cfg.image_size`` (x ``cfg.image_height`` when set: a stretch, for sets that are square); ``limit`` keeps the
    first N images.

    ``cfg.cache`` chooses where the decoded images live: 'ram', 'memmap' (a cache file under the cache folder,
    decoded once and rebuilt when the source files change; see :mod:`gankit.data.memmap`), or 'auto' (memmap for
    sets over 1 GiB or 25% of available memory). Both give the same bytes.
    """
    spec = DATASETS.get(cfg.name)
    plan_of = spec.cache_plan
    data = None
    if cfg.cache != "ram":
        if plan_of is None and cfg.cache == "memmap":
            able = ", ".join(n for n, s in DATASETS.items() if s.cache_plan is not None)
            raise GankitError(
                f"data.cache=memmap is not available for data set '{cfg.name}' (only {able}); use data.cache=ram"
            )
        if plan_of is not None:
            plan = plan_of(cfg)
            if choose_cache(cfg.cache, plan.nbytes) == "memmap":
                data = load_or_build(plan, cache_dir(cfg.cache_dir))
                if len(data) == 0:
                    raise GankitError(f"data set '{cfg.name}' split '{cfg.split}' has no images")
                if cfg.limit and len(data) > cfg.limit:  # readers that list files apply the limit themselves
                    data = data.subset(slice(0, cfg.limit))  # a view: still mapped
                return data
            if spec.own_resize:  # listed already: decode that listing rather than list the folder again
                data = build_in_ram(plan)
    if data is None:
        data = spec.load(cfg)
    if cfg.limit:
        data = data.subset(slice(0, cfg.limit))
    if len(data) == 0:
        raise GankitError(f"data set '{cfg.name}' split '{cfg.split}' has no images")
    if DATASETS.get(cfg.name).own_resize:  # folder readers size and convert while decoding
        return data
    images = resize(convert_channels(data.images, cfg.channels), image_hw(cfg))
    return ImageData(images, data.labels, data.name, data.class_names, data.targets)
