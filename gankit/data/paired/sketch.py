"""The embedded pix2pix default ``sketch``: pencil sketch -> colour crops of scikit-learn's two sample photos, made
on the fly (no network, no cache), with validation crops from a strip of each photo that training never sees."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from ...config.schema import DataConfig
from ..base import ImageData
from ..registry import dataset
from .readers import _finish

SKETCH_TRAIN, SKETCH_VAL = 600, 100
# Validation crops come only from this vertical strip (fractions of the width) of each photo and training crops only
# from outside it, so no validation pixel is ever trained on. 50-70% runs through the pagoda's eaves, the lake and a
# tree in china.jpg and through the dahlia in flower.jpg: the right-most strip would be mostly plain background.
SKETCH_VAL_STRIP = (0.5, 0.7)
SKETCH_CROP = (64, 128)  # crop sides in photo pixels, drawn log-uniformly; all fit in the strip and beside it
SHADE = 0.6  # the darkest tone of the sketch's shading wash (1 = no shading, line art only)


def sketch_of(rgb: np.ndarray) -> np.ndarray:
    """A shaded pencil sketch of colour images: uint8 (N, H, W, 3) -> uint8 (N, H, W), light paper with dark lines.

    Colour-dodge of the grayscale image with its blurred negative (gray / (1 - blur(1 - gray))) leaves flat regions
    white and edges dark, like graphite; squaring darkens the strokes. A light tone wash (the blurred luma, mapped to
    [SHADE, 1]) is multiplied in, as an artist shades a tonal sketch: without it a flat dark background and a flat
    bright sky are the same blank paper, and no model could tell which colour to paint. The blur's sigma is H / 32,
    so a crop looks the same at every image size."""
    sigma = rgb.shape[1] / 32
    out = np.empty(rgb.shape[:3], np.uint8)
    # Per image: small arrays stay in cache, faster than whole-batch numpy (docs/notes/code-comments.md).
    for i, im in enumerate(rgb):
        g = Image.fromarray(im).convert("L")  # ITU-R 601 luma
        # Pillow's Gaussian (three box blurs) costs the same at any sigma, where scipy's exact one grows with it and
        # was much slower at 256 px (docs/notes/code-comments.md).
        blurred = np.asarray(ImageOps.invert(g).filter(ImageFilter.GaussianBlur(sigma)), np.float32)
        denom = np.maximum(255.0 - blurred, 0.255)  # 255 * (1 - blur(1 - gray))
        dodge = np.minimum(np.asarray(g, np.float32) / denom, 1.0)
        wash = SHADE + (1.0 - SHADE) * (255.0 - blurred) / 255.0  # blurred luma: tone without detail
        out[i] = np.rint(dodge * dodge * wash * 255.0)
    return out


def sketch_regions(width: int = 640) -> dict[str, list[tuple[int, int]]]:
    """The x-ranges [x0, x1) of a photo of ``width`` px that the 'train' and 'val' crops lie in."""
    x0, x1 = (int(round(width * f)) for f in SKETCH_VAL_STRIP)
    return {"train": [(0, x0), (x1, width)], "val": [(x0, x1)]}


def sketch_boxes(split: str, shapes: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """The crops of ``split`` ('train' or 'val'): (photo index, x, y, side), alternating over photos of ``shapes``
    (H, W), each inside one region of :func:`sketch_regions`; fixed by the split's own seed."""
    val = split == "val"
    n, seed = (SKETCH_VAL, 2) if val else (SKETCH_TRAIN, 1)
    rng = np.random.default_rng(seed)
    lo, hi = SKETCH_CROP
    boxes = []
    for i in range(n):
        k = i % len(shapes)
        h, w = shapes[k]
        regions = sketch_regions(w)["val" if val else "train"]
        widths = np.array([x1 - x0 for x0, x1 in regions], np.float64)
        x0, x1 = regions[int(rng.choice(len(regions), p=widths / widths.sum()))]
        s = int(round(math.exp(rng.uniform(math.log(lo), math.log(min(hi, x1 - x0, h))))))
        boxes.append((k, int(rng.integers(x0, x1 - s + 1)), int(rng.integers(0, h - s + 1)), s))
    return boxes


def _sketch_crops(photos: list[np.ndarray], boxes: list[tuple[int, int, int, int]], size: int) -> np.ndarray:
    """Colour crops (n, size, size, 3) uint8, resized (bicubic) from the boxes of :func:`sketch_boxes`."""
    pil = [Image.fromarray(p) for p in photos]
    return np.stack(
        [
            np.asarray(pil[k].resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + s, y + s)), np.uint8)
            for k, x, y, s in boxes
        ]
    )


@dataset(
    "sketch",
    paired=True,
    own_resize=True,
    channels=3,
    input_channels=1,
    embedded=True,
    default_epochs=60,
    defaults={
        "data.image_size": 64,
        "train.batch_size": 8,
        "model.g_channels": 32,
        "model.d_channels": 32,
        "train.channels_last": False,
    },
)
def load_sketch(cfg: DataConfig) -> ImageData:
    """The embedded pix2pix default: pencil sketch (1 channel) -> colour crop (3 channels), no network, no cache.

    Square crops of 64-128 px at random positions (fixed seeds) from the two photos bundled with scikit-learn
    (china.jpg and flower.jpg, 427x640), resized (bicubic) to ``cfg.image_size``: 100 for 'val' (= 'test') from the
    vertical strip 50-70% across each photo, 600 for 'train' from the rest, so validation pixels were never trained
    on (:func:`sketch_regions`); 'all' joins both. Input: :func:`sketch_of` the crop, uint8 (N, 1, S, S), one
    channel because a sketch has no colour; target: the crop, uint8 (N, 3, S, S). ``cfg.channels`` (1 or 3) converts
    both sides; ``direction: BtoA`` swaps them (colour -> sketch).
    """
    from sklearn.datasets import load_sample_images

    from ..transforms import convert_channels

    photos = [np.asarray(p) for p in load_sample_images().images]
    shapes = [p.shape[:2] for p in photos]
    boxes = []
    if cfg.split in ("train", "all"):
        boxes += sketch_boxes("train", shapes)
    if cfg.split in ("val", "test", "all"):
        boxes += sketch_boxes("val", shapes)
    rgb = _sketch_crops(photos, boxes, cfg.image_size)
    a = torch.from_numpy(sketch_of(rgb)[:, None]).contiguous()  # (N, 1, S, S)
    b = torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    if cfg.channels:
        a, b = convert_channels(a, cfg.channels), convert_channels(b, cfg.channels)
    return _finish(a, b, "sketch", cfg)
