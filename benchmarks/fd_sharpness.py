"""Issue 14.12: can FD see blur? FD of real, blurred, noise and mean-image sets against held-out real images.

Protocol: one split of a data set (MNIST's test split in docs/notes/fd-sees-blur.md) loaded at ``--size``. A fixed
random ``2 n`` images (``holdout_split``, seed 0: the same images ``data.holdout=2n`` keeps out of a GAN run) are cut at
random (seed 1) into the reference set and the "real held-out" row; the classifier trains on the rest, so it never
sees the reference. Rows of n images each: real held-out; the same images blurred by a 5-point box filter (each pixel
averaged with its 4 neighbours), once and twice; uniform noise; the mean image of the classifier's part; and any
``--samples NAME=FILE.npy`` (uint8 (N, H, W, C), e.g. a GAN trained on the classifier's part).

    python benchmarks/fd_sharpness.py --data mnist --data-dir ../shared/data/mnist --size 28 \
        --out benchmarks/results/fd_sharpness_mnist.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gankit.config import DataConfig
from gankit.data import load_dataset
from gankit.data.splits import holdout_split
from gankit.metrics import build_extractor, fd


def box_blur5(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> each pixel the mean of itself and its 4 neighbours (edges replicated), rounded."""
    c = images.shape[1]
    k = torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]]).div(5).view(1, 1, 3, 3).expand(c, 1, 3, 3).contiguous()
    x = F.pad(images.to(torch.float32), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(x, k, groups=c).round_().clamp_(0, 255).to(torch.uint8)


def sharpness_rows(classifier_part: torch.Tensor, real: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The baseline rows, each of len(real) uint8 images shaped like ``real``."""
    n = len(real)
    g = torch.Generator().manual_seed(seed)
    mean = classifier_part.to(torch.float32).mean(0, keepdim=True).round().to(torch.uint8)
    return {
        "real held-out": real,
        "blurred (5-point box)": box_blur5(real),
        "blurred twice": box_blur5(box_blur5(real)),
        "uniform noise": torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=g),
        "mean image": mean.expand(n, -1, -1, -1).contiguous(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--data-dir")
    ap.add_argument("--split", default="test")
    ap.add_argument("--size", type=int, default=28, help="image size to load (28 = MNIST's own)")
    ap.add_argument("--n", type=int, default=1000, help="images in the reference set and in each row")
    ap.add_argument("--samples", action="append", default=[], metavar="NAME=FILE.npy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(name=args.data, dir=args.data_dir, split=args.split, image_size=args.size))
    part, held = holdout_split(data, 2 * args.n)
    perm = torch.randperm(len(held), generator=torch.Generator().manual_seed(1))
    ref, real = held.images[perm[: args.n]], held.images[perm[args.n :]]
    rows = sharpness_rows(part.images, real)
    for spec in args.samples:
        name, _, path = spec.partition("=")
        x = torch.from_numpy(np.load(path, allow_pickle=False)).permute(0, 3, 1, 2).contiguous()[: args.n]
        rows[name] = x

    start = time.perf_counter()
    ext = build_extractor("classifier", part, cache_dir=None)
    seconds_classifier = time.perf_counter() - start
    f_ref = ext(ref)[0]
    results = {name: fd(ext(x)[0], f_ref) for name, x in rows.items()}
    floor = results["real held-out"]
    out = {
        "date": date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "data": args.data,
        "split": args.split,
        "size": args.size,
        "n": args.n,
        "classifier": {**ext.info(), "images": len(part), "seconds_incl_cache": seconds_classifier},
        "fd": results,
        "fd_over_real": {k: v / floor for k, v in results.items()},
    }
    print(
        f"features {ext.identity} ({ext.dim}-d), accuracy {getattr(ext, 'accuracy', float('nan')):.4f}, "
        f"trained on {len(part)} images, {seconds_classifier:.0f} s"
    )
    print("| images | FD | FD / real held-out |")
    print("|---|---|---|")
    for name, v in results.items():
        print(f"| {name} | {v:.4g} | {v / floor:.3g} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
