"""`gankit train`: build the run's config (or take a run's own, with --resume) and train."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import GankitError
from .common import add_data_flags, overrides


def cmd_train(args: argparse.Namespace) -> int:
    from ..config.layering import resolve, resume_config
    from ..tasks import task_of
    from ..training.loop import train
    from ..training.rundir import load_run_config

    flags = overrides(args)
    if args.resume:
        if args.config:
            raise GankitError("pass either CONFIG.yaml or --resume RUN_DIR, not both (a run keeps its own config)")
        if args.out:
            raise GankitError("--out and --resume both name the run folder; drop --out")
        cfg = resume_config(load_run_config(Path(args.resume)).to_dict(), flags)
    else:
        cfg = resolve(file=args.config, overrides=flags)
    run = train(cfg, out=args.out, resume=args.resume)
    print(f"done: {run.step} steps ({run.epoch:.2f} epochs, stopped by {run.stopped_by}). Results in {run.dir}/")
    print(f"  samples: {run.dir}/samples/   progress: {run.dir}/progress.gif   losses: {run.dir}/losses.png")
    for line in task_of(cfg).next_steps(run.dir):
        print(f"  {line}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a model (defaults: DCGAN on the embedded digits data set)")
    t.add_argument("config", nargs="?", help="YAML config; flags below override it")
    add_data_flags(t)
    t.add_argument("--model", help="model (default dcgan; `gankit list` names them)")
    t.add_argument("--seed", type=int)
    t.add_argument("--eval-every", type=int, help="steps between FD evaluations (0 = off)")
    t.add_argument("--on-nan", choices=["stop", "rollback"])
    t.add_argument("--out", help="run folder to create (default runs/<time>-<model>-<data>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly where it stopped")
    t.set_defaults(func=cmd_train)
