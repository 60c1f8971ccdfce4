"""CIFAR-10 from its python-pickle batches (https://www.cs.toronto.edu/~kriz/cifar.html).

The batches are pickles, and unpickling runs whatever callables a file names. They are therefore read with an
unpickler that resolves exactly the four numpy globals an ndarray needs and refuses every other one, so a tampered
or malicious file fails with an error instead of running code.

Where the batches come from: ``data.dir`` (``cifar-10-batches-py/`` inside it, the batch files directly in it, or the
unextracted ``cifar-10-python.tar.gz``; never written to), else ``cache_dir/cifar10/``, where the archive is downloaded
when ``data.download`` is true and the batches are extracted by name.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config.schema import DataConfig
from ..core.errors import GankitError
from .base import ImageData
from ..core.io import atomic_write_bytes
from .download import download_refused, fetch, source_folder
from .fit import image_hw
from .memmap import Alloc, CachePlan, fill_resized
from .registry import dataset
from .safety import open_user_file

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# The host publishes the MD5 (c58f30108f718f92721af3b95e74349a); this SHA-256 of the same archive is the one Keras'
# cifar10.load_data() checks, and other projects list it next to that MD5.
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
MAX_BATCH_BYTES = 256 << 20  # a real batch is 31 MB; anything far larger is not one
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SPLITS = {"train": TRAIN_BATCHES, "test": TEST_BATCHES, "val": TEST_BATCHES, "all": TRAIN_BATCHES + TEST_BATCHES}

# Pickles written by numpy 1 name numpy.core.multiarray, by numpy 2 numpy._core.multiarray. The objects are resolved
# here rather than imported by name, so nothing outside this table is ever imported (nor numpy's deprecation shim).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers, bytes, numbers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load '{module}.{name}'") from None


def safe_unpickle(data: bytes, where: str | Path) -> Any:
    """Unpickle ``data`` (Python 2 or 3 pickles; Python 2 strings become bytes) allowing only numpy arrays as objects.

    Raises GankitError naming ``where`` when the data is not such a pickle, including when it asks for any other
    callable; nothing it names is imported or called.
    """
    try:
        # genops reads every length field and fails when the data holds fewer bytes than claimed, before the
        # unpickler would allocate the claimed size (a 20-byte pickle can claim 100 GB).
        for _ in pickletools.genops(data):
            pass
        return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # a damaged pickle can fail in many ways; all of them mean the same to the user
        raise GankitError(
            f"{where} is not a safe CIFAR-10 python batch ({type(e).__name__}: {' '.join(str(e).split())[:120]}); delete it and get the "
            f"official {ARCHIVE} again"
        ) from e


def parse_batch(obj: Any, where: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One unpickled batch -> images (N, 3, 32, 32) uint8 and labels (N,) int64 in 0..9, shapes checked."""

    def get(key: str) -> Any:
        return obj.get(key.encode(), obj.get(key)) if isinstance(obj, dict) else None

    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise GankitError(
            f"{where}: expected b'data' as uint8 (N, 3072), got {got}; is this a CIFAR-10 python batch "
            f"(not CIFAR-100 or the binary version)?"
        )
    try:
        y: np.ndarray | None = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        y = None
    if y is None or y.shape != (len(data),) or (len(y) and (y.min() < 0 or y.max() >= len(CLASS_NAMES))):
        raise GankitError(
            f"{where}: expected b'labels' as {len(data)} integers in 0..9 to match b'data'; the file is damaged"
        )
    return data.reshape(-1, 3, 32, 32), y  # rows are 1024 R, then G, then B values, each 32x32 row-major


