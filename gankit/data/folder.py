"""A folder of image files as a data set.

Layout: either images directly in ``data.dir`` (unlabelled, labels -1), or one sub-folder per class (labels follow the
sorted sub-folder names; images may sit deeper inside a class folder). A ``train/`` sub-folder next to ``test/`` or
``val/`` is a split: the split's folder is then read with the same rules. Hidden files and folders are skipped, files
with other extensions (notes.txt, .csv) are ignored, but a file with an image extension that does not decode is an
error: silently dropping images would change the data behind the user's back.

Every image is decoded with Pillow, flattened to 8-bit gray or RGB (alpha composited on white, palettes expanded,
16-bit scaled), its shorter side resized to ``data.image_size`` and center-cropped to a square, so the set is sized
here (registered with ``own_resize``) rather than by the generic tensor resize.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from ..config.schema import DataConfig
from ..core.errors import GankitError
from .base import ImageData
from .registry import dataset

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_PROGRESS_OVER = 500  # files; below that decoding takes a moment and a bar is noise


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _images_below(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder``, skipping hidden folders, in sorted (reproducible) order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if _is_image_file(Path(dirpath) / f)]
    return found


def _scan(root: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    """(loose images directly in root, {class sub-folder name: its images}); sub-folders without images are skipped."""
    loose = sorted(p for p in root.iterdir() if _is_image_file(p))
    classes = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _images_below(sub)
        if files:
            classes[sub.name] = files
    return loose, classes


def _split_roots(folder: Path, split: str) -> list[Path]:
    """The folders that make up ``split``: train/ and test/ (or val/) when the folder is split, else the folder."""
    held_out = [folder / n for n in (("val", "test") if split == "val" else ("test", "val")) if (folder / n).is_dir()]
    if (folder / "train").is_dir() and held_out:
        if split == "train":
            return [folder / "train"]
        return held_out[:1] if split in ("test", "val") else [folder / "train", *held_out]
    if split in ("test", "val"):
        raise GankitError(
            f"data.split={split} needs {folder / 'train'} and {folder / 'test'} (or val) sub-folders, and {folder} has "
            f"none; use data.split=all with data.holdout=N to keep N images out of training"
        )
    return [folder]


def _list_files(folder: Path, split: str) -> tuple[list[Path], list[int], list[str]]:
    """(files, labels, class names) for the split; labels are -1 and class names empty for an unlabelled folder."""
    scans = [(root, *_scan(root)) for root in _split_roots(folder, split)]
    class_names = sorted({name for _, _, classes in scans for name in classes})
    files: list[Path] = []
    labels: list[int] = []
    for root, loose, classes in scans:
        if class_names and loose:
            raise GankitError(
                f"{root} has both class sub-folders and loose images (e.g. {loose[0].name}); move the loose images "
                f"into a class folder or remove them"
            )
        files += loose
        labels += [-1] * len(loose)
        for name, paths in classes.items():
            files += paths
            labels += [class_names.index(name)] * len(paths)
    return files, labels, class_names


def _to_gray_or_rgb(im: Image.Image) -> tuple[Image.Image, bool]:
    """Any Pillow mode -> ('L' or 'RGB' image, whether the source is gray). Alpha is composited on white."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow's own convert('L') clips these to 0..255 instead of scaling; scale 16-bit range down ourselves.
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.size and a.max() > 255):
            a = a / 257.0  # 65535 -> 255
        elif mode == "F" and a.size and a.max() <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L"), True
    gray = mode in _GRAY_MODES
    if mode == "P":
        palette = np.asarray(im.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        gray = bool((palette == palette[:, :1]).all())  # a gray palette (common in GIFs) stays 1-channel
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if gray:
        return im.convert("L"), True
    return im.convert("RGB"), False  # RGB, CMYK, YCbCr, LAB, HSV, colour palettes


def _fit_square(im: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and center-crop to size x size, in one resampling step."""
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) / 2, (h - s) / 2
    return im.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + s, top + s), reducing_gap=3.0)


def _decode(path: Path, size: int, channels: int) -> tuple[np.ndarray, bool]:
    """One file -> ((size, size) or (size, size, 3) uint8, source is gray). Any decoding failure names the file."""
    try:
        with Image.open(path) as im:
            im.load()  # decode fully now, so truncation is caught here
            im = ImageOps.exif_transpose(im)  # camera photos are stored sideways with an orientation tag
            im, gray = _to_gray_or_rgb(im)
            if channels == 1 and not gray:
                im = im.convert("L")
            elif channels == 3 and gray:
                im = im.convert("RGB")
            return np.asarray(_fit_square(im, size)), gray
    except Exception as e:  # corrupt files fail in many ways (OSError, SyntaxError, ValueError, ...)
        raise GankitError(f"cannot decode image {path} ({type(e).__name__}: {e}); remove or replace the file") from e


@dataset("folder", own_resize=True, channels=0, num_classes=0)  # 0: known only after reading the folder
def load_folder(cfg: DataConfig) -> ImageData:
    """The images under ``cfg.dir`` as uint8 (N, C, S, S) with S = cfg.image_size.

    C is cfg.channels when that is 1 or 3, else 3 if any image is colour and 1 if all are gray. Labels (N,) int64 are
    class indices of the sorted sub-folder names, or -1 for an unlabelled folder. ``cfg.limit`` > 0 decodes only the
    first that many files (in sorted order).
    """
    if cfg.dir is None:
        raise GankitError("data 'folder' needs --data-dir DIR pointing at a folder of images")
    folder = Path(cfg.dir).expanduser()
    if not folder.is_dir():
        raise GankitError(f"data 'folder': {folder} is not a folder; point --data-dir at a folder of images")
    files, labels, class_names = _list_files(folder, cfg.split)
    if cfg.limit:
        files, labels = files[: cfg.limit], labels[: cfg.limit]
    if not files:
        raise GankitError(
            f"no images in {folder} for split '{cfg.split}' (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}); "
            f"point --data-dir at a folder of images"
        )
    channels = cfg.channels if cfg.channels in (1, 3) else 0

    # Pillow releases the GIL while decoding and resampling, so threads give a real speed-up on big folders.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(
            tqdm(
                pool.map(lambda p: _decode(p, cfg.image_size, channels), files),
                total=len(files),
                desc=f"decoding {folder.name}",
                unit="img",
                file=sys.stderr,
                disable=len(files) <= _PROGRESS_OVER or not sys.stderr.isatty(),
                leave=False,
            )
        )
    if channels == 0:
        channels = 1 if all(gray for _, gray in decoded) else 3
    arrays = [a if a.ndim == 3 or channels == 1 else np.repeat(a[:, :, None], 3, axis=2) for a, _ in decoded]
    images = np.stack(arrays)  # (N, S, S) or (N, S, S, 3)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return ImageData(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.tensor(labels, dtype=torch.int64),
        "folder",
        class_names,
    )
