"""Share of a real run's wall time spent outside the training step (previews, validation, checkpoints, plots, logging).

Trains the default DCGAN on digits and pix2pix on the embedded sketch set for --minutes each, twice: with gankit's
defaults, and with the pacing turned off the way gankit behaved before issue 10 (a preview grid — and for pix2pix the
validation of every validation pair — at every epoch, losses.png at every checkpoint). Reads the split from each run's
summary.json (``step_seconds``, ``side_seconds``, ``side_parts``), which every run writes.

    python benchmarks/side_work.py [--minutes 3] [--json benchmarks/results/side_work.json]
    python benchmarks/side_work.py --minutes 3 --only pix2pix-pairs --pairs DIR --paced-only   # a paired folder
        # at the paired defaults (issue 30; benchmarks/paired_folder.py DIR makes a 512-px-wide one)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import gankit
import gankit.tasks.pix2pix as p2p
import gankit.training.sidework as sidework
from gankit.config.layering import resolve

RUNS = {"dcgan-digits": {}, "pix2pix-sketch": {"model.name": "pix2pix"}}


class _CpuTime:
    """Stands in for the ``time`` module in gankit's loop parts: monotonic() is this process's CPU time."""

    monotonic = staticmethod(time.process_time)
    perf_counter = staticmethod(time.process_time)


def use_cpu_clock() -> None:
    """Time the run on this process's CPU time instead of the wall clock (``--clock cpu``, with one thread): the
    budget (train.max_minutes), the pacing of previews and plots and the step/side split then all run as they would
    on an idle one-core machine, whatever else the shared machine runs. Waits for the disk (fsync) are not counted."""
    import gankit.training.parts as parts

    parts.CLOCKS["wall"] = time.process_time  # Budget: start, deadline, progress (what train.clock=cpu does)
    sidework.SideClock.__init__.__defaults__ = (time.process_time,)
    sidework.Throttle.__init__.__defaults__ = (time.process_time,)
    import gankit.training.loop as loop

    loop.time = _CpuTime  # images/s of the log rows


def one(name: str, overrides: dict, minutes: float, paced: bool, root: Path, steps: int = 0) -> dict:
    saved = p2p.VAL_PAIRS, sidework.PLOT_SECONDS
    if not paced:  # as before issue 10: every validation pair, every epoch; losses.png at every checkpoint
        p2p.VAL_PAIRS, sidework.PLOT_SECONDS = 10**9, 0.0
    try:
        extra = {} if paced else {"train.preview_seconds": 0}
        budget = {"train.steps": steps} if steps else {"train.max_minutes": minutes}
        cfg = resolve(overrides={**overrides, **extra, **budget, "train.progress": False})
        out = root / f"{name}-{'paced' if paced else 'unpaced'}"
        gankit.train(cfg, out=out)
        s = json.loads((out / "summary.json").read_text())
    finally:
        p2p.VAL_PAIRS, sidework.PLOT_SECONDS = saved
    row = {
        "run": name,
        "paced": paced,
        "load": os.getloadavg(),
        **{
            k: s[k]
            for k in (
                "step",
                "wall_seconds",
                "step_seconds",
                "first_step_seconds",
                "side_seconds",
                "side_share",
                "side_parts",
            )
        },
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget of each run")
    ap.add_argument("--json", default="benchmarks/results/side_work.json")
    ap.add_argument("--only", choices=[*sorted(RUNS), "pix2pix-pairs"], help="one of the runs")
    ap.add_argument("--pairs", default="", help="a paired folder: adds the run pix2pix-pairs at the paired defaults")
    ap.add_argument("--paced-only", action="store_true", help="only gankit's defaults (not the unpaced 'before')")
    ap.add_argument("--steps", type=int, default=0, help="a step budget instead of --minutes (to time the parts)")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: budget, pacing and split on process CPU time (use with --threads 1 on a busy machine)",
    )
    ap.add_argument("--threads", type=int, default=0, help="train.threads (0: the cores this process may use)")
    args = ap.parse_args()
    if args.clock == "cpu":
        if args.threads != 1:
            print("gankit: error: --clock cpu counts one thread's work; add --threads 1")
            return 2
        use_cpu_clock()
    if args.pairs:
        RUNS["pix2pix-pairs"] = {"data.name": "paired", "data.dir": args.pairs}
    if args.threads:
        for ov in RUNS.values():
            ov["train.threads"] = args.threads
    root = Path(tempfile.mkdtemp(prefix="gankit-side-"))
    try:
        rows = [
            one(name, ov, args.minutes, paced, root, args.steps)
            for name, ov in RUNS.items()
            if args.only in (None, name)
            for paced in ((True,) if args.paced_only else (False, True))
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res = {
        "date": date.today().isoformat(),
        "minutes": args.minutes,
        "load": os.getloadavg(),
        "clock": args.clock,
        "threads": args.threads,
        "gankit": gankit.__file__,
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
