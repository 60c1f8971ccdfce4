"""What every feature extractor is (:class:`FeatureExtractor`: uint8 images -> features and class probabilities),
the :data:`FEATURES` registry they are built from, and the cache folder that keeps their weights."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.errors import GankitError
from ...core.registry import Registry
from ...data.base import ImageData
from ...data.download import cache_dir as data_cache_dir
from ..protocols import PROTOCOLS


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """gankit's cache folder: ``cache_dir`` if given, else $GANKIT_CACHE, else ~/.cache/gankit (as downloads use)."""
    return data_cache_dir(None if cache_dir is None else str(cache_dir))


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


class FeatureExtractor(ABC):
    """uint8 images -> (features (N, F) float32, class probabilities (N, K) float64 or None)."""

    name: str  # the registry name
    identity: str  # pins the weights that made the features
    dim: int  # F
    num_classes: int  # K (0 when the extractor gives no probabilities)
    batch_size: int = 256  # images per forward pass unless the caller says otherwise
    protocol: str = "native"  # how images reach the network (FID protocols: gankit.metrics.protocols)
    resize: str = "none"  # that resize, in words, as results record it

    @abstractmethod
    def extract(self, images: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """images: uint8 (N, C, H, W) in [0, 255], any size. Returns features (N, F), probabilities (N, K) or None."""

    def __call__(self, images: torch.Tensor, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (N, F) float32 and probabilities (N, K) float64 (or None) of uint8 images (N, C, H, W)."""
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise GankitError(f"feature extraction needs uint8 images (N, C, H, W), got {got}")
        with torch.inference_mode():
            return self.extract(images.cpu(), batch_size or self.batch_size)

    def info(self) -> dict[str, Any]:
        """JSON-ready description for results files."""
        return {
            "name": self.name,
            "identity": self.identity,
            "dim": self.dim,
            "num_classes": self.num_classes,
            "protocol": self.protocol,
            "resize": self.resize,
        }


# A builder takes the labelled training data (None when the extractor needs none) and where to find or keep weights.
Builder = Callable[..., FeatureExtractor]
FEATURES: Registry[Builder] = Registry("feature extractor")


def build_extractor(
    name: str,
    train: ImageData | None = None,
    inception_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    protocol: str | None = None,
) -> FeatureExtractor:
    """The extractor registered as ``name``; ``train`` is needed by ``classifier``, ``inception_path`` by ``inception``
    when the file is not in the cache; ``protocol`` (an FID protocol name) only applies to ``inception``."""
    builder = FEATURES.get(name)
    if protocol is None:
        return builder(train=train, inception_path=inception_path, cache_dir=cache_dir, progress=progress)
    PROTOCOLS.get(protocol)  # an unknown name is a one-line error before any network is loaded
    if name != "inception":
        raise GankitError(
            f"--protocol {protocol} names how images reach the Inception network; use it with "
            f"--features inception (the {name} features have a resize of their own)"
        )
    return builder(
        train=train, inception_path=inception_path, cache_dir=cache_dir, progress=progress, protocol=protocol
    )
