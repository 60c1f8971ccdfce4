"""gankit's step and the plain step of one shipped config side by side in torch.profiler (issue 30): which ops each
runs, with their input shapes, to find why one side is slower. Uses benchmarks/against_plain.py's two sides.

    PYTHONPATH=. python benchmarks/profile_sides.py reports/004-dcgan-mnist [--threads 1] [--steps 5] [--rows 30]
        [--set train.channels_last=true]

Prints each side's img/s by wall clock and by process CPU time over ``--steps`` steps (after 3 warm-up steps), then
each side's op table (top ``--rows`` by self CPU time, grouped by input shape). The profiler's times are wall time:
on a loaded machine compare the two tables' shares, not their seconds.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import against_plain as A
from gankit.config.layering import resolve
from gankit.config.schema import parse_set
from gankit.core.errors import GankitError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "config", help="a row's name as train_speed.py --against plain prints it, e.g. reports/004-dcgan-mnist"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the config")
    args = ap.parse_args()
    cases = {name: (path, cfg) for name, path, cfg, _ in A.distinct_cases()}
    if args.config not in cases:
        print(f"gankit: error: no row {args.config!r}; rows: {', '.join(sorted(cases))}")
        return 2
    if args.threads < 1 or args.steps < 1:
        print("gankit: error: --threads and --steps must be at least 1")
        return 2
    path, cfg = cases[args.config]
    try:
        if args.set:  # as train_speed.py --against plain --set: the config resolved again with the overrides
            cfg = resolve(path, dict(parse_set(kv) for kv in args.set))
    except GankitError as e:
        print(f"gankit: error: --set: {e}")
        return 2
    torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    data = A.fake_data(cfg, max(512, 4 * cfg.train.batch_size * cfg.train.d_steps))
    sides = [A.plain_side(cfg, data, dev), A.gankit_side(cfg, data, dev)]
    for s in sides:  # warm-up: allocator, oneDNN kernel choice, lazy optimizer state
        for _ in range(3):
            s.step()
    for s in sides:
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            s.step()
        w, c = time.perf_counter() - w0, time.process_time() - c0
        n = args.steps * s.images_per_step
        print(f"{s.name}: {n / w:.1f} img/s wall, {n / c:.1f} img/s CPU time ({args.threads} thread(s))", flush=True)
    for s in sides:
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(args.steps):
                s.step()
        print(f"==== {s.name}: {args.steps} steps")
        print(
            prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40, max_shapes_column_width=60
            )
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(A.ROOT / "benchmarks"))
    sys.exit(main())
