"""`gankit sweep` and `gankit compare`: thin commands over gankit.sweep and gankit.compare."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_data_flags, add_force_flag, overrides


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..sweep import add_seeds, default_say, parse_grid, run_sweep, summary_line

    out = Path(args.out)
    grid, base = parse_grid(args.grid or []), overrides(args)
    if args.seeds is not None:  # --seed S with --seeds K: seeds S .. S + K - 1
        grid = add_seeds(grid, args.seeds, int(base.pop("seed", 0)))
    state = run_sweep(args.configs, grid, out, base, say=default_say, workers=args.workers, threads=args.threads or 0)
    ended = state["ended"]
    print(f"sweep: {summary_line(state, out)}")
    if ended.stopped:
        default_say("stopped by a signal; run the same command to continue (each run from its last checkpoint)")
        return 128 + ended.stopped
    if ended.bad_input:  # a run met bad input; its worker said which in one line
        return 2
    if ended.deaths and any(r["status"] != "done" for r in state["runs"]):
        default_say("a worker died more than once; run the same command to continue from the runs' checkpoints")
        return 1
    print(f"  compare them: gankit compare {out} --out {out / 'report'} (add --force to refresh it)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import compare

    files = compare(args.runs, Path(args.out), say=lambda m: print(m, file=sys.stderr), force=args.force)
    print(f"wrote {files['report']}, {files['losses']}, {files['samples']} and {files['summary']}")
    return 0


# ---------------------------------------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="train the product of config grids on one or more workers (resumable)")
    s.add_argument(
        "configs",
        nargs="*",
        metavar="CONFIG",
        help="YAML config(s) the runs start from; several configs are one more grid axis (default: built-ins)",
    )
    s.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        help="a config key and its values; repeat for a product, e.g. --grid optim.name=adam,sgd",
    )
    s.add_argument("--out", required=True, help="sweep folder: one run folder per grid point, and sweep.json")
    s.add_argument(
        "--seeds",
        type=int,
        metavar="K",
        help="train every grid point on K seeds (0..K-1, or from --seed); compare then shows mean ± std over them",
    )
    s.add_argument("--seed", type=int, help="seed of every run (with --seeds: the first seed)")
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on this machine, one run each at a time (threads split between them; default 1: "
        "the runs one after another in this process)",
    )
    add_data_flags(s, " of every run")
    s.set_defaults(func=cmd_sweep)

    c = sub.add_parser("compare", help="loss curves, last sample grids and a metrics table of runs side by side")
    c.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP", help="run folders, sweep folders or folders of runs")
    c.add_argument("--out", required=True, help="folder for losses.png, samples.png and summary.md")
    add_force_flag(c)
    c.set_defaults(func=cmd_compare)
