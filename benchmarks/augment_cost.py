"""Issue 13: what augmenting D's inputs (DiffAugment's colour, translation, cutout, as ADA applies them) adds to a
training step of the image-folder recipe at 64x64.

One process builds the recipe's GAN at each width with ``train.augment=ada``, fixes p (no adaptation), and times
steps with the augmentation on and off, alternating rounds so both see the same machine; medians of the rounds.

    python benchmarks/augment_cost.py [--threads 1] [--p 0.8] [--json benchmarks/results/augment_cost.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import build  # noqa: E402

from gankit.config.layering import resolve  # noqa: E402

RECIPE = Path(__file__).resolve().parent.parent / "gankit" / "configs" / "recommended" / "folder-64.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--p", type=float, default=0.8, help="the augmentation probability, held fixed")
    ap.add_argument("--widths", default="8,16")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round and setting")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    built = {}
    for w in (int(x) for x in args.widths.split(",")):
        cfg = resolve(file=RECIPE, overrides={"data.channels": 3, "model.g_channels": w,
                                              "model.d_channels": w, "train.augment": "ada"})
        task, batcher = build(cfg, "cpu")  # random images of the recipe's shape: a step's cost depends only on shapes
        task.augment.adaptive, task.augment.p = False, args.p
        built[w] = (task, batcher, task.augment)
    times: dict[tuple[int, bool], list[float]] = {}
    for r in range(args.rounds + 1):  # round 0 warms up (allocator, oneDNN primitives) and is not counted
        for w, (task, batcher, aug) in built.items():
            for on in (True, False):
                task.augment = aug if on else None
                task.step(batcher, 0.0)
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    task.step(batcher, 0.0)
                if r:
                    times.setdefault((w, on), []).append((time.perf_counter() - t0) / args.steps)
    rows = []
    for w in built:
        on, off = statistics.median(times[(w, True)]), statistics.median(times[(w, False)])
        rows.append({"channels": w, "batch": built[w][0].cfg.train.batch_size, "p": args.p,
                     "step_ms_augmented": round(on * 1e3, 1), "step_ms_plain": round(off * 1e3, 1),
                     "added_ms": round((on - off) * 1e3, 1), "ratio": round(on / off, 2)})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"date": str(date.today()), "machine": platform.processor() or
                                               platform.machine(), "threads": args.threads, "rows": rows},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
