"""Paired (image-to-image) data from folders: A/B pairs side by side or in A/ and B/ folders, and one image read the
way pairs are (what `gankit translate` feeds a model).

:func:`load_paired` returns :class:`ImageData` with ``images`` = the input (condition) side and ``targets`` = what G
must produce, uint8 (N, C, S, S) with S = ``data.image_size``, after ``data.direction`` is applied (BtoA swaps the
sides). It resizes while decoding (``own_resize``), so pairs of any size, even mixed, come out S x S.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from ...config.schema import DataConfig
from ...core.errors import GankitError
from ..base import ImageData
from ..fit import fit_square
from ..folder import IMAGE_EXTENSIONS, _to_gray_or_rgb
from ..registry import dataset
from ..safety import WalkGuard, open_user_file

SPLITS = ("train", "val", "test")
MIN_SIDE = 8  # px; smaller images carry nothing to translate
MAX_INPUT_BYTES = 1 << 30  # one image file to translate; far above any photo, far below a mistaken disk image
_LAYOUT_HINT = (
    "expected train/ val/ test/ folders of side-by-side images (A left half, B right half), "
    "or A/ and B/ folders whose file names match"
)


# ---------------------------------------------------------------------------------------------------------------------
# layout


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _root(cfg_dir: str | Path | None) -> Path:
    if cfg_dir is None:
        raise GankitError(f"data set 'paired' needs data.dir (--data-dir DIR); {_LAYOUT_HINT}")
    root = Path(cfg_dir).expanduser()
    if not root.is_dir():
        raise GankitError(f"data.dir {root} is not a folder; {_LAYOUT_HINT}")
    return root


def _layout(root: Path) -> tuple[str, dict[str, Path | tuple[Path, Path]], bool]:
    """(kind, split -> source, has_splits). kind 'side_by_side': a source is a folder of A|B images; kind 'ab': a
    source is an (A folder, B folder) pair. Without split folders, everything is 'train'."""

    def ab_pair(a: Path, b: Path, where: str) -> tuple[Path, Path] | None:
        if a.is_dir() != b.is_dir():
            have, miss = (a, b) if a.is_dir() else (b, a)
            raise GankitError(f"data.dir {root}: {have} exists but {miss} does not; {where} needs both A and B")
        return (a, b) if a.is_dir() else None

    if (root / "A").is_dir() or (root / "B").is_dir():  # A/, B/ (optionally A/train, B/train, ...)
        ab_pair(root / "A", root / "B", "the folder")
        splits = {s: p for s in SPLITS if (p := ab_pair(root / "A" / s, root / "B" / s, f"split '{s}'"))}
        if splits:
            return "ab", splits, True
        return "ab", {"train": (root / "A", root / "B")}, False
    splits_ab = {
        s: p for s in SPLITS if (root / s).is_dir() and (p := ab_pair(root / s / "A", root / s / "B", f"split '{s}'"))
    }
    if splits_ab:  # train/A, train/B, ...
        return "ab", splits_ab, True
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if split_dirs:  # the pix2pix layout: train/, val/, test/ of side-by-side images
        return "side_by_side", split_dirs, True
    if _images_in(root):
        return "side_by_side", {"train": root}, False
    raise GankitError(f"data.dir {root} holds no image pairs; {_LAYOUT_HINT}")


def paired_splits(root: str | Path) -> list[str]:
    """The splits that ``paired`` can load from ``root`` (after the val <-> test fallback); 'all' always works.

    A folder without split sub-folders has only 'train'; use ``data.holdout`` to evaluate on part of it."""
    _, splits, _ = _layout(_root(root))
    out = [s for s in SPLITS if s in splits]
    if "val" in splits or "test" in splits:
        out = sorted(set(out) | {"val", "test"}, key=SPLITS.index)
    return out


def _sources(root: Path, split: str) -> tuple[str, list[Path | tuple[Path, Path]]]:
    kind, splits, has_splits = _layout(root)
    if split == "all":
        return kind, [splits[s] for s in SPLITS if s in splits]
    if split in splits:
        return kind, [splits[split]]
    other = {"val": "test", "test": "val"}.get(split)
    if other in splits:  # one held-out folder serves as both val and test
        return kind, [splits[other]]
    if not has_splits:
        raise GankitError(
            f"data.dir {root} has no split folders, so it has only data.split=train; add val/ (or test/) folders, "
            f"or evaluate on data.holdout images kept out of training"
        )
    raise GankitError(f"data.dir {root} has no '{split}' folder (found: {', '.join(splits)}); add {root / split}")


def _pair_files(a_dir: Path, b_dir: Path) -> list[tuple[Path, Path]]:
    """A and B files matched by stem (``A/cat.png`` <-> ``B/cat.jpg``), sorted by stem."""

    def by_stem(folder: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in _images_in(folder):
            if p.stem in out:
                raise GankitError(f"{folder}: '{out[p.stem].name}' and '{p.name}' have the same name; keep one")
            out[p.stem] = p
        return out

    a, b = by_stem(a_dir), by_stem(b_dir)
    for have, other, hd, od in ((a, b, a_dir, b_dir), (b, a, b_dir, a_dir)):
        missing = sorted(set(have) - set(other))
        if missing:
            shown = ", ".join(have[s].name for s in missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise GankitError(
                f"{len(missing)} file(s) in {hd} have no match in {od} ({shown}); A and B files must have the same "
                f"name (the extension may differ)"
            )
    return [(a[s], b[s]) for s in sorted(a)]


# ---------------------------------------------------------------------------------------------------------------------
# decoding


def _decode(path: Path, channels: int, source: BinaryIO | None = None) -> Image.Image:
    """One file as an 'L' or 'RGB' image: 'L' when ``channels`` is 1, or when it is 0 and the file is grayscale.
    ``source``: the file already opened (by :func:`open_user_file`); ``path`` then only names it."""
    try:
        with Image.open(path if source is None else source) as im:
            im.load()  # decode fully now, so a truncated file fails here, with its name
            im = ImageOps.exif_transpose(im)  # a camera's rotation flag applies to A and B alike
            im, gray = _to_gray_or_rgb(im)  # the same mode policy as the 'folder' reader
    except Exception as e:  # Pillow fails in many ways on a bad file (OSError, SyntaxError, ValueError, ...)
        raise GankitError(f"{path}: cannot decode as an image ({type(e).__name__}: {e}); replace or remove it") from e
    if channels == 1 and not gray:
        return im.convert("L")
    if channels == 3 and gray:
        return im.convert("RGB")
    return im


def _side(
    img: Image.Image, size: int | tuple[int, int], path: Path, what: str, fit: tuple[str, int] = ("stretch", 0)
) -> np.ndarray:
    """One side of a pair fitted to size x size, or (width, height), per ``fit`` = (data.resize, data.pad_value);
    (H, W) for 'L', (H, W, 3) for 'RGB', uint8. Both sides of a pair have the same size, so they stay aligned."""
    w, h = img.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise GankitError(f"{path}: {what} is {w}x{h} px; each side of a pair must be at least {MIN_SIDE}x{MIN_SIDE}")
    wh = (size, size) if isinstance(size, int) else size
    if fit[0] == "stretch":
        if (w, h) != wh:
            img = img.resize(wh, Image.Resampling.BICUBIC)  # bicubic, as the pix2pix reference loader
    else:
        img = fit_square(img, size, fit[0], fit[1], Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def paired_fit(cfg: DataConfig) -> tuple[str, int]:
    """(resize mode, pad value) of paired data: data.resize, stretched for auto (as the pix2pix reference)."""
    mode = "stretch" if cfg.resize == "auto" else cfg.resize
    return mode, cfg.pad_value if mode == "pad" else 0


def _stack(sides: list[np.ndarray]) -> torch.Tensor:
    """uint8 arrays (S, S) or (S, S, 3) -> (N, C, S, S); C = 1 only when every image is grayscale."""
    if all(s.ndim == 2 for s in sides):
        return torch.from_numpy(np.stack(sides)[:, None]).contiguous()
    rgb = [np.repeat(s[:, :, None], 3, axis=2) if s.ndim == 2 else s for s in sides]  # as Pillow's L -> RGB
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous()


def _split_halves(
    path: Path, size: int | tuple[int, int], channels: int, fit: tuple[str, int] = ("stretch", 0)
) -> tuple[np.ndarray, np.ndarray]:
    """A side-by-side file -> (A = left half, B = right half), each resized to size x size."""
    img = _decode(path, channels)
    w, h = img.size
    if w % 2:
        raise GankitError(
            f"{path}: width {w} is odd, so it cannot be split into two equal halves (A left, B right); "
            f"crop it to an even width or put A and B in A/ and B/ folders"
        )
    a = _side(img.crop((0, 0, w // 2, h)), size, path, "the left half (A)", fit)
    b = _side(img.crop((w // 2, 0, w, h)), size, path, "the right half (B)", fit)
    return a, b


def _read_pair(
    pair: tuple[Path, Path], size: int | tuple[int, int], channels: int, fit: tuple[str, int] = ("stretch", 0)
) -> tuple[np.ndarray, np.ndarray]:
    pa, pb = pair
    return (
        _side(_decode(pa, channels), size, pa, "image A", fit),
        _side(_decode(pb, channels), size, pb, "image B", fit),
    )


def _finish(a: torch.Tensor, b: torch.Tensor, name: str, cfg: DataConfig) -> ImageData:
    if cfg.direction == "BtoA":
        a, b = b, a
    return ImageData(a, torch.full((a.shape[0],), -1, dtype=torch.int64), name, [], targets=b)


# Paired sets train pix2pix contiguous: channels_last was slower at 64x64 and no faster at 256x256
# (docs/notes/pix2pix-sketch.md, "Re-run after the speed work"; docs/notes/speed-and-side-work.md, "channels_last for
# pix2pix"); `--set train.channels_last=true` still turns it on.
@dataset(
    "paired",
    paired=True,
    own_resize=True,
    channels=3,
    default_epochs=100,
    distinct_val=True,
    defaults={"model.name": "pix2pix", "data.image_size": 128, "train.batch_size": 4, "train.channels_last": False},
)
def load_paired(cfg: DataConfig) -> ImageData:
    """Image pairs from ``cfg.dir``, in either layout (detected):

    - side by side (the pix2pix layout): ``train/``, ``val/``, ``test/`` folders (or images directly in the folder)
      of images holding A in the left half and B in the right half; the width must be even;
    - two folders ``A/`` and ``B/`` whose file names match by stem, optionally with ``train/ val/ test/`` inside
      each (``A/train``) or outside (``train/A``).

    Splits: 'val' falls back to 'test' and back; without split folders everything is 'train'; 'all' joins them.
    Each side is resized (bicubic) to ``cfg.image_size`` square (``data.resize``: stretched unless crop or pad). Channels per side: 1 if every image of that side is
    grayscale, else 3; ``cfg.channels`` (1 or 3) forces both sides. Returns images = A, targets = B (swapped by
    ``direction: BtoA``), uint8 (N, C, S, S); labels are -1.
    """
    root = _root(cfg.dir)
    _, sources = _sources(root, cfg.split)
    # Folders linked out of the data root, or read already (val -> train, B -> A), are not read; an image reached
    # through two links is read once.
    guard = WalkGuard.for_root(root)
    a_sides: list[np.ndarray] = []
    b_sides: list[np.ndarray] = []
    for src in sources:
        dirs = [src] if isinstance(src, Path) else list(src)
        if not all([guard.enter_dir(d) for d in dirs]):  # noqa: C419 - a list, so every folder is marked as read
            continue  # said by guard.note() below
        if isinstance(src, Path):  # side by side
            items: list[Path] | list[tuple[Path, Path]] = [p for p in _images_in(src) if guard.claim_file(p)]
            where = str(src)
        else:
            items = [(a, b) for a, b in _pair_files(*src) if guard.claim_file(a)]
            where = f"{src[0]} and {src[1]}"
        if not items:
            raise GankitError(
                f"{where}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); put the '{cfg.split}' pairs there"
            )
        if cfg.limit:  # load_dataset keeps the first `limit` anyway; decoding the rest would be wasted
            items = items[: max(cfg.limit - len(a_sides), 0)]
        read = _split_halves if isinstance(src, Path) else _read_pair
        # Pillow releases the GIL while decoding and resampling, so threads give a real speed-up on big folders.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            fit = paired_fit(cfg)
            wh = (cfg.image_size, cfg.image_height or cfg.image_size)
            decoded = pool.map(lambda item: read(item, wh, cfg.channels, fit), items)  # type: ignore[arg-type]
            for a, b in decoded:
                a_sides.append(a)
                b_sides.append(b)
    guard.note()
    if not a_sides:
        raise GankitError(f"data.dir {root}: no image pairs for split '{cfg.split}' inside the folder; {_LAYOUT_HINT}")
    return _finish(_stack(a_sides), _stack(b_sides), "paired", cfg)


# ---------------------------------------------------------------------------------------------------------------------
# one image to translate


def read_input_image(path: Path, channels: int, size: int | tuple[int, int], root: Path | None = None) -> torch.Tensor:
    """One image as uint8 (C, H, W), decoded exactly as training pairs are (EXIF rotation, transparency on white,
    16-bit scaling), converted to ``channels`` and resized to ``size`` (a side, or (width, height)): what
    `gankit translate` feeds a model. Opened with :func:`open_user_file` (regular files only; with ``root``, the
    folder it was listed from, no link out of that folder)."""
    with open_user_file(path, "input image", root=root, max_bytes=MAX_INPUT_BYTES) as f:
        im = _decode(path, channels, f).resize((size, size) if isinstance(size, int) else size, Image.BICUBIC)
    arr = np.asarray(im, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)
