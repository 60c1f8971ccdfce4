"""IDX files (the MNIST format) and the three data sets that ship in it: MNIST, Fashion-MNIST and KMNIST.

The format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of dimensions, then that many
big-endian uint32 sizes, then the values, big-endian, row-major. Files may be gzip-compressed.

Where the files come from: ``data.dir`` if given (used as is, never written to), else the cache folder
(``cache_dir/<name>/``), where missing files are downloaded from the official hosts when ``data.download`` is true.
Downloads are checked against SHA-256 digests of the official ``.gz`` files; see ``SOURCES`` for where they were
cross-checked.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..config.schema import DataConfig
from ..core.errors import GankitError
from .base import ImageData
from .download import download_refused, fetch, source_folder
from .fit import image_hw
from .memmap import Alloc, CachePlan, fill_resized
from .registry import dataset
from .safety import MAX_GZIP_RATIO, check_allocation, open_user_file

# type code -> numpy dtype (all multi-byte types are big-endian in IDX)
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream); gzip streams may return short reads."""
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def read_idx_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """(dims, dtype) an IDX file's header claims, reading only the header (a gzip file: only its first bytes)."""
    path = Path(path)
    with open_user_file(path, "IDX file") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw) if gz else contextlib.nullcontext(raw) as f:
                return _parse_header(f, path)[:2]
        except (OSError, EOFError, zlib.error) as e:
            raise GankitError(f"{path} is not a readable gzip file ({e}); delete it and download it again") from e


_FIX = "the file is damaged or not an IDX file; delete it and download it again"


