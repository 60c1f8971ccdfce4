"""Issue 13: what augmenting D's inputs (DiffAugment's colour, translation, cutout, as ADA applies them) adds to a
training step of the image-folder recipe at 64x64.

One process builds the recipe's GAN at each width with ``train.augment=ada``, fixes p (no adaptation), and times
steps with the augmentation on and off, alternating rounds so both see the same machine; medians of the rounds.

It also times the augmentation alone, as a step uses it (two batches forward, for D, and one forward and backward,
for G), against the way gankit computed it before commit 58e7a9f (the three colour ops one after another, translation
by advanced indexing), alternating the two in one process, at the folder recipe's shape and at MNIST's.

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
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import build  # noqa: E402

from gankit.config.layering import resolve  # noqa: E402
from gankit.data.augment import (  # noqa: E402
    AUG_OPS,
    Augment,
    translation_shift,
)

RECIPE = Path(__file__).resolve().parent.parent / "gankit" / "configs" / "recommended" / "folder-64.yaml"


def translate_by_index(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The baseline: gankit's translation before commit 58e7a9f (one advanced index moving whole pixels; its backward is
    an accumulating index_put). Same output as ``gankit.data.augment.translate``."""
    b, _, h, w = x.shape
    rows = torch.arange(h).view(1, h) - shift[:, :1]
    cols = torch.arange(w).view(1, w) - shift[:, 1:]
    inside = ((rows >= 0) & (rows < h)).view(b, h, 1, 1) & ((cols >= 0) & (cols < w)).view(b, 1, w, 1)
    bidx = torch.arange(b).view(b, 1, 1)
    out = x.permute(0, 2, 3, 1)[bidx, rows.clamp(0, h - 1).view(b, h, 1), cols.clamp(0, w - 1).view(b, 1, w)]
    return (out * inside.to(x.dtype)).permute(0, 3, 1, 2)


def baseline_pipeline(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """color,translation,cutout as gankit computed it before commit 58e7a9f: the same draws, the three colour ops one
    after another (what the "color" op did then), translation by ``translate_by_index``."""
    n, _, h, w = x.shape
    for name in ("brightness", "saturation", "contrast"):
        x = AUG_OPS.get(name)(x, p, gen)
    on = torch.rand(n, generator=gen) < p  # the translation op's draws
    sy, sx = translation_shift(h), translation_shift(w)
    dy = (torch.rand(n, generator=gen) * (2 * sy + 1)).floor().long() - sy
    dx = (torch.rand(n, generator=gen) * (2 * sx + 1)).floor().long() - sx
    x = translate_by_index(x, torch.stack([dy, dx], dim=1) * on.view(n, 1))
    return AUG_OPS.get("cutout")(x, p, gen)


def gankit_pipeline(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    aug = Augment(("color", "translation", "cutout"), p=p)
    aug.gen = gen  # draw from the caller's stream, as the baseline does
    return aug(x)


def pipeline_ms(shape: tuple[int, int, int, int], p: float, rounds: int) -> dict[str, Any]:
    """Median ms of one step's augmentation (2 batches forward, 1 forward + backward), baseline vs gankit's."""
    x = torch.rand(shape).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    check = (torch.Generator().manual_seed(0), torch.Generator().manual_seed(0))
    assert torch.allclose(baseline_pipeline(x, check[0], p), gankit_pipeline(x, check[1], p), atol=1e-5)
    times: dict[str, list[float]] = {"baseline": [], "gankit": []}
    for r in range(rounds + 1):  # round 0 warms up
        for name, pipe in (("baseline", baseline_pipeline), ("gankit", gankit_pipeline)):
            gen = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            for _ in range(5):
                pipe(x, gen, p)
                pipe(x, gen, p)
                leaf = x.detach().requires_grad_()
                pipe(leaf, gen, p).sum().backward()
            if r:
                times[name].append((time.perf_counter() - t0) / 5)
    base, ours = statistics.median(times["baseline"]), statistics.median(times["gankit"])
    return {
        "shape": list(shape),
        "p": p,
        "baseline_ms": round(base * 1e3, 2),
        "gankit_ms": round(ours * 1e3, 2),
        "speedup": round(base / ours, 2),
    }


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
    ops: list[dict[str, Any]] = []
    for shape in ((64, 3, 64, 64), (32, 1, 28, 28)):  # the folder recipe's batch; MNIST's default batch
        ops.append(pipeline_ms(shape, args.p, args.rounds))
        print(json.dumps(ops[-1]), flush=True)
    built = {}
    for w in (int(x) for x in args.widths.split(",")):
        cfg = resolve(
            file=RECIPE,
            overrides={"data.channels": 3, "model.g_channels": w, "model.d_channels": w, "train.augment": "ada"},
        )
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
        rows.append(
            {
                "channels": w,
                "batch": built[w][0].cfg.train.batch_size,
                "p": args.p,
                "step_ms_augmented": round(on * 1e3, 1),
                "step_ms_plain": round(off * 1e3, 1),
                "added_ms": round((on - off) * 1e3, 1),
                "ratio": round(on / off, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "date": str(date.today()),
                    "machine": platform.processor() or platform.machine(),
                    "threads": args.threads,
                    "rows": rows,
                    "augmentation_alone": ops,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
