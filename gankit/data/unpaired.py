"""Unpaired (two-domain) data for CycleGAN: folders of unrelated A and B images, and the embedded ``sketch_unpaired``.

Both readers return one :class:`ImageData` holding both domains: ``images`` = the A images and the B images, uint8
(N_A + N_B, C, S, S), ``labels`` = the domain (0 = A, 1 = B), ``class_names`` = ["A", "B"]. The two domains may have
different counts; they share C (3 when any image of either domain is colour, 1 when all are gray, or
``data.channels``), because each generator's output is the other's input. Rows alternate A, B, A, B, ... while both
domains last, so ``data.limit=N`` keeps about N / 2 images of each.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config.schema import DataConfig
from ..core.errors import GankitError
from .base import ImageData
from .fit import fit_square
from .folder import IMAGE_EXTENSIONS
from .paired import MAX_INPUT_BYTES, _decode, _stack, load_sketch
from .registry import dataset
from .safety import list_user_folder, open_user_file, refused_line

DOMAINS = ("A", "B")
UNPAIRED_SETS = frozenset({"unpaired", "sketch_unpaired"})  # the data sets model cyclegan trains on
MIN_SIDE = 8  # px; smaller images carry nothing to translate
_LAYOUT_HINT = (
    "expected A/ and B/ folders of images (any counts, no matching names), or trainA/ trainB/ with "
    "testA/ testB/ (or valA/ valB/) as the CycleGAN data sets ship"
)


def domain_mask(data: ImageData, domain: int) -> torch.Tensor:
    """Row indices (int64) of ``data``'s images of ``domain`` (0 = A, 1 = B), in order."""
    return (data.labels == domain).nonzero().flatten()


def interleave(a: int, b: int) -> list[tuple[int, int]]:
    """(domain, index) for a + b images: A0, B0, A1, B1, ... while both last, then the rest of the longer."""
    out = []
    for i in range(max(a, b)):
        if i < a:
            out.append((0, i))
        if i < b:
            out.append((1, i))
    return out


def _join(a: torch.Tensor, b: torch.Tensor, name: str, limit: int) -> ImageData:
    """A (N_A, C, S, S) and B (N_B, C, S, S) uint8 -> one ImageData, rows interleaved, at most ``limit`` (0 = all)."""
    order = interleave(a.shape[0], b.shape[0])
    if limit:
        order = order[:limit]
    doms = torch.tensor([d for d, _ in order], dtype=torch.int64)
    ia = torch.tensor([i for d, i in order if d == 0], dtype=torch.int64)
    ib = torch.tensor([i for d, i in order if d == 1], dtype=torch.int64)
    images = torch.empty((len(order), *a.shape[1:]), dtype=torch.uint8)
    images[doms == 0] = a[ia]
    images[doms == 1] = b[ib]
    return ImageData(images.contiguous(), doms, name, list(DOMAINS))


# ---------------------------------------------------------------------------------------------------------------------
# folders


def _domain_dirs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(A folder, B folder) pairs that make up ``split``: A/ + B/ (only 'train'), or trainA/ + trainB/ and testA/ +
    testB/ (valA/ + valB/; 'val' and 'test' fall back to each other)."""

    def pair(a: Path, b: Path) -> tuple[Path, Path] | None:
        if a.is_dir() != b.is_dir():
            have, miss = (a, b) if a.is_dir() else (b, a)
            raise GankitError(
                f"data.dir {root}: {have}/ exists but {miss}/ does not; unpaired data needs both "
                f"domains ({_LAYOUT_HINT})"
            )
        return (a, b) if a.is_dir() else None

    plain = pair(root / "A", root / "B")
    splits = {s: p for s in ("train", "val", "test") if (p := pair(root / f"{s}A", root / f"{s}B"))}
    if plain is None and not splits:
        raise GankitError(f"data.dir {root} has no A/ and B/ folders; {_LAYOUT_HINT}")
    if plain is not None:
        if split in ("train", "all"):
            return [plain]
        raise GankitError(
            f"data.dir {root} has A/ and B/ only, so it has only data.split=train; add testA/ and "
            f"testB/ folders, or keep images aside with data.holdout=N"
        )
    if split == "all":
        return list(splits.values())
    if split in splits:
        return [splits[split]]
    other = {"val": "test", "test": "val"}.get(split)
    if other in splits:
        return [splits[other]]
    raise GankitError(
        f"data.dir {root} has no {split}A/ and {split}B/ folders (found: {', '.join(f'{s}A/ {s}B/' for s in splits)})"
    )


def _list_domain(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (sorted); an entry gankit will not read (a FIFO, a device, a link out
    of the folder) or an empty folder is a one-line error."""
    files, refused = list_user_folder(folder, lambda name: Path(name).suffix.lower() in IMAGE_EXTENSIONS)
    if refused:
        raise GankitError(
            f"{folder}: {len(refused)} entr{'y' if len(refused) == 1 else 'ies'} not read: "
            f"{refused_line(refused)}; move {'it' if len(refused) == 1 else 'them'} out of the folder"
        )
    if not files:
        raise GankitError(
            f"{folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); unpaired data needs "
            f"images in both A and B"
        )
    return files


