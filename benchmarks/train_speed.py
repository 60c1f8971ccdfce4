"""Training-step throughput against the machine: FLOPs per image, images/s and share of the matmul peak for each
step gankit trains, beside the same step written plainly (as the reports write it) where there is one, in one run.

Rows: report 004's DCGAN (28x28, batch 256), report 000's conditional DCGAN, report 003's 64x64 DCGAN (batch 64),
the default DCGAN, WGAN-GP (n_critic 5) and pix2pix at 256x256 (batch 1 as the paper, and 8). FLOPs are counted
with torch.utils.flop_counter (matmuls and convolutions, forward and backward); the peak is a large fp32 matmul
(and bf16 where faster). Also writes a per-op profile (torch.profiler, top 10 by self CPU time) of the pix2pix and
WGAN-GP steps, and each of their conv and norm layers and optimizer updates timed alone, to show which bounds them.

    python benchmarks/train_speed.py [--quick] [--seconds 10] [--threads N] [--device cpu|cuda] [--only NAME]
        [--no-channels-last --no-fused-adam --tag _before]   # the step as it was before issue 10's changes

``--against plain`` (issue 30) instead times, for every distinct model of the shipped reports and recommended recipes,
gankit's step (the task built from the config through its API, plus the loop's per-step work) INTERLEAVED with the
same step written as plain PyTorch (benchmarks/plain_steps.py) in one process: after a warm-up, rounds of A then B
(the order alternating between rounds, so a steady drift of the machine's speed cancels), the fp32 matmul peak
measured between rounds, medians and the spread of the rounds reported; parameter counts, batch and D/G updates per
step are checked equal. See `against_plain` below.

    PYTHONPATH=. python benchmarks/train_speed.py --against plain [--device cuda] [--rounds 5] [--seconds 2]
        [--threads 2] [--only 004] [--out DIR] [--append BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from gankit.config.layering import resolve
from gankit.data.base import Batcher, ImageData
from gankit.tasks.gan import GANTask
from gankit.tasks.pix2pix import Pix2PixTask
from gankit.training.loop import usable_cores

REPORTS = Path(__file__).resolve().parent.parent / "gankit" / "configs" / "reports"
RESULTS = Path(__file__).resolve().parent / "results"


# ---- the plain baseline, as the reports write it ---------------------------------------------------------------------
class PlainG(nn.Module):
    def __init__(self, nz: int, ngf: int, nc: int, size: int) -> None:
        super().__init__()
        if size == 64:
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
                nn.BatchNorm2d(ngf * 8),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * 4),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * 2),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
                nn.Tanh(),
            )
        else:  # 28x28
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, ngf * 2, 7, 1, 0, bias=False),
                nn.BatchNorm2d(ngf * 2),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
                nn.Tanh(),
            )

    def forward(self, x):
        return self.main(x)


class PlainD(nn.Module):
    def __init__(self, ndf: int, nc: int, size: int) -> None:
        super().__init__()
        if size == 64:
            self.main = nn.Sequential(
                nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 2),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 4),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 8),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
                nn.Sigmoid(),
            )
        else:
            self.main = nn.Sequential(
                nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 2),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False),
                nn.Sigmoid(),
            )

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def plain_step_fn(size: int, nc: int, batch: int, images: torch.Tensor, device: str):
    """One training step of the plain loop (the PyTorch DCGAN example's structure); returns images done."""
    ds = torch.utils.data.TensorDataset(images.float().div(127.5).sub(1), torch.zeros(len(images)))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True)
    netG, netD = PlainG(100, 64, nc, size).to(device), PlainD(64, nc, size).to(device)
    criterion = nn.BCELoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    it = iter(loader)

    def step() -> int:
        nonlocal it
        try:
            data, _ = next(it)
        except StopIteration:
            it = iter(loader)
            data, _ = next(it)
        real = data.to(device)
        b = real.size(0)
        netD.zero_grad()
        label = torch.full((b,), 1.0, device=device)
        errD_real = criterion(netD(real), label)
        errD_real.backward()
        noise = torch.randn(b, 100, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(0.0)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        optD.step()
        netG.zero_grad()
        label.fill_(1.0)
        errG = criterion(netD(fake), label)
        errG.backward()
        optG.step()
        _ = errD_real.item() + errD_fake.item() + errG.item()  # the reports print these every step
        return b

    return step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, n: int, device: str, seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n matmul in ``dtype`` (best of repeated timings)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def fake_data(cfg, n: int) -> ImageData:
    """Random uint8 images (and targets for pix2pix, labels for conditional runs) of the config's shape."""
    s, c = cfg.data.image_size, (cfg.data.channels or 1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g)
    k = cfg.model.num_classes
    labels = torch.randint(0, max(k, 1), (n,), generator=g) if k else torch.full((n,), -1)
    targets = (
        torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=g) if cfg.model.name == "pix2pix" else None
    )
    return ImageData(images, labels, "bench", [str(i) for i in range(k)], targets)


