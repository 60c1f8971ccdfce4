"""gankit's training step against the same step in plain PyTorch, interleaved in one process (issue 30).

Run as ``benchmarks/train_speed.py --against plain`` (see there). For each distinct model/step shape of the shipped
report configs and recommended recipes (configs with the same model section, image shape, batch, D steps, loss,
optimizer and EMA collapse into one row that names them all):

- gankit's side is the task built from the resolved config through its normal API (``task_of(cfg).build``) over a
  :class:`gankit.data.Batcher`, stepped the way the training loop steps it (learning rates set, ``task.step``, the
  loop's finiteness check of the step's outputs on the CPU);
- the plain side is benchmarks/plain_steps.py: nn.Sequential G and D with the same layer shapes, torch.optim with
  its defaults, BCE with logits, default memory format, data as an in-memory float tensor.

Both sides are checked to do the same work (G and D parameter counts equal, same batch and D updates per step) and
the counts are printed. After a warm-up, ``--rounds`` rounds each time both sides for about ``--seconds`` each (a
fixed number of steps calibrated in the warm-up, with a device sync before and after on CUDA), the order alternating
A B, B A, ... so a steady drift of the machine's speed hits both alike; the fp32 matmul peak is measured before every
round. Reported: medians over rounds, the spread (min-max) of the rounds, the ratio gankit/plain of each round
(median and min-max), FLOPs per image (torch.utils.flop_counter's formulas on one step of each side) and each side's
share of the median peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

import plain_steps as P
from gankit.config.layering import resolve
from gankit.config.schema import Config, parse_set
from gankit.core.errors import GankitError
from gankit.data.base import Batcher, ImageData
from gankit.tasks import task_of
from gankit.training.parts import nonfinite, set_lr
from gankit.training.precision import configure_backends
from gankit.workers import usable_cores
from train_speed import _Flops, sync

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [
    *sorted((ROOT / "gankit/configs/reports").glob("*.yaml")),
    *sorted((ROOT / "gankit/configs/recommended").glob("*.yaml")),
]
CHANNELS = {"mnist": 1, "fashion-mnist": 1, "digits": 1, "cifar10": 3, "folder": 3}  # data.channels 0: the set's own


def channels(cfg: Config) -> int:
    return cfg.data.channels or CHANNELS.get(cfg.data.name, 3)


def label(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def signature(cfg: Config) -> str:
    """What makes two configs the same model/step shape here: the model keys the model reads (not its init), image
    shape, batch, D updates per step, loss, EMA, augmentation. Not the data set's name, the budget, or the optimizer's
    kind and settings (an elementwise update of the same tensors; the configs that differ only there are named in
    the row)."""
    from gankit.config.schema import to_dict
    from gankit.nets import MODELS

    t = cfg.train
    model = {k: v for k, v in to_dict(cfg.model).items() if k in MODELS.get(cfg.model.name).fields and k != "init"}
    return json.dumps(
        [
            model,
            cfg.data.image_size,
            channels(cfg),
            t.batch_size,
            t.d_steps,
            cfg.loss.name,
            t.ema_half_life > 0,
            t.augment,
        ],
        sort_keys=True,
    )


# The config that names its row when several share a step (the issue's and the reports' main ones, MNIST first).
PREFERRED = (
    "004-dcgan-mnist",
    "001-dcgan-mnist",
    "000-condgan-mnist",
    "000-convgan-mnist",
    "000-mlp-bn-mnist",
    "000-mlp-mnist",
    "001-gan-z100-mnist",
)


def distinct_cases() -> list[tuple[str, Path, Config, list[str]]]:
    """(name, file, config, other configs with the same step) for every distinct step among the shipped configs."""
    seen: dict[str, tuple[str, Path, Config, list[str]]] = {}
    for path in sorted(CONFIGS, key=lambda p: p.stem not in PREFERRED):  # stable: otherwise in file order
        cfg = resolve(path, {})
        sig = signature(cfg)
        if sig in seen:
            seen[sig][3].append(label(path))
        else:
            seen[sig] = (label(path), path, cfg, [])
    order = {label(p): i for i, p in enumerate(CONFIGS)}
    return sorted(seen.values(), key=lambda c: order[c[0]])


# ---- the plain side: which plain builder stands for which gankit model (a registry, not an if-chain) -------------
def _dcgan(c: Config, nc: int):
    m = c.model
    return P.dcgan(
        c.data.image_size,
        nc,
        m.z_dim,
        m.g_channels,
        m.d_channels,
        m.g_batchnorm,
        m.d_batchnorm,
        m.num_classes,
        m.g_class_norm and m.num_classes > 0,
        m.max_channels,
    )


def _dcgan_tf(c: Config, nc: int):
    m = c.model
    return P.dcgan_tf(
        c.data.image_size,
        nc,
        m.z_dim,
        m.g_channels,
        m.d_channels,
        m.g_batchnorm,
        m.d_batchnorm,
        m.d_dropout,
        m.num_classes,
    )


def _mlp(c: Config, nc: int):
    m = c.model
    return P.mlp(
        (nc, c.data.image_size, c.data.image_size),
        m.z_dim,
        list(m.g_hidden),
        list(m.d_hidden),
        m.g_batchnorm,
        m.d_batchnorm,
        m.g_activation,
        m.d_activation,
        m.num_classes,
    )


PLAIN_MODELS: dict[str, Callable] = {
    "dcgan": _dcgan,
    "dcgan-tf": _dcgan_tf,
    "dcgan-3conv": lambda c, nc: P.dcgan_3conv(
        c.data.image_size, nc, c.model.z_dim, c.model.g_channels, c.model.d_channels, c.model.g_dropout
    ),
    "dcgan-upsample": lambda c, nc: P.dcgan_upsample(
        c.data.image_size,
        nc,
        c.model.z_dim,
        c.model.g_channels,
        c.model.d_channels,
        c.model.g_dropout,
        c.model.d_dropout,
    ),
    "mlp": _mlp,
    "mlp-maxout": lambda c, nc: P.mlp_maxout(
        (nc, c.data.image_size, c.data.image_size),
        c.model.z_dim,
        list(c.model.g_hidden),
        list(c.model.d_hidden),
        c.model.d_dropout,
    ),
}
PLAIN_LOSSES = {"non_saturating": "bce", "wgan": "wgan"}  # gankit loss -> plain_step's


def fake_data(cfg: Config, n: int) -> ImageData:
    s, c, k = cfg.data.image_size, channels(cfg), cfg.model.num_classes
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, k, (n,), generator=g) if k else torch.full((n,), -1)
    return ImageData(images, labels, "bench", [str(i) for i in range(k)])


@dataclass
class Side:
    name: str
    step: Callable[[], int]  # one training step; returns images used
    g: torch.nn.Module
    d: torch.nn.Module
    images_per_step: int


def gankit_side(cfg: Config, data: ImageData, device: torch.device) -> Side:
    """gankit's task from the config, stepped as gankit/training/loop.py steps it."""
    task = task_of(cfg).build(cfg, data, device, None)
    batcher = Batcher(data, cfg.train.batch_size, cfg.seed, device)
    check_every_step = device.type == "cpu"  # as the loop: a finiteness check every step on the CPU, else at log steps
    done = [0]

    def step() -> int:
        set_lr(task.optimizers, cfg.optim, 1.0, 0.0)
        out = task.step(batcher, 0.0)
        done[0] += 1
        if (check_every_step or done[0] % cfg.train.log_every == 0) and nonfinite(out):
            raise RuntimeError("gankit's step gave NaN/Inf")
        return task.images_per_step()

    return Side("gankit", step, task.g, task.d, task.images_per_step())


