"""The embedded default: scikit-learn's bundled 1,797 handwritten 8x8 digits (no network needed)."""

from __future__ import annotations

import numpy as np
import torch

from ..config.schema import DataConfig
from .base import ImageData
from .registry import dataset


# 8x8 digits carry little detail: a DCGAN of half the paper's width learns them as well, twice as fast.
@dataset(
    "digits",
    channels=1,
    num_classes=10,
    embedded=True,
    default_epochs=100,
    defaults={"model.g_channels": 32, "model.d_channels": 32},
)
def load_digits_data(cfg: DataConfig) -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8) in [0, 16]
    x = np.round(x * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    # sklearn has no split; a fixed 80/20 cut by index keeps 'test' disjoint from 'train'.
    n_train = int(len(x) * 0.8)
    sl = {"train": slice(0, n_train), "test": slice(n_train, None), "val": slice(n_train, None), "all": slice(None)}[
        cfg.split
    ]
    return ImageData(
        torch.from_numpy(x[sl]).contiguous(), torch.from_numpy(y[sl]), "digits", [str(i) for i in range(10)]
    )
