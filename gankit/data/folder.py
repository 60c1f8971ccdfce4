"""A folder of image files as a data set.

Layout: either images directly in ``data.dir`` (unlabelled, labels -1), or one sub-folder per class (labels follow the
sorted sub-folder names; images may sit deeper inside a class folder). A ``train/`` sub-folder next to ``test/`` or
``val/`` is a split: the split's folder is then read with the same rules. Hidden files and folders are skipped, files
with other extensions (notes.txt, .csv) are ignored, but a file with an image extension that does not decode is an
error: silently dropping images would change the data behind the user's back.

Every image is decoded with Pillow, flattened to 8-bit gray or RGB (alpha composited on white, palettes expanded,
16-bit scaled), its shorter side resized to ``data.image_size`` and center-cropped to a square (``data.resize``: or padded, or
stretched; gankit/data/fit.py; with ``data.image_height`` to that width x height instead), so the set is sized
here (registered with ``own_resize``) rather than by the generic tensor resize.
"""

from __future__ import annotations

import math
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
from .memmap import Alloc, CachePlan
from .registry import dataset
from .fit import fit_square, image_hw
from .safety import WalkGuard, walk_files

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_PROGRESS_OVER = 500  # files; below that decoding takes a moment and a bar is noise


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _images_below(folder: Path, guard: WalkGuard) -> list[Path]:
    """Image files anywhere below ``folder``, skipping hidden folders, in sorted (reproducible) order.

    Directory links are followed only within ``folder`` and never twice (see :func:`walk_files`), so a loop such as
    ``cls_a/up -> ..`` neither multiplies the images nor files another class's images under this one."""
    return list(walk_files(folder, guard, _is_image_file))


def _scan(root: Path, guard: WalkGuard) -> tuple[list[Path], dict[str, list[Path]]]:
    """(loose images directly in root, {class sub-folder name: its images}); sub-folders without images are skipped."""
    if not guard.enter_dir(root):  # a split folder linked out of the data root (or read already); also marks the
        return [], {}  # root as read, so a link back up to it is a loop
    loose = [p for p in sorted(root.iterdir()) if _is_image_file(p) and guard.claim_file(p)]
    classes = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _images_below(sub, guard)
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
    guard = WalkGuard.for_root(folder)
    scans = [(root, *_scan(root, guard)) for root in _split_roots(folder, split)]
    guard.note()
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


def _decode(
    path: Path, size: int | tuple[int, int], channels: int, fit: tuple[str, int] = ("crop", 0)
) -> tuple[np.ndarray, bool]:
    """One file -> ((H, W) or (H, W, 3) uint8, source is gray), H = W = ``size`` or (H, W) = ``size``, fitted per
    ``fit`` = (data.resize, data.pad_value). Any decoding failure names the file."""
    h, w = (size, size) if isinstance(size, int) else size
    try:
        with Image.open(path) as im:
            im.load()  # decode fully now, so truncation is caught here
            im = ImageOps.exif_transpose(im)  # camera photos are stored sideways with an orientation tag
            im, gray = _to_gray_or_rgb(im)
            if channels == 1 and not gray:
                im = im.convert("L")
            elif channels == 3 and gray:
                im = im.convert("RGB")
            return np.asarray(fit_square(im, (w, h), fit[0], fit[1])), gray
    except Exception as e:  # corrupt files fail in many ways (OSError, SyntaxError, ValueError, ...)
        raise GankitError(f"cannot decode image {path} ({type(e).__name__}: {e}); remove or replace the file") from e


def list_folder(cfg: DataConfig) -> tuple[Path, list[Path], list[int], list[str]]:
    """(folder, files, labels, class names) that 'folder' would decode for ``cfg``, ``cfg.limit`` applied."""
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
    return folder, files, labels, class_names