def _read(path: Path, root: Path, cfg: DataConfig) -> np.ndarray:
    """One image, opened safely (a regular file inside ``root``), decoded as the folder reader does, its shorter side
    resized and centre-cropped (``data.resize``) to image_size: uint8 (S, S) or (S, S, 3)."""
    with open_user_file(path, "image", root=root, max_bytes=MAX_INPUT_BYTES) as f:
        im = _decode(path, cfg.channels, f)
    if min(im.size) < MIN_SIDE:
        raise GankitError(
            f"{path}: the image is {im.size[0]}x{im.size[1]} px; unpaired images must be at least {MIN_SIDE}x{MIN_SIDE}"
        )
    mode = "crop" if cfg.resize == "auto" else cfg.resize
    return np.asarray(
        fit_square(im, cfg.image_size, mode, cfg.pad_value if mode == "pad" else 0, Image.Resampling.BICUBIC), np.uint8
    )


@dataset(
    "unpaired",
    own_resize=True,
    channels=3,
    default_epochs=20,
    distinct_val=True,
    defaults={
        "model.name": "cyclegan",
        "loss.name": "lsgan",
        "optim.lr_decay": "linear",
        "data.image_size": 64,
        "train.batch_size": 1,
        "model.g_channels": 32,
        "model.d_channels": 32,
        "train.channels_last": False,
    },
)
def load_unpaired(cfg: DataConfig) -> ImageData:
    """Two folders of unrelated images under ``cfg.dir``: ``A/`` and ``B/`` (split 'train'), or ``trainA/``,
    ``trainB/`` with ``testA/``, ``testB/`` or ``valA/``, ``valB/`` (the layout of the CycleGAN data sets). The
    domains may hold different counts and nothing matches by name. Images sit directly in each folder; each is
    decoded as the folder reader decodes (EXIF rotation, transparency on white, 16-bit scaled), its shorter side
    resized to ``cfg.image_size`` and centre-cropped (``data.resize``). See the module docstring for the result."""
    if cfg.dir is None:
        raise GankitError(f"data set 'unpaired' needs data.dir (--data-dir DIR); {_LAYOUT_HINT}")
    root = Path(cfg.dir).expanduser()
    if not root.is_dir():
        raise GankitError(f"data.dir {root} is not a folder; {_LAYOUT_HINT}")
    files: list[list[Path]] = [[], []]
    for pair in _domain_dirs(root, cfg.split):
        for d, folder in enumerate(pair):
            files[d] += _list_domain(folder)
    order = interleave(len(files[0]), len(files[1]))
    if cfg.limit:  # decode only what data.limit keeps
        order = order[: cfg.limit]
    keep = [[files[d][i] for dd, i in order if dd == d] for d in (0, 1)]
    if not keep[0] or not keep[1]:
        raise GankitError(f"data.limit={cfg.limit} leaves no image of domain {'A' if not keep[0] else 'B'}; raise it")
    # Pillow releases the GIL while decoding and resampling, so threads give a real speed-up on big folders.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        sides = list(pool.map(lambda p: _read(p, root, cfg), keep[0] + keep[1]))
    both = _stack(sides)  # (N, C, S, S); C = 1 only when every image of both domains is gray
    return _join(both[: len(keep[0])], both[len(keep[0]) :], "unpaired", 0)


# ---------------------------------------------------------------------------------------------------------------------
# the embedded default: the sketch set's two domains with the pairing broken


@dataset(
    "sketch_unpaired",
    own_resize=True,
    channels=3,
    embedded=True,
    default_epochs=20,
    defaults={
        "model.name": "cyclegan",
        "loss.name": "lsgan",
        "optim.lr_decay": "linear",
        "data.image_size": 32,
        "train.batch_size": 4,
        "model.g_channels": 16,
        "model.d_channels": 16,
        "model.g_blocks": 3,
        "train.channels_last": False,
    },
)
def load_sketch_unpaired(cfg: DataConfig) -> ImageData:
    """The embedded unpaired default: pencil sketches (A) and colour crops (B) from the paired ``sketch`` set, with
    the pairing broken: A holds the sketches of the first half of the split's crops, B the colours of the second
    half, so no B image is the colouring of any A image (train: 300 + 300, val = test: 50 + 50; 'all' joins them).
    Sketches are stored as 3 equal channels, so both domains are RGB (C = 3) unless ``data.channels`` is 1."""
    from dataclasses import replace

    parts = ["train", "val"] if cfg.split == "all" else ["val" if cfg.split == "test" else cfg.split]
    a_parts, b_parts = [], []
    for split in parts:
        pairs = load_sketch(replace(cfg, split=split, direction="AtoB", channels=cfg.channels or 3, limit=0))
        half = len(pairs) // 2
        a_parts.append(pairs.images[:half])
        b_parts.append(pairs.targets[half:])  # type: ignore[index]
    return _join(torch.cat(a_parts), torch.cat(b_parts), "sketch_unpaired", cfg.limit)