def build(cfg, device: str):
    """(task, batcher) for a config on random data."""
    data = fake_data(cfg, max(4 * cfg.train.batch_size * cfg.train.d_steps, 64))
    task = (Pix2PixTask if cfg.model.name == "pix2pix" else GANTask)(cfg, data, torch.device(device), None)
    return task, Batcher(data, cfg.train.batch_size, 0, device)


class _Flops(TorchDispatchMode):
    """FlopCounterMode's per-op formulas without its module tracker (which cannot follow autograd.grad, so it fails
    on the double backward of WGAN-GP's penalty)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (f := flop_registry.get(func.overloadpacket)) is not None:
            self.total += f(*args, **(kwargs or {}), out_val=out)
        return out


def flops_per_image(task, batcher) -> float:
    with _Flops() as fc:
        task.step(batcher, 0.0)
    return fc.total / task.images_per_step()


def cases(quick: bool) -> dict:
    """name -> (config, plain baseline size or None)."""
    big = 128 if quick else 256
    p2p = {
        "model.name": "pix2pix",
        "data.image_size": big,
        "data.channels": 1,
        "data.jitter": False,
        "data.flip": False,
    }
    return {
        "report 004 DCGAN 28x28, batch 256": (resolve(REPORTS / "004-dcgan-mnist.yaml", {"data.name": "digits"}), None),
        "report 000 conditional DCGAN, batch 256": (
            resolve(REPORTS / "000-condgan-mnist.yaml", {"data.name": "digits"}),
            None,
        ),
        "report 003 DCGAN 64x64, batch 64": (
            resolve(REPORTS / "003-dcgan-cifar10.yaml", {"data.name": "digits", "data.channels": 3}),
            64,
        ),
        "default DCGAN 32x32, batch 64": (resolve(overrides={}), None),
        "DCGAN 28x28, batch 256 (plain-comparable)": (
            resolve(overrides={"data.image_size": 28, "train.batch_size": 256}),
            28,
        ),
        "WGAN-GP n_critic 5, 32x32, batch 64": (
            resolve(overrides={"loss.name": "wgan-gp", "train.d_steps": 5, "model.d_batchnorm": False}),
            None,
        ),
        f"pix2pix {big}x{big}, batch 1": (resolve(overrides={**p2p, "train.batch_size": 1}), None),
        f"pix2pix {big}x{big}, batch 8": (resolve(overrides={**p2p, "train.batch_size": 8}), None),
    }


def timed(fn, seconds: float, min_steps: int = 2) -> float:
    """Images/s of ``fn`` (which returns images done) over at least ``seconds`` and ``min_steps`` calls."""
    n, k, t0 = 0, 0, time.perf_counter()
    while k < min_steps or time.perf_counter() - t0 < seconds:
        n += fn()
        k += 1
    return n / (time.perf_counter() - t0)


def task_step_fn(task, batcher, device: str):
    def step() -> int:
        out = task.step(batcher, 0.0)
        sync(device)
        float(out["loss/d"])  # gankit syncs only at log steps; count one sync per step to be conservative
        return task.images_per_step()

    return step


def profile(task, batcher, path: Path, steps: int = 2) -> list[dict]:
    """Top 10 ops by self CPU time over ``steps`` steps, written as text to ``path``."""
    from torch.profiler import ProfilerActivity, profile as prof

    task.step(batcher, 0.0)
    with prof(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(steps):
            task.step(batcher, 0.0)
    table = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)
    path.write_text(table)
    ev = sorted(p.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    total = sum(e.self_cpu_time_total for e in p.key_averages())
    return [
        {
            "op": e.key,
            "self_cpu_ms": round(e.self_cpu_time_total / 1e3 / steps, 2),
            "share": round(e.self_cpu_time_total / total, 3),
        }
        for e in ev
    ]


def kernels_alone(task, batcher, peak: float, device: str, seconds: float, step_s: float) -> list[dict]:
    """Each conv and norm layer of G and D timed alone (forward + backward at its input's shape and memory format in
    the step), and each optimizer's update alone: GFLOP/s and share of the matmul peak (convs), and the share of the
    step's time (``calls`` per step x its time / ``step_s``; an estimate: backward passes that skip weight gradients
    or differentiate twice are counted as one plain backward). Heaviest first: names the kernels that bound the step."""
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d)
    seen: dict[nn.Module, list] = {}

    def keep(m, i, o) -> None:  # a hook that returned a value would replace the layer's output
        seen.setdefault(
            m,
            [tuple(i[0].shape), i[0].is_contiguous(memory_format=torch.channels_last) and not i[0].is_contiguous(), 0],
        )[2] += 1

    hooks = [m.register_forward_hook(keep) for net in (task.g, task.d) for m in net.modules() if isinstance(m, kinds)]
    task.step(batcher, 0.0)
    for h in hooks:
        h.remove()
    rows = []
    for m, (shape, cl, calls) in seen.items():
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = torch.randn(shape, device=device).contiguous(memory_format=fmt).requires_grad_()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            mm = type(m)(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
            name = f"{type(m).__name__}({m.in_channels}->{m.out_channels}, k{m.kernel_size[0]} s{m.stride[0]})"
        else:
            mm = type(m)(m.num_features, affine=m.affine)
            name = f"{type(m).__name__}({m.num_features})"
        mm = mm.to(device).to(memory_format=fmt)
        grad = torch.randn_like(mm(x))

        def fb() -> int:
            mm(x).backward(grad)
            sync(device)
            return 1

        with _Flops() as fc:
            fb()
        rate = timed(fb, seconds / 20, 2)
        ms = 1e3 / rate
        rows.append(
            {
                "layer": f"{name} on {list(shape)}{' cl' if cl else ''}",
                "calls": calls,
                "ms": round(ms, 2),
                "gflops": round(fc.total * rate / 1e9, 1),
                "share_of_peak": round(fc.total * rate / 1e9 / peak, 3),
                "share_of_step": round(calls * ms / 1e3 / step_s, 3),
            }
        )
    for k, opt in task.optimizers.items():  # the update alone, with the gradients the step left
        n = sum(p.numel() for grp in opt.param_groups for p in grp["params"])
        rate = timed(lambda: (opt.step(), sync(device), 1)[-1], seconds / 20, 2)
        calls = task.cfg.train.d_steps if k == "d" else 1
        rows.append(
            {
                "layer": f"{type(opt).__name__} {k} ({n / 1e6:.1f} M parameters"
                f"{', fused' if opt.param_groups[0].get('fused') else ''})",
                "calls": calls,
                "ms": round(1e3 / rate, 2),
                "share_of_step": round(calls / rate / step_s, 3),
            }
        )
    return sorted(rows, key=lambda r: -r["share_of_step"])


def main() -> int:
    if "--against" in sys.argv:
        from against_plain import against_plain  # imports this module's helpers; here, not at the top: no cycle

        return against_plain(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pix2pix at 128x128 and shorter timings")
    ap.add_argument("--seconds", type=float, default=0, help="timed seconds per row (default 10, quick 4)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=str(RESULTS / "train_speed.json"))
    ap.add_argument("--only", default="", help="only rows whose name contains this")
    ap.add_argument("--tag", default="", help="suffix of the profile files (e.g. _before)")
    ap.add_argument("--no-channels-last", action="store_true", help="train.channels_last=false (to compare)")
    ap.add_argument("--no-fused-adam", action="store_true", help="Adam's per-parameter loop (to compare)")
    args = ap.parse_args()
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    threads = args.threads or usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    n = 2048 if args.quick else 4096
    peak32 = matmul_peak(torch.float32, n, args.device)
    peak16 = matmul_peak(torch.bfloat16, n, args.device)
    peak = peak32
    print(f"matmul peak ({n}x{n}): fp32 {peak32:.1f} GFLOP/s, bf16 {peak16:.1f} GFLOP/s", flush=True)
    rows, extra = [], {}
    for name, (cfg, plain_size) in cases(args.quick).items():
        if args.only not in name:
            continue
        if args.no_channels_last:
            cfg = replace(cfg, train=replace(cfg.train, channels_last=False))
        task, batcher = build(cfg, args.device)
        if args.no_fused_adam:
            for opt in task.optimizers.values():
                for grp in opt.param_groups:
                    grp["fused"] = None
        task.step(batcher, 0.0)  # warm-up (allocator, oneDNN primitive caches)
        fpi = flops_per_image(task, batcher)
        ips = timed(task_step_fn(task, batcher, args.device), seconds)
        row = {
            "step": name,
            "gflop_per_image": round(fpi / 1e9, 3),
            "gankit_img_s": round(ips, 2),
            "share_of_peak": round(ips * fpi / 1e9 / peak, 3),
        }
        if plain_size is not None:
            b = cfg.train.batch_size
            images = torch.randint(
                0, 256, (max(8 * b, 512), cfg.data.channels or 1, plain_size, plain_size), dtype=torch.uint8
            )
            plain = plain_step_fn(plain_size, cfg.data.channels or 1, b, images, args.device)
            plain()
            row["plain_img_s"] = round(timed(plain, seconds), 2)
            row["gankit_over_plain"] = round(ips / row["plain_img_s"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        tag = {"WGAN-GP": "wgan_gp", "pix2pix": f"pix2pix_b{cfg.train.batch_size}"}.get(name.split()[0])
        if tag is not None:  # the steps below the target: where their time goes
            extra[f"profile_{tag}"] = profile(
                task, batcher, RESULTS / f"profile_{tag}{args.tag}.txt", steps=2 if tag == "wgan_gp" else 1
            )
            if row["share_of_peak"] < 0.7:
                step_s = task.images_per_step() / ips
                extra[f"kernels_alone_{tag}"] = kernels_alone(task, batcher, peak, args.device, seconds, step_s)
        del task, batcher
    dev = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()}, {threads} threads"
    )
    meta = {
        "date": date.today().isoformat(),
        "device": dev,
        "torch": torch.__version__,
        "load": os.getloadavg(),
        "quick": args.quick,
        "seconds": seconds,
        "channels_last": not args.no_channels_last,
        "fused_adam": not args.no_fused_adam,
        "peak_fp32_gflops": round(peak32, 1),
        "peak_bf16_gflops": round(peak16, 1),
        "rows": rows,
        **extra,
    }
    Path(args.json).write_text(json.dumps(meta, indent=2))
    print(json.dumps({k: v for k, v in meta.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
