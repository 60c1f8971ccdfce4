"""Paired (image-to-image) data: folders of A/B pairs, the embedded ``sketch`` set, and the pix2pix jitter.

Both readers return :class:`ImageData` with ``images`` = the input (condition) side and ``targets`` = what G must
produce, uint8 (N, C, S, S) with S = ``data.image_size``, after ``data.direction`` is applied (BtoA swaps the sides).
They resize while decoding (``own_resize``), so pairs of any size, even mixed, come out S x S.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter, ImageOps

from ..config.schema import DataConfig
from ..core.errors import GankitError
from .base import ImageData
from .fit import fit_square
from .folder import IMAGE_EXTENSIONS, _to_gray_or_rgb
from .registry import dataset
from .safety import WalkGuard, open_user_file

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
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
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


def _side(img: Image.Image, size: int | tuple[int, int], path: Path, what: str,
          fit: tuple[str, int] = ("stretch", 0)) -> np.ndarray:
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


def _split_halves(path: Path, size: int | tuple[int, int], channels: int, fit: tuple[str, int] = ("stretch", 0)) -> tuple[np.ndarray, np.ndarray]:
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


def _read_pair(pair: tuple[Path, Path], size: int | tuple[int, int], channels: int,
               fit: tuple[str, int] = ("stretch", 0)) -> tuple[np.ndarray, np.ndarray]:
    pa, pb = pair
    return (_side(_decode(pa, channels), size, pa, "image A", fit),
            _side(_decode(pb, channels), size, pb, "image B", fit))


def _finish(a: torch.Tensor, b: torch.Tensor, name: str, cfg: DataConfig) -> ImageData:
    if cfg.direction == "BtoA":
        a, b = b, a
    return ImageData(a, torch.full((a.shape[0],), -1, dtype=torch.int64), name, [], targets=b)


# Paired sets train pix2pix contiguous: channels_last measured 10 % slower at 64x64 (200 steps, 2 threads, 2 rounds
# each: 41.5 s against 37.0 s) and no faster at 256x256 (BENCHMARKS.md, issue 10); `--set train.channels_last=true`
# still turns it on.
@dataset(
    "paired", paired=True, own_resize=True, channels=3, default_epochs=100, distinct_val=True,
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
            raise GankitError(f"{where}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); put the '{cfg.split}' pairs there")
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
# the embedded default: pencil sketch -> colour, from scikit-learn's two sample photos

SKETCH_TRAIN, SKETCH_VAL = 600, 100
# Validation crops come only from this vertical strip (fractions of the width) of each photo and training crops only
# from outside it, so no validation pixel is ever trained on. 50-70% runs through the pagoda's eaves, the lake and a
# tree in china.jpg and through the dahlia in flower.jpg: the right-most strip would be mostly plain background.
SKETCH_VAL_STRIP = (0.5, 0.7)
SKETCH_CROP = (64, 128)
SHADE = 0.6  # the darkest tone of the sketch's shading wash (1 = no shading, line art only)  # crop sides in photo pixels, drawn log-uniformly; all fit in the strip and beside it


def sketch_of(rgb: np.ndarray) -> np.ndarray:
    """A shaded pencil sketch of colour images: uint8 (N, H, W, 3) -> uint8 (N, H, W), light paper with dark lines.

    Colour-dodge of the grayscale image with its blurred negative (gray / (1 - blur(1 - gray))) leaves flat regions
    white and edges dark, like graphite; squaring darkens the strokes. A light tone wash (the blurred luma, mapped to
    [SHADE, 1]) is multiplied in, as an artist shades a tonal sketch: without it a flat dark background and a flat
    bright sky are the same blank paper, and no model could tell which colour to paint. The blur's sigma is H / 32,
    so a crop looks the same at every image size."""
    sigma = rgb.shape[1] / 32
    out = np.empty(rgb.shape[:3], np.uint8)
    for i, im in enumerate(rgb):  # per image: small arrays stay in cache, ~3x faster than whole-batch numpy
        g = Image.fromarray(im).convert("L")  # ITU-R 601 luma
        # Pillow's Gaussian (three box blurs) costs the same at any sigma; scipy's exact one is ~10x slower at 256 px.
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
    return np.stack([
        np.asarray(pil[k].resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + s, y + s)), np.uint8)
        for k, x, y, s in boxes
    ])


@dataset(
    "sketch", paired=True, own_resize=True, channels=3, input_channels=1, embedded=True, default_epochs=60,
    defaults={"data.image_size": 64, "train.batch_size": 8, "model.g_channels": 32, "model.d_channels": 32,
              "train.channels_last": False},
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

    from .transforms import convert_channels

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


# ---------------------------------------------------------------------------------------------------------------------
# training jitter


def default_load_size(image_size: int, load_size: int = 0) -> int:
    """``data.load_size``, or when 0 the pix2pix ratio 286/256 of the image size (64 -> 72, 256 -> 286)."""
    return load_size if load_size > 0 else int(round(image_size * 286 / 256))


def augment_pairs(
    a: torch.Tensor, b: torch.Tensor, load_size: int, flip: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pix2pix training jitter, applied identically to each input and its target.

    a: (B, C_a, H, W), b: (B, C_b, H, W), float (e.g. [-1, 1]). Both are resized (bilinear) to load_size x load_size
    (non-square: load_size wide, the height in proportion),
    cropped back to H x W at a random position per sample (the same for a and b), and, when ``flip``, mirrored left
    to right per sample with probability 1/2. Returns new tensors of the input shapes, on the input device; the
    result is a pure function of the inputs and the generator's state (draws happen on the generator's device).
    """
    if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must be aligned batches")
    n, ca, h, w = a.shape
    if load_size < w:
        raise GankitError(f"data.load_size={load_size} must be >= the image width {w}")
    load_h = load_size if h == w else round(h * load_size / w)  # non-square: the aspect ratio kept
    x = torch.cat([a, b.to(a.dtype)], 1)  # one resize and one gather for both sides keeps them aligned
    if load_size != w or load_h != h:
        x = F.interpolate(x, size=(load_h, load_size), mode="bilinear", align_corners=False)
    gdev = generator.device
    top = torch.randint(0, load_h - h + 1, (n,), generator=generator, device=gdev).to(x.device)
    left = torch.randint(0, load_size - w + 1, (n,), generator=generator, device=gdev).to(x.device)
    cols = torch.arange(w, device=x.device).expand(n, w)
    if flip:
        mirror = torch.rand(n, generator=generator, device=gdev).to(x.device) < 0.5
        cols = torch.where(mirror[:, None], (w - 1) - cols, cols)  # a flip is reading the crop's columns backwards
    rows = top[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = left[:, None] + cols  # (B, W)
    bi = torch.arange(n, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C_a + C_b, H, W)
    return out[:, :ca].contiguous(), out[:, ca:].to(b.dtype).contiguous()


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