def plain_side(cfg: Config, data: ImageData, device: torch.device) -> Side:
    if cfg.model.name not in PLAIN_MODELS:
        raise KeyError(f"no plain version of model {cfg.model.name!r}")
    if cfg.loss.name not in PLAIN_LOSSES:
        raise KeyError(f"no plain version of loss {cfg.loss.name!r}")
    torch.manual_seed(cfg.seed)
    g, d = PLAIN_MODELS[cfg.model.name](cfg, channels(cfg))
    o, t = cfg.optim, cfg.train
    images = data.images.to(device).float().div(127.5).sub(1)  # the user's tensor data set
    labels = data.labels.to(device) if cfg.model.num_classes else None
    ema_beta = 0.5 ** (t.batch_size / (t.ema_half_life * 1000.0)) if t.ema_half_life > 0 else 0.0
    step = P.plain_step(
        g,
        d,
        images,
        labels,
        batch=t.batch_size,
        nz=cfg.model.z_dim,
        loss=PLAIN_LOSSES[cfg.loss.name],
        optim=o.name,
        lr=(o.lr_g, o.lr_d),
        betas=(o.beta1, o.beta2),
        d_steps=t.d_steps,
        clip=cfg.loss.clip if cfg.loss.name == "wgan" else 0.0,
        ema_beta=ema_beta,
        device=str(device),
    )
    return Side("plain", step, g, d, t.batch_size * t.d_steps)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def run_steps(side: Side, n: int, device: str, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds for ``n`` steps on ``clock``, the device idle before and after."""
    sync(device)
    t0 = clock()
    for _ in range(n):
        side.step()
    sync(device)
    return clock() - t0


# "wall": elapsed time. "cpu": this process's CPU time, for a CPU run with one thread on a shared machine: time the
# process spends descheduled while other processes run is not counted, so their load moves it only through shared
# caches and memory bandwidth and the rounds spread far less (with several threads it would count spin-waits as work).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def peak_gflops(n: int, device: str, clock: Callable[[], float], calls: int = 3) -> float:
    """GFLOP/s of an n x n fp32 matmul on ``clock`` (the best of ``calls``), as the sides' steps are timed."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(calls):
        sync(device)
        t0 = clock()
        a @ b
        sync(device)
        best = min(best, clock() - t0)
    return 2 * n**3 / best / 1e9


def flops_per_image(side: Side) -> float:
    with _Flops() as fc:
        side.step()
    return fc.total / side.images_per_step


def spread(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "q1": q[0], "q3": q[2]}


def measure(name: str, cfg: Config, device: str, rounds: int, seconds: float, peak_n: int, clock: str = "wall") -> dict:
    dev = torch.device(device)
    configure_backends(dev, cfg.train.tf32)  # both sides run under gankit's default backend settings (TF32 on CUDA)
    torch.manual_seed(cfg.seed)
    t = cfg.train
    data = fake_data(cfg, max(4 * t.batch_size * t.d_steps, 512))
    sides = [plain_side(cfg, data, dev), gankit_side(cfg, data, dev)]
    plain, gk = sides
    counts = {s.name: (n_params(s.g), n_params(s.d)) for s in sides}
    print(
        f"  parameters G/D: plain {counts['plain'][0]:,}/{counts['plain'][1]:,}, "
        f"gankit {counts['gankit'][0]:,}/{counts['gankit'][1]:,}; batch {t.batch_size}, {t.d_steps} D update(s) "
        f"+ 1 G update per step on both",
        flush=True,
    )
    assert counts["plain"] == counts["gankit"], f"{name}: plain and gankit parameter counts differ: {counts}"
    assert plain.images_per_step == gk.images_per_step
    for s in sides:  # warm-up, excluded: allocator, oneDNN/cuDNN kernel choice, lazy optimizer state
        run_steps(s, 2, device)
    fpi = {s.name: flops_per_image(s) for s in sides}
    n_steps = {}
    for s in sides:  # calibrate: steps for about `seconds` (at least one)
        k, el = 1, run_steps(s, 1, device)
        while el < 0.25 * seconds and k < 64:
            k *= 2
            el = run_steps(s, k, device)
        n_steps[s.name] = max(1, round(seconds * k / el))
    rates: dict[str, list[float]] = {"plain": [], "gankit": []}
    ratios, peaks = [], []
    for r in range(rounds):
        peaks.append(peak_gflops(peak_n, device, CLOCKS[clock]))
        got = {}
        for s in sides if r % 2 == 0 else sides[::-1]:
            n = n_steps[s.name]
            got[s.name] = n * s.images_per_step / run_steps(s, n, device, CLOCKS[clock])
            rates[s.name].append(got[s.name])
        ratios.append(got["gankit"] / got["plain"])
        print(
            f"  round {r + 1}/{rounds}: plain {got['plain']:.1f} img/s, gankit {got['gankit']:.1f} img/s, "
            f"ratio {ratios[-1]:.2f}, peak {peaks[-1]:.0f} GFLOP/s",
            flush=True,
        )
    peak = statistics.median(peaks)
    row = {
        "model": name,
        "params_g": counts["gankit"][0],
        "params_d": counts["gankit"][1],
        "batch": t.batch_size,
        "d_steps": t.d_steps,
        "steps_per_round": n_steps,
        "gflop_per_image": {k: v / 1e9 for k, v in fpi.items()},
        "img_s": {k: spread(v) for k, v in rates.items()},
        "ratio": spread(ratios),
        "rounds": rounds,
        "raw": {"plain": rates["plain"], "gankit": rates["gankit"], "ratio": ratios, "peak": peaks},
        "peak_gflops": spread(peaks),
        "clock": clock,
    }
    row["share_of_peak"] = {k: row["img_s"][k]["median"] * fpi[k] / 1e9 / peak for k in fpi}
    return row


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 100_000 else f"{n / 1e3:.1f} k"


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def table(rows: list[dict]) -> str:
    head = (
        "| model (config; same step in) | params G / D | batch × D updates | GFLOP / img | plain img/s (min–max) "
        "| gankit img/s (min–max) | gankit / plain, median (min–max of rounds) | share of fp32 peak plain / gankit |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        same = f"; also {', '.join(r['same_step'])}" if r.get("same_step") else ""
        p, g, q = r["img_s"]["plain"], r["img_s"]["gankit"], r["ratio"]
        lines.append(
            f"| {r['model']}{same} | {_params(r['params_g'])} / {_params(r['params_d'])} | {r['batch']} × "
            f"{r['d_steps']} | {r['gflop_per_image']['gankit']:.3f} | {_num(p['median'])} ({_num(p['min'])}–{_num(p['max'])}) "
            f"| {_num(g['median'])} ({_num(g['min'])}–{_num(g['max'])}) | **×{q['median']:.2f}** "
            f"({q['min']:.2f}–{q['max']:.2f}) | {100 * r['share_of_peak']['plain']:.0f} % / "
            f"{100 * r['share_of_peak']['gankit']:.0f} % |"
        )
    return head + "\n".join(lines) + "\n"


def machine(device: str, threads: int) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, {threads} thread(s)"


def section(meta: dict, rows: list[dict]) -> str:
    load = ", ".join(f"{a:.1f}" for a in meta["load_start"]) + " → " + ", ".join(f"{a:.1f}" for a in meta["load_end"])
    pk = [r["peak_gflops"] for r in rows]
    peak = f"{min(p['min'] for p in pk):.0f}–{max(p['max'] for p in pk):.0f} GFLOP/s over the run" if pk else "—"
    return (
        f"### gankit vs plain PyTorch, interleaved: {meta['machine']}\n\n```\n{meta['command']}\n```\n\n"
        f"{meta['date']}, torch {meta['torch']}, {meta['device']}; `uptime` load (1/5/15 min) {load}; "
        f"{meta['rounds']} rounds of about {meta['seconds']} s per side after a warm-up, order alternating, timed by "
        f"{'process CPU time (one thread)' if meta['clock'] == 'cpu' else 'wall clock'}; "
        f"fp32 matmul peak ({meta['peak_n']}²{', TF32 on' if meta['tf32'] else ''}) measured before each round: "
        f"{peak}. Shares of peak use each row's median peak and each side's own FLOPs per image "
        f"(the column shows gankit's)."
        + (f" **Every config overridden with {', '.join(meta['set'])}.**" if meta.get("set") else "")
        + "\n\n"
        + table(rows)
    )


def against_plain(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="train_speed.py --against plain", description=__doc__.splitlines()[0])
    ap.add_argument("--against", choices=["plain"], required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--seconds", type=float, default=0, help="timed seconds per side per round (default 2 cpu, 0.5 cuda)"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: the cores this process may use)")
    ap.add_argument("--only", default="", help="comma-separated substrings: only configs whose name has one")
    ap.add_argument("--skip", default="", help="comma-separated substrings: leave these configs out")
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall (default) or cpu: process CPU time, for --threads 1 on a loaded shared CPU",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override every config (e.g. train.batch_size=8 for a quick check; the table says so)",
    )
    ap.add_argument("--peak-n", type=int, default=0, help="matmul size for the peak (default 2048 cpu, 8192 cuda)")
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results"),
        help="folder for against_plain.json and against_plain.md (written after every model)",
    )
    ap.add_argument("--tag", default="", help="suffix of the output files")
    ap.add_argument("--append", default="", help="also append the markdown section to this file (e.g. BENCHMARKS.md)")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.clock == "cpu" and (cuda or (args.threads or usable_cores()) != 1):
        print("gankit: error: --clock cpu measures one CPU thread's work; use it with --device cpu --threads 1")
        return 2
    seconds = args.seconds or (0.5 if cuda else 2.0)
    peak_n = args.peak_n or (8192 if cuda else 2048)
    threads = args.threads or usable_cores()
    torch.set_num_threads(threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    every = distinct_cases()
    names = {c[0] for c in every}

    def picked(name: str, tokens: list[str]) -> bool:  # a token that is a whole name matches that name only
        return any(t == name or (t not in names and t in name) for t in tokens)

    only = [s for s in args.only.split(",") if s]
    skip = [s for s in args.skip.split(",") if s]
    cases = [c for c in every if (not only or picked(c[0], only)) and not picked(c[0], skip)]
    if not cases:
        print(
            f"gankit: error: --only {args.only!r} --skip {args.skip!r} leave no config; names: {', '.join(sorted(names))}"
        )
        return 2
    if args.set:
        try:
            overrides = dict(parse_set(kv) for kv in args.set)
            cases = [(name, path, resolve(path, overrides), same) for name, path, _, same in cases]
        except GankitError as e:
            print(f"gankit: error: --set: {e}")
            return 2
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(args.device, threads),
        "device": args.device,
        "threads": threads,
        "torch": torch.__version__,
        "rounds": args.rounds,
        "seconds": seconds,
        "peak_n": peak_n,
        "clock": args.clock,
        "tf32": cuda and torch.backends.cuda.matmul.allow_tf32,
        "command": "PYTHONPATH=. python3 benchmarks/train_speed.py " + " ".join(argv),
        "set": list(args.set),
        "load_start": list(os.getloadavg()),
    }
    rows: list[dict] = []
    for i, (name, _, cfg, same) in enumerate(cases):
        print(f"[{i + 1}/{len(cases)}] {name}" + (f" (same step: {', '.join(same)})" if same else ""), flush=True)
        row = measure(name, cfg, args.device, args.rounds, seconds, peak_n, args.clock)
        row["same_step"] = same
        rows.append(row)
        meta["tf32"] = cuda and torch.backends.cuda.matmul.allow_tf32
        meta["load_end"] = list(os.getloadavg())
        md = section(meta, rows)
        (out / f"against_plain{args.tag}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        (out / f"against_plain{args.tag}.md").write_text(md)
    print("\n" + md)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as f:
            f.write("\n" + md)
    return 0
