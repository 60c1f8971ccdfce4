"""`gankit eval`: metrics of a run's samples, or of any .npy of samples, against real data."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import GankitError
from ..core.io import refuse_existing
from .common import add_force_flag


def cmd_eval(args: argparse.Namespace) -> int:
    from ..eval import evaluate_npy, evaluate_run, write_json
    from ..metrics import format_table

    if args.n <= 0:
        raise GankitError(f"--n must be > 0, got {args.n}")
    if args.inception and args.features == "inception":  # a wrong file named before minutes of sampling, not after
        from ..metrics.features import INCEPTION_FILE, INCEPTION_URL, check_torchscript

        check_torchscript(args.inception, "--inception", f"{INCEPTION_FILE} from {INCEPTION_URL}")
    fid = {"protocol": args.protocol, "ref_stats": args.ref_stats, "save_ref_stats": args.save_ref_stats}
    if args.save_ref_stats:
        refuse_existing([Path(args.save_ref_stats)], args.force)
    if args.samples:
        if args.run:
            raise GankitError("pass either RUN_DIR or --samples FILE.npy, not both")
        if not args.data:
            raise GankitError("--samples needs --data NAME (the data set to compare with)")
        out = Path(args.out) if args.out else Path(args.samples).with_suffix(".metrics.json")
        refuse_existing([out], args.force)  # beside the user's own file: theirs, not gankit's
        res = evaluate_npy(
            args.samples,
            args.data,
            args.data_dir,
            args.split or "test",
            args.features,
            args.inception,
            not args.no_parzen,
            args.seed,
            **fid,
        )
    else:
        if not args.run:
            raise GankitError("give a RUN_DIR (or --samples FILE.npy --data NAME)")
        # RUN/metrics.json is gankit's own file in the run folder: refreshed by every eval. A named --out is not.
        out = Path(args.out) if args.out else Path(args.run) / "metrics.json"
        if args.out:
            refuse_existing([out], args.force)
        res = evaluate_run(
            args.run,
            args.n,
            args.features,
            args.split,
            args.data_dir,
            args.inception,
            not args.no_parzen,
            args.checkpoint,
            args.seed,
            **fid,
        )
    if "fd" in res and "precision" in res:
        print(format_table(res))
    else:
        for k, v in res.items():
            print(f"{k:>14}: {v:.4f}" if isinstance(v, float) else f"{k:>14}: {v}")
    write_json(res, out)
    print(f"wrote {out}")
    if args.run:  # the run's page now holds these scores beside their baselines, and the memorisation sheet
        from ..report import write_report

        print(f"wrote {write_report([Path(args.run)])}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "eval", help="FD, KID, IS, precision/recall, density/coverage, Parzen, class coverage, memorisation"
    )
    e.add_argument("run", nargs="?", help="run folder")
    e.add_argument("--n", type=int, default=10000, help="samples to draw (default 10000)")
    e.add_argument(
        "--features",
        choices=["classifier", "inception", "pixels"],
        default="classifier",
        help="feature space (classifier: trained on the data set, offline; inception: the FID network)",
    )
    e.add_argument("--inception", metavar="PATH", help="inception-2015-12-05.pt (TorchScript) for --features inception")
    e.add_argument(
        "--split",
        choices=["train", "test", "val", "all"],
        help="real images to compare with (default test, or the run's holdout)",
    )
    e.add_argument("--data-dir", help="where the data set's files are, if not where the run found them")
    e.add_argument("--samples", metavar="FILE.npy", help="score these uint8 (N, H, W, C) samples instead of a run")
    e.add_argument("--data", help="with --samples: the data set to compare with")
    e.add_argument("--out", help="results JSON (default RUN/metrics.json)")
    e.add_argument("--checkpoint", default="latest")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-parzen", action="store_true", help="skip the Parzen-window estimate")
    e.add_argument(
        "--protocol",
        metavar="NAME",
        help="FID protocol of --features inception: legacy-tensorflow "
        "(default; TTUR, stylegan2-ada) or clean (clean-fid)",
    )
    e.add_argument(
        "--ref-stats",
        metavar="FILE.npz",
        help="FD against these statistics (keys mu, sigma, as published "
        "FID reference files) instead of the real images",
    )
    e.add_argument(
        "--save-ref-stats",
        metavar="FILE.npz",
        help="also write the statistics of the real comparison images (for --ref-stats later, or other tools)",
    )
    add_force_flag(e)
    e.set_defaults(func=cmd_eval)
