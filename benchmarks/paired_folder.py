"""A 512-px-wide paired folder to measure pix2pix on real-size pairs (issue 30): the embedded sketch -> colour set
(crops of scikit-learn's two sample photos, gankit/data/paired/sketch.py) loaded at 256x256 and written in the pix2pix
side-by-side layout, ``train/`` (600 pairs) and ``val/`` (100 pairs) of 512x256 PNGs, sketch on the left (grey,
stored as RGB as photo-derived pairs usually are), colour on the right. The crops are 64-128 px of the photos, so at
256 px they are upscaled (bicubic): the content is the embedded set's, the files and decoding are full-size.

    python benchmarks/paired_folder.py OUT_DIR [--size 256]
    gankit train --data paired --data-dir OUT_DIR --max-minutes 3     # at the paired defaults (128 px, batch 4)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from gankit.config.schema import DataConfig
from gankit.data import load_dataset


def write_folder(out: Path, size: int = 256) -> dict[str, int]:
    """Write train/ and val/ side-by-side pairs of (size x 2*size); returns pairs per split."""
    counts = {}
    for split in ("train", "val"):
        data = load_dataset(DataConfig(name="sketch", image_size=size, split=split))
        a = data.images.numpy()  # (N, 1, S, S) sketch
        b = data.targets.numpy()  # (N, 3, S, S) colour
        d = out / split
        d.mkdir(parents=True, exist_ok=True)
        for i in range(a.shape[0]):
            left = np.repeat(a[i], 3, 0).transpose(1, 2, 0)
            right = b[i].transpose(1, 2, 0)
            Image.fromarray(np.concatenate([left, right], 1)).save(d / f"{i:04d}.png")
        counts[split] = int(a.shape[0])
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=256, help="side of each half (the files are 2*size wide)")
    args = ap.parse_args()
    print(write_folder(Path(args.out), args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
