"""channels_last or contiguous, per shipped conv model (issue 30): plain, gankit with its default memory format and
gankit with train.channels_last=false, in one process, rounds alternating, median img/s by process CPU time at one
thread (robust to other processes' load on a shared machine). Uses benchmarks/against_plain.py's sides.

    PYTHONPATH=. python benchmarks/layout_scan.py [--only NAME,NAME] [--rounds 4]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 PYTHONPATH=. python benchmarks/layout_scan.py   # as on AVX2 CPUs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import against_plain as A


def cpu_steps(side: A.Side, n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        side.step()
    return time.process_time() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated config names (default: every conv model)")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    only = [s for s in args.only.split(",") if s]
    dev = torch.device("cpu")
    for name, _, cfg, _ in A.distinct_cases():
        if (only and name not in only) or cfg.model.name.startswith("mlp"):
            continue
        data = A.fake_data(cfg, max(512, 4 * cfg.train.batch_size * cfg.train.d_steps))
        sides = {
            "plain": A.plain_side(cfg, data, dev),
            "gankit": A.gankit_side(cfg, data, dev),
            "channels_last" if not cfg.train.channels_last else "contiguous": A.gankit_side(
                cfg.replace(**{"train.channels_last": not cfg.train.channels_last}), data, dev
            ),
        }
        for s in sides.values():
            cpu_steps(s, 1)
        n = {k: max(1, round(1.0 / cpu_steps(s, 1))) for k, s in sides.items()}
        rates: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(args.rounds):
            for k in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                rates[k].append(n[k] * sides[k].images_per_step / cpu_steps(sides[k], n[k]))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(
            f"{name}: "
            + ", ".join(f"{k} {v:.1f} img/s ({min(rates[k]):.1f}-{max(rates[k]):.1f})" for k, v in med.items()),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(A.ROOT / "benchmarks"))
    sys.exit(main())
