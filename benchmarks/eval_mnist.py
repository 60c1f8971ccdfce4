"""Issue 5's acceptance table: a trained GAN against baselines on every metric, on real MNIST.

Protocol: the run trained on 8,000 images of MNIST's test split (``data.holdout=2000`` keeps a fixed random 2,000
aside). Those 2,000 are cut in two: 1,000 are the reference set every row is compared with, 1,000 are the "real
held-out" row. Every row has 1,000 images: GAN samples, uniform noise, the mean training image, blurred real images
(Gaussian, sigma 1 px, from the training part), and the real held-out images. Separately, the Parzen-window estimate
with the 2014 paper's protocol sizes: 10,000 samples, sigma chosen on 1,000 training images, mean over the 2,000
held-out images.

    python benchmarks/eval_mnist.py RUN_DIR [--out benchmarks/results/eval_mnist.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

import gankit
from gankit.data.base import to_uint8
from gankit.data.splits import reference_data
from gankit.metrics import build_extractor, score_samples, parzen_evaluate
from gankit.training.loop import usable_cores
from gankit.training.rundir import load_run_config

KEYS = [
    "fd",
    "kid_mean",
    "is_mean",
    "precision",
    "recall",
    "density",
    "coverage",
    "parzen_mean",
    "classes_hit",
    "label_kl_uniform",
    "nn_pixel_samples",
]
BETTER = {"fd": "lower", "kid_mean": "lower", "label_kl_uniform": "lower"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default="benchmarks/results/eval_mnist.json")
    args = ap.parse_args()
    torch.set_num_threads(usable_cores())
    cfg = load_run_config(Path(args.run))
    train, held = reference_data(cfg)
    half = len(held) // 2
    # Cut at random: the held-out images come in file order, and MNIST's test file puts one writer population
    # first, so first-half vs second-half differ systematically and inflate the real-vs-real floor (issue 14.12).
    perm = torch.randperm(len(held), generator=torch.Generator().manual_seed(1))
    ref, real_rows = held.subset(perm[:half]), held.subset(perm[half : half + args.n])
    n = min(args.n, len(real_rows))
    g = gankit.load(args.run)
    gen = to_uint8(g.sample(n, seed=1))
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.integers(0, 256, (n, *train.shape), dtype=np.uint8))
    mean = train.images.float().mean(0, keepdim=True).round().to(torch.uint8).expand(n, -1, -1, -1).contiguous()
    pick = torch.from_numpy(rng.choice(len(train), n, replace=False))
    blurred = torch.from_numpy(
        np.clip(
            np.round(gaussian_filter(train.images[pick].numpy().astype(np.float32), sigma=(0, 0, 1, 1))), 0, 255
        ).astype(np.uint8)
    )
    rows = {
        "GAN samples": gen,
        "uniform noise": noise,
        "mean image": mean,
        "blurred real": blurred,
        "real held-out": real_rows.images[:n],
    }
    ext = build_extractor("classifier", train)
    results = {}
    for name, x in rows.items():
        r = score_samples(x, ref, train, extractor=ext, progress=False)
        results[name] = {k: r[k] for k in KEYS}
        print(name, json.dumps(results[name]), flush=True)
    # The 2014 protocol's sizes for Parzen: 10,000 samples; sigma chosen on held-out images (the reference half),
    # the mean over the other held-out half. Never training images, which would favour memorisation.
    big = to_uint8(g.sample(10000, seed=2))
    pz = parzen_evaluate(big, ref.images, real_rows.images)
    print(f"Parzen (10,000 samples, sigma from {len(ref)} held-out images, mean over {len(real_rows)} others): {pz}")
    out = {
        "date": date.today().isoformat(),
        "run": args.run,
        "classifier_accuracy": ext.accuracy,
        "rows": results,
        "parzen_protocol": pz,
        "threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    # Markdown table
    head = "| images | " + " | ".join(KEYS) + " |"
    print(head)
    print("|" + "---|" * (len(KEYS) + 1))
    for name, r in results.items():
        cells = [f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in KEYS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