def _tar_batches(archive: Path, names: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular files ``cifar-10-batches-py/<name>`` in the archive; other members are skipped."""
    wanted = {f"{BATCH_DIR}/{n}": n for n in names}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                key = member.name.removeprefix("./")
                # Only regular files with known names: links and odd paths (../, /abs) never match.
                if key in wanted and member.isfile():
                    if member.size > MAX_BATCH_BYTES:  # the header's claim, checked before reading that much
                        raise GankitError(
                            f"{archive}: member {key} claims {member.size} bytes, far more than a CIFAR-10 batch; "
                            f"the archive is damaged or forged, delete it"
                        )
                    f = tar.extractfile(member)
                    if f is not None:
                        yield wanted[key], f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise GankitError(f"{archive} is not a readable tar.gz archive ({e}); delete it and download it again") from e


def _extract(archive: Path, out: Path) -> None:
    """Write the batches from the archive into ``out``, each atomically; output names are ours, never the archive's."""
    out.mkdir(parents=True, exist_ok=True)
    all_names = TRAIN_BATCHES + TEST_BATCHES
    written = set()
    for name, data in _tar_batches(archive, all_names):
        atomic_write_bytes(out / name, data)
        written.add(name)
    missing = sorted(set(all_names) - written)
    if missing:
        raise GankitError(f"{archive} lacks {', '.join(missing)}; it is not the CIFAR-10 python archive, delete it")


def _batch_sources(cfg: DataConfig) -> tuple[list[Path], Path | None]:
    """(batch files ``cfg.split`` needs, None), or ([], the archive they are read from): from data.dir or the cache
    (downloading and extracting if allowed). Reads no batch."""
    names = _SPLITS[cfg.split]
    listed = f"{names[0]}..{names[-1]}" if len(names) > 2 else " and ".join(names)
    folder, downloadable = source_folder("cifar10", cfg.dir, cfg.cache_dir, f"{BATCH_DIR}/")
    if not downloadable:
        for d in (folder / BATCH_DIR, folder):
            if all((d / n).is_file() for n in names):
                return [d / n for n in names], None
        if (folder / ARCHIVE).is_file():
            return [], folder / ARCHIVE
        raise GankitError(
            f"cifar10 split '{cfg.split}' needs {listed} in {folder / BATCH_DIR} (or {folder}), or {ARCHIVE} in "
            f"{folder}; download it from {URL} or leave out --data-dir to download into the cache"
        )
    batches = folder / BATCH_DIR
    if not all((batches / n).is_file() for n in names):
        if not cfg.download:
            raise download_refused(
                "cifar10", cfg.split, listed, batches, f"put {ARCHIVE} (from {URL}) in {folder} and extract it"
            )
        archive = fetch(URL, folder / ARCHIVE, SHA256)
        _extract(archive, batches)
        archive.unlink()  # the extracted batches are the cache; the 170 MB archive is not needed again
    return [batches / n for n in names], None


def _read_batch_file(path: Path) -> bytes:
    """A batch file's bytes: only a regular file, only up to the size a CIFAR batch can have."""
    with open_user_file(path, "CIFAR-10 batch") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_BATCH_BYTES:
            raise GankitError(f"{path} is {size} bytes, far more than a CIFAR-10 batch (~31 MB); wrong file?")
        return f.read()


def _read_batches(cfg: DataConfig) -> list[tuple[str, bytes]]:
    """(where, bytes) of the batches ``cfg.split`` needs, from data.dir or the cache (downloading if allowed)."""
    files, archive = _batch_sources(cfg)
    if archive is not None:
        return _from_archive(archive, _SPLITS[cfg.split])
    return [(str(p), _read_batch_file(p)) for p in files]


def _from_archive(archive: Path, names: tuple[str, ...]) -> list[tuple[str, bytes]]:
    got = dict(_tar_batches(archive, names))
    missing = [n for n in names if n not in got]
    if missing:
        raise GankitError(f"{archive} lacks {BATCH_DIR}/{', '.join(missing)}; it is not the CIFAR-10 python archive")
    return [(f"{archive}:{BATCH_DIR}/{n}", got[n]) for n in names]


def cifar_plan(cfg: DataConfig) -> CachePlan:
    """Split ``cfg.split`` as a :class:`CachePlan` for the memmap cache, converted and resized as
    :func:`gankit.data.load_dataset` does in RAM. Nothing is unpickled here."""
    files, archive = _batch_sources(cfg)
    files = files or [archive]  # type: ignore[list-item]
    channels = cfg.channels if cfg.channels in (1, 3) else 3
    settings = {"reader": "cifar10", "split": cfg.split, "image_size": cfg.image_size, "channels": channels}
    if cfg.image_height:  # non-square; square caches keep their keys
        settings["image_height"] = cfg.image_height
    n = 10_000 * len(_SPLITS[cfg.split])  # the official batches hold 10,000 images each; only sizes the estimate

    def build(alloc: Alloc) -> tuple[np.ndarray, np.ndarray, list[str]]:
        native = load_cifar10(cfg)
        images = fill_resized(native.images, cfg.channels, image_hw(cfg), alloc, "caching cifar10")
        return images, native.labels.numpy(), native.class_names

    return CachePlan(
        "cifar10", "cifar10", files[0].parent, files, settings, n * channels * math.prod(image_hw(cfg)), build
    )


# gankit's recommended CIFAR-10 recipe beneath the user's config (configs/recommended/cifar10-32.yaml spells it out):
# a DCGAN of 32 channels, batch 32, an EMA of G, no augmentation: the lowest FD per 10 CPU-minutes found
# (docs/notes/time-to-quality-round-9.md).
@dataset(
    "cifar10",
    channels=3,
    num_classes=10,
    cache_plan=cifar_plan,
    defaults={
        "model.g_channels": 32,
        "model.d_channels": 32,
        "train.batch_size": 32,
        "train.ema_half_life": 10,
        "train.augment": "none",
    },
)
def load_cifar10(cfg: DataConfig) -> ImageData:
    """CIFAR-10: 50,000 train / 10,000 test colour images, (N, 3, 32, 32) uint8, labels 0-9 (airplane..truck).

    'val' is the test batch; 'all' is the five training batches then the test batch.
    """
    parts = [parse_batch(safe_unpickle(data, where), where) for where, data in _read_batches(cfg)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), "cifar10", list(CLASS_NAMES))
