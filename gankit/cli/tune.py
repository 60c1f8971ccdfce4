"""`gankit tune`: search a config's hyperparameters with Optuna; every trial is an ordinary run folder."""

from __future__ import annotations

import argparse

from .common import add_data_flags, overrides


def cmd_tune(args: argparse.Namespace) -> int:
    from ..tune.run import run_tune

    flags = overrides(args)
    return run_tune(
        args.config,
        args.space,
        args.param or [],
        flags,
        out=args.out,
        trials=args.trials,
        workers=args.workers,
        threads=args.threads or 0,
        sampler=args.sampler,
        pruner=args.pruner,
        seed=args.seed if args.seed is not None else 0,
        storage=args.storage,
        study_name=args.study_name,
        eval_every=args.eval_every,
        heartbeat=args.heartbeat,
        best_seeds=args.best_seeds,
        objective=args.objective,
        enqueue_base=args.enqueue_base,
    )


def register(sub: argparse._SubParsersAction) -> None:
    from ..tune.run import PRUNERS, SAMPLERS

    t = sub.add_parser(
        "tune",
        help="search hyperparameters (Optuna): trials are run folders, pruned early, on several workers and machines",
    )
    t.add_argument("config", nargs="?", help="base YAML config every trial starts from")
    t.add_argument(
        "--space",
        metavar="SPACE.yaml",
        help="search space: config keys -> loguniform(lo, hi), uniform(lo, hi), int(lo, hi[, step]), choice(a, b, ...)",
    )
    t.add_argument(
        "--param",
        action="append",
        metavar="KEY=DIST",
        help="add a key to the space (or replace the file's), e.g. --param 'optim.lr_g=loguniform(1e-4,1e-3)'",
    )
    t.add_argument(
        "--trials",
        type=int,
        default=20,
        help="trials to finish (complete or pruned; default 20); running the command again continues toward it",
    )
    t.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on this machine, one trial each at a time (threads split between them; default 1)",
    )
    t.add_argument(
        "--out", help="study folder (default studies/<config>-<space>): trial-NNNN/, study.db, report.html, best.yaml"
    )
    t.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="tpe (default, seeded), random, grid, cmaes")
    t.add_argument(
        "--pruner",
        choices=PRUNERS,
        help="stop poor trials early (default median; none with two objectives, which Optuna cannot prune)",
    )
    t.add_argument(
        "--objective",
        default="fd",
        metavar="SCORE[,SECOND]",
        help="what to optimize: the score (fd, or l1 for pix2pix), or it and a second objective for a Pareto "
        "front: fd,images_per_s (faster training is better) or fd,params (a smaller G is better); "
        "best.yaml is then the front's trial with the best score (default fd)",
    )
    t.add_argument("--seed", type=int, help="seed of the sampler and of every trial's training (default 0)")
    t.add_argument(
        "--eval-every",
        type=int,
        help="steps between training-time scores, which the pruner judges (default: an eighth of --steps, else 250)",
    )
    t.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage shared by several machines, e.g. "
        "postgresql://user:pass@host/db (default STUDY/study.db, SQLite)",
    )
    t.add_argument("--study-name", help="the study's name in the storage (default: the study folder's name)")
    t.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        help="seconds between a running trial's heartbeats; a trial "
        "silent for 3 is retried from its checkpoint (default 10)",
    )
    t.add_argument(
        "--best-seeds",
        type=int,
        default=0,
        metavar="K",
        help="then train the best trial's parameters on K "
        "seeds the search did not use, in STUDY/best-seeds/; the report shows their mean ± std (default 0)",
    )
    t.add_argument(
        "--enqueue-base",
        action="store_true",
        help="first train the base config's own values of the space's keys, so the study shows whether any trial "
        "beats the recipe it started from (queued once per study; refused with --sampler grid)",
    )
    add_data_flags(t, " of every trial")
    t.set_defaults(func=cmd_tune)
