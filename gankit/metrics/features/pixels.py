"""``pixels`` features: images shrunk and flattened, for data without labels where no trained network is at hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...data.base import ImageData
from ...data.transforms import resize
from .base import FEATURES, FeatureExtractor


class PixelFeatures(FeatureExtractor):
    """Images resized to size x size, flattened, in [0, 1]: a weights-free feature space for data without labels
    (paired image-to-image data), where neither a domain classifier nor Inception is at hand."""

    name = "pixels"
    resize = "antialiased resize to 16x16"

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.identity = f"pixels-{size}"
        self.dim = 0  # set on first use: size * size * channels
        self.num_classes = 0

    def extract(self, images: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        x = resize(images, self.size).to(torch.float32).div_(255.0).flatten(1)
        self.dim = int(x.shape[1])
        return x.numpy(), None


@FEATURES.register("pixels")
def _pixels(train: ImageData | None = None, **_: Any) -> FeatureExtractor:
    return PixelFeatures()
