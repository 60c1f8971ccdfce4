"""`gankit reproduce REPORT`: a report's experiments, its claims and gankit's verdicts on one page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import GankitError


def _data_dirs(items: list[str] | None) -> dict[str, str]:
    """``--data-dir mnist=DIR`` (or a bare ``DIR`` for every data set not named) -> {name or "": DIR}."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, folder = item.partition("=")
        if not sep:
            name, folder = "", item
        if not folder:
            raise GankitError(f"--data-dir {item!r}: expected NAME=DIR (e.g. mnist=~/data/mnist) or DIR")
        out[name.strip()] = folder
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from ..reproduce.claims import load_claims, report_ids

    for rid in report_ids():
        c = load_claims(rid)
        print(f"{rid}  {c.title}")
        print(f"     runs: {', '.join(c.used_runs())} (seeds {', '.join(map(str, c.seeds))})")
        for claim in c.claims:
            print(f"     - {claim.id}: {claim.check.describe()}")
        print(f"     + {len(c.not_checkable)} claims no measurement speaks to (listed on the page)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    if args.list:
        return cmd_list(args)
    if not args.report:
        raise GankitError("name a report (e.g. gankit reproduce 002 --out runs/r002) or use --list")
    if not args.out:
        raise GankitError("--out DIR is required: the folder for the runs, report.html and claims.json")
    if args.workers < 1:
        raise GankitError(f"--workers {args.workers}: give 1 or more")
    from ..reproduce.claims import load_claims
    from ..reproduce.runner import reproduce
    from ..reproduce.verdict import FAILS, HOLDS, UNDECIDED

    claims = load_claims(args.report)
    out = Path(args.out)
    res = reproduce(
        claims,
        args.budget,
        out,
        workers=args.workers,
        threads=args.threads or 0,
        data_dirs=_data_dirs(args.data_dir),
        download=args.download,
        skip_missing=args.skip_missing_data,
        say=lambda m: print(f"reproduce: {m}", file=sys.stderr, flush=True),
    )
    for r in res["results"]:
        print(f"{r['verdict']:>27}  {r['id']}")
    n = {v: sum(r["verdict"] == v for r in res["results"]) for v in (HOLDS, FAILS, UNDECIDED)}
    print(
        f"report {claims.report}: {n[HOLDS]} hold, {n[FAILS]} do not hold, {n[UNDECIDED]} not decided; "
        f"{out / 'report.html'} and {out / 'claims.json'}"
    )
    print(f"cost: {res['cost']['summary']}")
    if res["stopped"] is not None:
        print("gankit: interrupted; run the same command again to continue (finished runs are kept)", file=sys.stderr)
        return 128 + int(res["stopped"])
    if res["unfinished"]:
        print(
            f"gankit: {len(res['unfinished'])} run(s) did not finish ({', '.join(res['unfinished'][:3])}...); "
            f"run the same command again to continue",
            file=sys.stderr,
        )
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..reproduce.budgets import BUDGETS

    p = sub.add_parser("reproduce", help="run a report's experiments and check its claims, side by side on one page")
    p.add_argument("report", nargs="?", help="report id (000-004; see --list) or a claims .yaml file")
    p.add_argument("--list", action="store_true", help="name the reports and their claims")
    p.add_argument(
        "--budget",
        choices=BUDGETS.names(),
        default="quick",
        help="smoke (a test of the machinery), quick (300 steps per run at 28x28, or the steps a report's claims file sets; "
        "about 30 minutes per report on 2 cores), report (the reports' own epochs)",
    )
    p.add_argument("--out", help="folder for the runs, report.html and claims.json (run again to continue)")
    p.add_argument("--workers", type=int, default=1, help="runs trained at once, each with its share of the cores")
    p.add_argument("--threads", type=int, help="threads per worker (default: the usable cores split evenly)")
    p.add_argument(
        "--data-dir",
        action="append",
        metavar="[NAME=]DIR",
        help="where a data set's files are, e.g. mnist=~/data/mnist (repeat per data set)",
    )
    p.add_argument("--download", action="store_true", help="download missing standard data sets into the cache")
    p.add_argument(
        "--skip-missing-data",
        action="store_true",
        help="leave out the runs whose data set is not here (their claims stay undecided) instead of stopping",
    )
    p.set_defaults(func=cmd_reproduce)
