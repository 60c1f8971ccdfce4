"""CycleGAN on the embedded unpaired sketch <-> colour set (issue 28): train on a CPU-time budget, score, and draw a sheet.

Trains `gankit train --model cyclegan` (data `sketch_unpaired`: sketches of one half of the sketch set's crops as A,
colours of the other half as B) for --minutes of this process's CPU time on one thread (``--clock cpu``, as
benchmarks/side_work.py: the budget is the same whatever else the machine runs), then `gankit eval` (classifier
features) on the validation images, and two baselines in the same features:
  - no translation: the validation sketches themselves scored as if they were B (FD of A vs real B);
  - the paired truth: L1 of A -> B against each validation sketch's own colour crop (the sketch set keeps it), beside
    the L1 of the grey sketch against the same colours.
Writes a sheet of rows A | A -> B | A -> B -> A (8 validation images) and a JSON of the figures.

    nice -n 19 python benchmarks/cyclegan_sketch.py [--minutes 10] [--out runs/bench-cyclegan]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch

import gankit
from gankit.config import parse_set
from gankit.config.layering import resolve
from gankit.data import load_dataset
from gankit.data.base import to_float, to_uint8
from gankit.data.unpaired import domain_mask
from gankit.eval import evaluate_run
from gankit.metrics import build_extractor
from gankit.metrics.fd import fd
from gankit.tasks import load
from gankit.viz import save_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_work import use_cpu_clock  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0, help="CPU minutes of training (one thread)")
    ap.add_argument("--out", default="runs/bench-cyclegan")
    ap.add_argument("--json", default="benchmarks/results/cyclegan_sketch.json")
    ap.add_argument("--sheet", default="docs/cyclegan_sketch_sheet.png")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides key=value")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    use_cpu_clock()
    extra = dict(parse_set(s) for s in args.set)
    cfg = resolve(
        overrides={
            "model.name": "cyclegan",
            "train.max_minutes": args.minutes,
            "train.threads": 1,
            "train.progress": False,
            **extra,
        }
    )
    cpu0, wall0 = time.process_time(), time.monotonic()
    run = gankit.train(cfg, out=str(out))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    res = evaluate_run(out, features="classifier", progress=False)
    (out / "metrics.json").write_text(json.dumps(res, indent=2))
    gankit.report.write_report([out])

    # baselines in the same features: the untranslated sketches as B, and L1 against the sketches' own colours
    tr = load(out)
    val = load_dataset(replace(cfg.data, split="val"))
    a8 = val.images[domain_mask(val, 0)]
    b8 = val.images[domain_mask(val, 1)]
    ext = build_extractor("classifier", load_dataset(cfg.data), progress=False)
    fd_none = fd(ext(a8)[0], ext(b8)[0])
    from gankit.data.paired import load_sketch

    truth = load_sketch(replace(cfg.data, name="sketch", split="val", channels=3)).targets[: len(a8)]
    ab = tr.translate(to_float(a8))
    l1_model = float((to_float(to_uint8(ab)) - to_float(truth)).abs().mean())
    l1_sketch = float((to_float(a8) - to_float(truth)).abs().mean())
    aba = tr.toward("BtoA").translate(ab)
    n = 8
    sheet = torch.cat([to_float(a8[:n]), ab[:n], aba[:n]])  # rows: A, A -> B, A -> B -> A
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    save_grid(sheet, args.sheet, nrow=n)
    row = {
        "date": date.today().isoformat(),
        "minutes_cpu": args.minutes,
        "steps": run.step,
        "epochs": run.epoch,
        "train_cpu_s": round(cpu, 1),
        "train_wall_s": round(wall, 1),
        "load_at_end": os.getloadavg(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "eval": res,
        "baseline_fd_untranslated_a_vs_b": fd_none,
        "l1_ab_vs_true_colour": l1_model,
        "l1_sketch_vs_true_colour": l1_sketch,
        "config": cfg.to_dict(),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(row, indent=2))
    print(json.dumps({k: v for k, v in row.items() if k != "config"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