def decode_into(
    files: list[Path],
    size: int | tuple[int, int],
    channels: int,
    alloc: Alloc,
    desc: str,
    progress: bool = False,
    chunk: int = 256,
    fit: tuple[str, int] = ("crop", 0),
) -> np.ndarray:
    """Decode ``files`` one by one into ``alloc((N, C, size, size))`` uint8 (``size`` = (H, W): (N, C, H, W)) and
    return that array.

    C is ``channels`` when 1 or 3; when 0, 1 while every image so far is gray, widened once to 3 (a second
    ``alloc``, earlier rows copied as R = G = B) at the first colour image, so an all-gray set never takes 3x the
    space and a colour one pays for the widening only up to its first colour image. Nothing but the output and one
    chunk of decoded files is held in memory, so ``alloc`` can hand out a memory map larger than RAM.
    """
    n = len(files)
    hw = (size, size) if isinstance(size, int) else size
    out = alloc((n, channels if channels in (1, 3) else 1, *hw))
    show = progress or n > _PROGRESS_OVER
    # Pillow releases the GIL while decoding and resampling, so threads give a real speed-up on big folders.
    with (
        ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool,
        tqdm(
            total=n, desc=desc, unit="img", file=sys.stderr, disable=not show or not sys.stderr.isatty(), leave=False
        ) as bar,
    ):
        for start in range(0, n, chunk):  # bounded: at most one chunk of decoded images waits to be copied
            decoded = pool.map(lambda p: _decode(p, size, channels, fit), files[start : start + chunk])
            for i, (a, _gray) in enumerate(decoded, start):
                if a.ndim == 3 and out.shape[1] == 1:  # first colour image of an auto-channel folder
                    wide = alloc((n, 3, *hw))
                    for j in range(0, i, 4096):
                        wide[j : min(i, j + 4096)] = out[j : min(i, j + 4096)]  # gray -> RGB, as Pillow's L -> RGB
                    out = wide
                out[i] = a if a.ndim == 2 else a.transpose(2, 0, 1)  # (S, S) broadcasts over the channels
            bar.update(min(chunk, n - start))
    return out


def folder_fit(cfg: DataConfig) -> tuple[str, int]:
    """(resize mode, pad value) of a folder: data.resize, centre crop for auto; the pad value only matters for pad."""
    mode = "crop" if cfg.resize == "auto" else cfg.resize
    return mode, cfg.pad_value if mode == "pad" else 0


def folder_plan(cfg: DataConfig) -> CachePlan:
    """The 'folder' reader as a :class:`CachePlan`: listing done, decoding deferred to ``build``."""
    folder, files, labels, class_names = list_folder(cfg)
    channels = cfg.channels if cfg.channels in (1, 3) else 0
    settings = {
        "reader": "folder",
        "split": cfg.split,
        "image_size": cfg.image_size,
        "channels": channels,
        "limit": cfg.limit,
    }
    if cfg.image_height:  # non-square; square caches keep their keys
        settings["image_height"] = cfg.image_height
    fit = folder_fit(cfg)
    if fit != ("crop", 0):  # caches made before data.resize existed keep their keys
        settings.update(resize=fit[0], pad_value=fit[1])

    def build(alloc: Alloc) -> tuple[np.ndarray, np.ndarray, list[str]]:
        images = decode_into(files, image_hw(cfg), channels, alloc, f"caching {folder.name}", progress=True, fit=fit)
        return images, np.asarray(labels, np.int64), class_names

    nbytes = len(files) * (channels or 3) * math.prod(image_hw(cfg))  # an upper bound while the channels are unknown
    return CachePlan("folder", "folder", folder, files, settings, nbytes, build)


# gankit's recommended folder recipe beneath the user's config (configs/recommended/folder-64.yaml spells it out):
# 64x64, a DCGAN of 8 channels (the most steps per CPU minute that still draw well), no augmentation (with ADA FD was
# worse in 10 minutes, before and after its ops got faster; docs/notes/time-to-quality-round-7.md).
@dataset(
    "folder",
    own_resize=True,
    channels=0,
    num_classes=0,
    cache_plan=folder_plan,
    defaults={"data.image_size": 64, "model.g_channels": 8, "model.d_channels": 8, "train.augment": "none"},
)
def load_folder(cfg: DataConfig) -> ImageData:
    """The images under ``cfg.dir`` as uint8 (N, C, H, W): W = cfg.image_size, H = cfg.image_height or W.

    C is cfg.channels when that is 1 or 3, else 3 if any image is colour and 1 if all are gray. Labels (N,) int64 are
    class indices of the sorted sub-folder names, or -1 for an unlabelled folder. ``cfg.limit`` > 0 decodes only the
    first that many files (in sorted order).
    """
    folder, files, labels, class_names = list_folder(cfg)
    channels = cfg.channels if cfg.channels in (1, 3) else 0
    images = decode_into(
        files,
        image_hw(cfg),
        channels,
        lambda shape: np.empty(shape, np.uint8),
        f"decoding {folder.name}",
        fit=folder_fit(cfg),
    )
    return ImageData(torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64), "folder", class_names)