def _parse_header(f: BinaryIO, path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(dims, dtype, header length) from the stream's first bytes."""
    head = _read_exact(f, 4)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise GankitError(f"{path}: bad IDX magic number {head.hex() or 'empty file'}; {_FIX}")
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        raise GankitError(f"{path}: unknown IDX type code 0x{code:02x}; {_FIX}")
    if ndim == 0:
        raise GankitError(f"{path}: IDX header has 0 dimensions; {_FIX}")
    header = 4 + 4 * ndim
    raw_dims = _read_exact(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise GankitError(f"{path}: IDX header cut short ({4 + len(raw_dims)} bytes, need {header}); {_FIX}")
    return struct.unpack(f">{ndim}I", raw_dims), _IDX_DTYPES[code], header


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip, recognised by content) into a native-endian array of the stored shape.

    Raises GankitError naming the file for a missing or non-regular file, a broken gzip stream, a wrong magic number
    or type code, or a body whose length does not match the header's dimensions. The header's claimed size is
    checked against the file (and, for gzip, against what deflate can expand it to, and the memory available)
    before anything of that size is allocated.
    """
    path = Path(path)
    with open_user_file(path, "IDX file") as raw:
        file_size = os.fstat(raw.fileno()).st_size
        gz = raw.read(2) == b"\x1f\x8b"  # gzip magic; trust the content, not the file name
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw) if gz else contextlib.nullcontext(raw) as f:
                dims, dtype, header = _parse_header(f, path)
                count = 1
                for d in dims:
                    count *= d
                need = count * dtype.itemsize
                if not gz and file_size - header != need:  # exact: trailing bytes mean the header is wrong, too
                    raise GankitError(
                        f"{path}: IDX body has {file_size - header} bytes but the header {tuple(dims)} needs {need}; "
                        f"{_FIX}"
                    )
                if gz and need > max(file_size, 1 << 16) * MAX_GZIP_RATIO:
                    raise GankitError(
                        f"{path}: IDX header {tuple(dims)} claims {need} bytes, more than this {file_size}-byte gzip "
                        f"file can hold; {_FIX}"
                    )
                check_allocation(need, path, f"the IDX header {tuple(dims)}")
                body = _read_exact(f, need + 1)  # one byte more tells a too-long body
        except (OSError, EOFError, zlib.error) as e:
            raise GankitError(f"{path} is not a readable gzip file ({e}); delete it and download it again") from e
    if len(body) != need:
        raise GankitError(
            f"{path}: IDX body has {'more than ' if len(body) > need else ''}{min(len(body), need)} bytes but the "
            f"header {tuple(dims)} needs {need}; {_FIX}"
        )
    arr = np.frombuffer(body, dtype=dtype, count=count).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)  # writable, native order (torch.from_numpy wants both)


@dataclass(frozen=True)
class IdxSource:
    """Where an IDX data set is downloaded from: base URLs tried in order, and SHA-256 of each ``.gz`` file."""

    mirrors: tuple[str, ...]
    sha256: dict[str, str]
    class_names: tuple[str, ...]


# SHA-256 of the official .gz files. The hosts publish none (Fashion-MNIST and torchvision list MD5s only); these
# digests appear identically in torchvision's prototype data sets and in several independent repositories, which list
# the Fashion-MNIST and KMNIST ones next to the official MD5s. For the MNIST test split, the digests those
# repositories give for the decompressed files also match a copy checked while writing this.
SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror of yann.lecun.com
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": IdxSource(
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "kmnist": IdxSource(
        mirrors=(
            "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",  # the address the project publishes
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
            "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
            "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
            "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
        },
        # the hiragana each class stands for, romanised (kmnist_classmap.csv)
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
}

# split -> file-name prefixes, in the order they are concatenated
_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "test": ("t10k",),
    "val": ("t10k",),
    "all": ("train", "t10k"),
}


def _stems(prefix: str) -> tuple[str, str]:
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find(folder: Path, stem: str) -> Path | None:
    """The file for ``stem`` in ``folder``: gzipped, raw, or with the '.idx' spelling some copies use."""
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(name: str, cfg: DataConfig) -> list[tuple[Path, Path]]:
    """(images, labels) file pairs for ``cfg.split``, downloading into the cache when that is allowed."""
    source = SOURCES[name]
    stems = [s for prefix in _SPLITS[cfg.split] for s in _stems(prefix)]
    names = [f"{s}.gz" for s in stems]
    wanted = f"{', '.join(names[:-1])} and {names[-1]}"

    folder, downloadable = source_folder(name, cfg.dir, cfg.cache_dir, wanted)
    found = {s: _find(folder, s) for s in stems}
    missing = [s for s, p in found.items() if p is None]
    if missing and not downloadable:
        raise GankitError(
            f"{name} split '{cfg.split}' needs {wanted} in {folder} (uncompressed is fine too); missing "
            f"{', '.join(f'{s}.gz' for s in missing)}; get them from {source.mirrors[0]} or leave out --data-dir to "
            f"download into the cache"
        )
    if missing and not cfg.download:
        raise download_refused(name, cfg.split, wanted, folder, f"put {', '.join(f'{s}.gz' for s in missing)} there")
    for s in missing:
        file = f"{s}.gz"
        found[s] = fetch([m + file for m in source.mirrors], folder / file, source.sha256[file])
    paths = [p for p in (found[s] for s in stems) if p is not None]
    return [(paths[i], paths[i + 1]) for i in range(0, len(paths), 2)]


def _read_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 from one IDX pair, with their shapes checked."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise GankitError(
            f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}; is this an images "
            f"file?"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise GankitError(
            f"{labels_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}; is this a labels file?"
        )
    if len(labels) != len(images):
        raise GankitError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images; they are from "
            f"different sets or one is damaged"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        raise GankitError(f"{labels_path}: label {int(labels.max())} is out of range 0..{num_classes - 1}; wrong file?")
    return images, labels.astype(np.int64)


def idx_plan(name: str, cfg: DataConfig) -> CachePlan:
    """Split ``cfg.split`` of ``name`` as a :class:`CachePlan` for the memmap cache, converted and resized as
    :func:`gankit.data.load_dataset` does in RAM. Only the headers are read here."""
    pairs = _locate(name, cfg)
    files = [p for pair in pairs for p in pair]
    n = sum(read_idx_header(images)[0][0] for images, _ in pairs)
    channels = cfg.channels if cfg.channels in (1, 3) else 1
    settings = {"reader": name, "split": cfg.split, "image_size": cfg.image_size, "channels": channels}
    if cfg.image_height:  # non-square; square caches keep their keys
        settings["image_height"] = cfg.image_height

    def build(alloc: Alloc) -> tuple[np.ndarray, np.ndarray, list[str]]:
        native = load_idx_dataset(name, cfg)
        images = fill_resized(native.images, cfg.channels, image_hw(cfg), alloc, f"caching {name}")
        return images, native.labels.numpy(), native.class_names

    return CachePlan(name, name, files[0].parent, files, settings, n * channels * math.prod(image_hw(cfg)), build)


def load_idx_dataset(name: str, cfg: DataConfig) -> ImageData:
    """Split ``cfg.split`` of ``name`` ('all' = train then test; 'val' = test) as uint8 (N, 1, 28, 28), labels int64."""
    source = SOURCES[name]
    parts = [_read_pair(i, lab, len(source.class_names)) for i, lab in _locate(name, cfg)]
    if len({p[0].shape[1:] for p in parts}) > 1:
        raise GankitError(f"{name}: the train and test image files have different image sizes; one is not from {name}")
    images = np.concatenate([p[0] for p in parts])[:, None]  # (N, 1, H, W)
    labels = np.concatenate([p[1] for p in parts])
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), name, list(source.class_names))


# gankit's recommended MNIST recipe beneath the user's config (configs/recommended/mnist-conditional.yaml spells it
# out; the measurements that chose it are linked below): MNIST has labels, so `--data mnist` trains the
# class-conditional DCGAN (drawing classes in the training images' proportions when no class is asked for) at the
# native 28x28, with an EMA of G: at the same CPU-minutes it reaches a far lower FD than the best unconditional recipe
# (configs/recommended/mnist.yaml, for unlabelled MNIST-like data). A narrow D (32 channels) and a G twice as wide
# (cheaper steps than the 64-channel DCGAN's, and the wider G keeps improving where a 32-channel one levels off),
# class-conditional BatchNorm in G, batch 32 and learning rates of 2e-4 each won their round at a CPU budget:
# docs/notes/time-to-quality-round-{3,4,5,6}.md.
@dataset(
    "mnist",
    channels=1,
    num_classes=10,
    cache_plan=partial(idx_plan, "mnist"),
    defaults={
        "data.image_size": 28,
        "model.num_classes": 10,
        "model.g_channels": 64,
        "model.d_channels": 32,
        "model.g_class_norm": True,
        "train.ema_half_life": 10,
        "train.batch_size": 32,
    },
)
def load_mnist(cfg: DataConfig) -> ImageData:
    """MNIST handwritten digits: 60,000 train / 10,000 test, (N, 1, 28, 28) uint8, labels 0-9."""
    return load_idx_dataset("mnist", cfg)


@dataset("fashion-mnist", channels=1, num_classes=10, cache_plan=partial(idx_plan, "fashion-mnist"))
def load_fashion_mnist(cfg: DataConfig) -> ImageData:
    """Fashion-MNIST (Zalando article images): 60,000 train / 10,000 test, (N, 1, 28, 28) uint8, 10 classes."""
    return load_idx_dataset("fashion-mnist", cfg)


@dataset("kmnist", channels=1, num_classes=10, cache_plan=partial(idx_plan, "kmnist"))
def load_kmnist(cfg: DataConfig) -> ImageData:
    """Kuzushiji-MNIST (cursive Japanese hiragana): 60,000 train / 10,000 test, (N, 1, 28, 28) uint8, 10 classes."""
    return load_idx_dataset("kmnist", cfg)
