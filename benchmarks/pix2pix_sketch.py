"""Issue 4's acceptance: pix2pix on the embedded sketch -> colour set, against two baselines in the same run.

Trains `gankit train --model pix2pix` (the embedded `sketch` data) for --minutes, then scores on the validation
split (crops from a strip of each photo that training never sees): L1, PSNR, SSIM of
  - the model's outputs,
  - the input sketch itself (as a grey image),
  - the mean training colour image,
against the colour targets, and saves a sheet of input | output | target rows.

    python benchmarks/pix2pix_sketch.py [--minutes 10] [--out runs/bench-pix2pix]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch

import gankit
from gankit.config.layering import resolve
from gankit.data import load_dataset
from gankit.data.base import to_float
from gankit.metrics import image_metrics
from gankit.tasks import Translator, load
from gankit.training.loop import usable_cores
from gankit.viz import save_grid


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", default="runs/bench-pix2pix")
    ap.add_argument("--json", default="benchmarks/results/pix2pix_sketch.json")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides key=value")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    from gankit.config import parse_set

    extra = dict(parse_set(s) for s in args.set)
    cfg = resolve(overrides={"model.name": "pix2pix", "train.max_minutes": args.minutes, **extra})
    run = gankit.train(cfg, out=str(out))
    tr = load(out, want=Translator)
    val = load_dataset(replace(cfg.data, split="val"))
    train = load_dataset(cfg.data)
    a, b = to_float(val.images), to_float(val.targets)
    pred = tr.translate(a)
    sketch = a.expand(-1, b.shape[1], -1, -1)
    mean = to_float(train.targets).mean(0, keepdim=True).expand_as(b)
    rows = {
        "pix2pix output": image_metrics(pred, b),
        "input sketch": image_metrics(sketch, b),
        "mean training image": image_metrics(mean, b),
    }
    for name, r in rows.items():
        print(f"| {name} | {r['l1']:.4f} | {r['psnr']:.2f} | {r['ssim']:.3f} |")
    sheet = torch.stack([sketch[:8], pred[:8], b[:8]], 1).flatten(0, 1)
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    save_grid(sheet, "benchmarks/results/pix2pix_sketch_sheet.png", nrow=3)  # rows of input | output | target
    res = {
        "date": date.today().isoformat(),
        "minutes": args.minutes,
        "steps": run.step,
        "epochs": run.epoch,
        "threads": usable_cores(),
        "image_size": cfg.data.image_size,
        "rows": rows,
        "config": cfg.to_dict(),
    }
    Path(args.json).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "config"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
