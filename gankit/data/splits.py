"""Which images a run trains on, validates on and is compared with: one definition for training and `gankit eval`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from ..config.schema import Config, DataConfig
from ..core.errors import GankitError
from . import load_dataset
from .base import ImageData
from .registry import DATASETS


def holdout_split(data: ImageData, n: int) -> tuple[ImageData, ImageData]:
    """(training part, held-out part) of ``data``: the held-out ``n`` images are a fixed random choice (seed 0), not
    the tail, because standard splits are often ordered (MNIST's test set puts one writer population first)."""
    if not 0 < n < len(data):
        raise GankitError(f"data.holdout={n} must leave images on both sides (the split has {len(data)})")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    keep, held = perm[: len(data) - n].sort().values, perm[len(data) - n :].sort().values
    return data.subset(keep), data.subset(held)


def holdout_only(cfg: Config, data: ImageData, say: Callable[[str], None]) -> tuple[ImageData, ImageData | None]:
    """``data.holdout=N`` keeps a fixed random N images of the split out of training; without it, no validation."""
    return holdout_split(data, cfg.data.holdout) if cfg.data.holdout else (data, None)


def holdout_or_val(cfg: Config, data: ImageData, say: Callable[[str], None]) -> tuple[ImageData, ImageData | None]:
    """As :func:`holdout_only`, but without a holdout, training on 'train' validates on the data set's 'val' split,
    or, when it has none, on a fixed random 10% (at most 100) of the images."""
    if cfg.data.holdout or cfg.data.split != "train":
        return holdout_only(cfg, data, say)
    try:
        return data, load_dataset(replace(cfg.data, split="val", limit=0))
    except GankitError:
        n = max(1, min(100, len(data) // 10))
        if n >= len(data):
            raise GankitError(
                f"data '{cfg.data.name}' has {len(data)} pair(s): too few to train and validate"
            ) from None
        say(
            f"note: data '{cfg.data.name}' has no val split; validating on a fixed random {n} of its pairs "
            f"(set data.holdout to choose how many)"
        )
        return holdout_split(data, n)


# Splits that name the same files for every reader but those with ``distinct_val`` (paired val/ and test/ folders).
SAME_FILES = {frozenset({"val", "test"})}


def _overlap(a: str, b: str, data_name: str) -> bool:
    if a == b or "all" in (a, b):
        return True
    return frozenset({a, b}) in SAME_FILES and not DATASETS.get(data_name).distinct_val


def reference_data(cfg: Config, split: str | None = None) -> tuple[ImageData, ImageData]:
    """(training images, comparison images) for a run's config. With ``data.holdout`` the run's own held-out images
    are the comparison set; otherwise the data set's ``split`` (default 'test')."""
    run_split = load_dataset(cfg.data)
    if cfg.data.holdout and split is None:
        return holdout_split(run_split, cfg.data.holdout)
    if cfg.data.holdout:
        run_split = holdout_split(run_split, cfg.data.holdout)[0]
    other = split or "test"
    if _overlap(other, cfg.data.split, cfg.data.name):
        raise GankitError(
            f"the run trained on split '{cfg.data.split}', which holds the '{other}' images, so comparing with them "
            f"measures memorisation; pass --split with a disjoint split, or train with data.holdout=N to keep images aside"
        )
    return run_split, load_dataset(replace(cfg.data, split=other, limit=0))


def classifier_and_reference(data: str, base: DataConfig, split: str) -> tuple[ImageData, ImageData, str]:
    """(images that train the classifier, reference images, a sentence naming the former) for scoring samples
    against split ``split`` of data set ``data``.

    The data set's 'train' split trains the classifier when it exists and holds none of the reference images. When it
    is missing (a folder with only the test files) or overlaps ``split``, the one split is cut in two (a fixed random
    half, seed 0, as :func:`holdout_split` cuts): the classifier never sees the images the samples are compared with,
    since features fitted to the reference would make it look closer than other real images."""
    reference = load_dataset(replace(base, split=split, limit=0))
    if not _overlap(split, "train", data):
        try:
            train = load_dataset(replace(base, split="train", limit=0))
            return train, reference, f"{data} 'train' split ({len(train)} images)"
        except GankitError:
            pass  # only the one split is present: cut it below
    n = len(reference)
    if n < 4:
        raise GankitError(f"data '{data}' split '{split}' has {n} image(s): too few to train a classifier and compare")
    train, reference = holdout_split(reference, n // 2)
    return (
        train,
        reference,
        (
            f"{data} '{split}' split, a fixed random {len(train)} of its {n} images (seed 0); "
            f"the other {len(reference)} are the reference"
        ),
    )
