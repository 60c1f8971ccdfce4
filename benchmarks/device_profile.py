"""Where a training step waits for the device and what it launches: gankit's step against the plain PyTorch step,
per step, for a few shipped configs (issue 30). Counts, not speeds, so one short call on a GPU says it:

- host syncs per step: ``torch.cuda.set_sync_debug_mode("warn")`` over ``--steps`` steps, each warning counted and
  grouped by the line of Python that caused it (CUDA only; on the CPU there is nothing to wait for);
- from ``torch.profiler`` over the same steps: CUDA runtime calls per step (kernel launches, memcpy, stream and
  device synchronisations) and the busiest operators by self CPU time (what the host spends the step on);
- milliseconds of host time per step with and without a device sync after each step (the gap is how far the host
  runs ahead of the device).

    PYTHONPATH=. python3 benchmarks/device_profile.py --device cuda --only recommended/mnist-conditional,reports/001-dcgan-cifar10

Writes device_profile.md (and .json) to --out. Uses benchmarks/against_plain.py's two sides, so both do the same
work (parameter counts checked there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from against_plain import CONFIGS, fake_data, gankit_side, label, plain_side
from gankit.config.layering import resolve
from gankit.training.precision import configure_backends

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = (
    "cudaLaunchKernel",
    "cudaLaunchKernelExC",
    "cuLaunchKernel",
    "cuLaunchKernelEx",
    "cudaMemcpyAsync",
    "cudaMemsetAsync",
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "cudaHostAlloc",
    "cudaMalloc",
    "cudaFree",
)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def count_syncs(step, n: int, device: str) -> tuple[float, list[tuple[str, int]]]:
    """Host syncs per step and where they come from ("file:line: message" -> count over n steps)."""
    if not device.startswith("cuda"):
        return 0.0, []
    where: Counter[str] = Counter()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(n):
                step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message).lower():
            where[f"{Path(w.filename).name}:{w.lineno}: {str(w.message).splitlines()[0][:80]}"] += 1
    return sum(where.values()) / n, where.most_common(12)


def profile(step, n: int, device: str) -> dict:
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith("cuda"):
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(n):
            step()
        sync(device)
    events = prof.key_averages()
    runtime = {e.key: e.count / n for e in events if e.key in RUNTIME}
    ops = sorted((e for e in events if not e.key.startswith("cuda")), key=lambda e: e.self_cpu_time_total, reverse=True)
    top = [(e.key, e.count / n, e.self_cpu_time_total / n / 1e3) for e in ops[:15]]  # (name, calls/step, ms/step)
    return {"runtime_per_step": runtime, "top_self_cpu_ms_per_step": top}


def host_ms(step, n: int, device: str, sync_each: bool) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
        if sync_each:
            sync(device)
    sync(device)
    return (time.perf_counter() - t0) / n * 1e3


def one(name: str, device: str, steps: int) -> dict:
    cfg = resolve(ROOT / "gankit/configs" / f"{name}.yaml", {})
    dev = torch.device(device)
    configure_backends(dev, cfg.train.tf32)
    torch.manual_seed(cfg.seed)
    t = cfg.train
    data = fake_data(cfg, max(4 * t.batch_size * t.d_steps, 512))
    row: dict = {"config": name, "batch": t.batch_size}
    for side in (plain_side(cfg, data, dev), gankit_side(cfg, data, dev)):
        for _ in range(5):  # warm-up: allocator, cuDNN autotuning, lazy optimizer state
            side.step()
        sync(device)
        syncs, where = count_syncs(side.step, steps, device)
        row[side.name] = {
            "syncs_per_step": syncs,
            "sync_sites": where,
            **profile(side.step, steps, device),
            "ms_per_step": host_ms(side.step, steps, device, False),
            "ms_per_step_synced": host_ms(side.step, steps, device, True),
        }
        print(
            f"  {side.name}: {syncs:.2f} syncs/step, {row[side.name]['ms_per_step']:.2f} ms/step "
            f"({row[side.name]['ms_per_step_synced']:.2f} synced each step), runtime calls/step "
            f"{ {k: round(v, 1) for k, v in row[side.name]['runtime_per_step'].items()} }",
            flush=True,
        )
        for site, count in where:
            print(f"      {count / steps:.2f}/step  {site}", flush=True)
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    out = [
        f"### Host syncs and launches per step: {meta['machine']}\n",
        f"```\n{meta['command']}\n```\n",
        f"{meta['date']}, torch {torch.__version__}, {meta['steps']} steps per measurement after 5 warm-up steps.\n",
        "| config | side | syncs / step | kernel launches / step | memcpy / step | ms / step (synced each step) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for side in ("plain", "gankit"):
            s = r[side]
            rt = s["runtime_per_step"]
            launches = sum(v for k, v in rt.items() if "Launch" in k)
            out.append(
                f"| {r['config']} | {side} | {s['syncs_per_step']:.2f} | {launches:.0f} | "
                f"{rt.get('cudaMemcpyAsync', 0):.1f} | {s['ms_per_step']:.2f} ({s['ms_per_step_synced']:.2f}) |"
            )
    for r in rows:
        for side in ("plain", "gankit"):
            out.append(
                f"\n{r['config']}, {side}: sync sites "
                + ("; ".join(f"{c} x {w}" for w, c in r[side]["sync_sites"]) or "none")
            )
            out.append(
                "busiest host ops (ms/step): "
                + ", ".join(f"{k} {ms:.3f} ({calls:.0f}x)" for k, calls, ms in r[side]["top_self_cpu_ms_per_step"][:8])
            )
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", default="recommended/mnist-conditional,reports/001-dcgan-cifar10,recommended/mnist")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    names = [s for s in args.only.split(",") if s]
    known = {label(p) for p in CONFIGS}
    if unknown := [n for n in names if n not in known]:
        print(f"gankit: error: --only {','.join(unknown)}: not a shipped config; names: {', '.join(sorted(known))}")
        return 2
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "steps": args.steps,
        "machine": torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU",
        "command": "PYTHONPATH=. python3 benchmarks/device_profile.py " + " ".join(argv),
    }
    rows = []
    for name in names:
        print(f"{name}", flush=True)
        try:
            rows.append(one(name, args.device, args.steps))
        except Exception:  # noqa: BLE001 - one config's failure must not lose the others' counts
            traceback.print_exc()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_profile.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    (out / "device_profile.md").write_text(markdown(rows, meta))
    print("\n" + markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
