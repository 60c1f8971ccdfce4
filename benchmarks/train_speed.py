"""Training-step throughput: gankit's DCGAN step vs the same architecture written plainly, in one run.

The plain version follows the code style of the reports (../shared/reports/): a DataLoader over a dataset,
Sigmoid + BCELoss, the default memory format, two optimizers stepped by hand. Both use the same layer shapes,
batch sizes and thread count, so the ratio isolates gankit's habits (in-memory batches, channels_last, logits
losses, frozen D during G's update, one G forward per step).

    python benchmarks/train_speed.py [--seconds 15] [--rounds 5] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date

import torch
import torch.nn as nn

from gankit.config.layering import resolve
from gankit.data.base import Batcher, ImageData
from gankit.tasks.gan import GANTask as GANRecipe
from gankit.training.loop import usable_cores


# ---- the plain baseline, as the reports write it ---------------------------------------------------------------------
class PlainG(nn.Module):
    def __init__(self, nz: int, ngf: int, nc: int, size: int) -> None:
        super().__init__()
        if size == 64:
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
                nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
        else:  # 28x28
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, ngf * 2, 7, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
                nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.main(x)


class PlainD(nn.Module):
    def __init__(self, ndf: int, nc: int, size: int) -> None:
        super().__init__()
        if size == 64:
            self.main = nn.Sequential(
                nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())
        else:
            self.main = nn.Sequential(
                nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False), nn.Sigmoid())

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


def gankit_step_fn(size: int, nc: int, batch: int, images: torch.Tensor, device: str, channels_last: bool):
    cfg = resolve(overrides={"data.image_size": size, "train.batch_size": batch, "train.channels_last": channels_last,
                             "model.g_channels": 64, "model.d_channels": 64, "train.steps": 1})
    data = ImageData(images, torch.zeros(len(images), dtype=torch.long), "bench")
    recipe = GANRecipe(cfg, data, torch.device(device))
    batcher = Batcher(data, batch, 0, device)

    def step() -> int:
        out = recipe.step(batcher, 0.0)
        if device == "cuda":
            torch.cuda.synchronize()
        float(out["loss/d"])  # gankit syncs only at log steps; count one sync per step to be conservative
        return batch

    return step


def measure(steps: dict, seconds: float, rounds: int) -> dict[str, float]:
    """Round-robin: each variant runs for seconds/rounds per round, so load from other processes hits all alike;
    the median of the rounds is reported."""
    for fn in steps.values():  # warm-up (allocator, oneDNN primitive caches)
        for _ in range(3):
            fn()
    rates: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / rounds:
                n += fn()
            rates[name].append(n / (time.perf_counter() - t0))
    return {k: sorted(v)[len(v) // 2] for k, v in rates.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="timed seconds per variant and size")
    ap.add_argument("--rounds", type=int, default=5, help="round-robin rounds (median reported)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    threads = args.threads or usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for size, nc, batch in [(28, 1, 256), (64, 3, 64)]:
        images = torch.randint(0, 256, (2048, nc, size, size), dtype=torch.uint8)
        r = measure({
            "plain": plain_step_fn(size, nc, batch, images, args.device),
            "gankit": gankit_step_fn(size, nc, batch, images, args.device, channels_last=True),
            "gankit_contiguous": gankit_step_fn(size, nc, batch, images, args.device, channels_last=False),
        }, args.seconds, args.rounds)
        plain, ours, ours_cf = r["plain"], r["gankit"], r["gankit_contiguous"]
        rows.append({"size": size, "batch": batch, "plain": plain, "gankit": ours, "gankit_contiguous": ours_cf,
                     "ratio": ours / plain, "ratio_contiguous": ours_cf / plain})
        print(f"DCGAN {size}x{size}x{nc} B={batch}: plain {plain:7.1f} img/s | gankit {ours:7.1f} img/s "
              f"(x{ours / plain:.2f}) | gankit without channels_last {ours_cf:7.1f} img/s (x{ours_cf / plain:.2f})",
              flush=True)
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.processor() or platform.machine()}, {threads} threads"
    meta = {"date": date.today().isoformat(), "device": dev, "torch": torch.__version__, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=2)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
