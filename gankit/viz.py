"""Pictures: sample grids, the progress GIF, loss curves, interpolation strips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.base import to_uint8


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] or uint8 -> one (H', W', C) uint8 image; nrow images per row."""
    x = images if images.dtype == torch.uint8 else to_uint8(images)
    x = x.cpu()
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    out = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    arr = x.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[top : top + h, left : left + w] = arr[i]
    return out


def to_pil(arr: np.ndarray, scale: int = 1) -> Image.Image:
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def upscale_for(h: int) -> int:
    """Small images (digits at 16-32 px) are enlarged so a grid is readable when opened."""
    return max(1, 64 // h) if h < 64 else 1


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    to_pil(grid(images, nrow), upscale_for(images.shape[-2])).save(path)


def save_gif(frames: list[Path], path: str | Path, ms_per_frame: int = 300) -> None:
    """The sample grids in training order, as an animated GIF (the last frame held longer)."""
    imgs = [Image.open(f).convert("RGB") for f in frames]
    if not imgs:
        return
    size = imgs[-1].size
    imgs = [im.resize(size) if im.size != size else im for im in imgs]
    durations = [ms_per_frame] * (len(imgs) - 1) + [ms_per_frame * 5]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=durations, loop=0, optimize=False)


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: skip it, the rest is good
            continue
    return rows


def plot_losses(metrics_file: str | Path, path: str | Path, title: str = "") -> None:
    """losses.png: D and G losses against step; a second panel for evaluation metrics (e.g. FD) when present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(metrics_file)
    loss_keys = sorted({k for r in rows for k in r if k.startswith("loss/")})
    eval_keys = sorted({k for r in rows for k in r if k.startswith("eval/")})
    panels = 2 if eval_keys else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    for k in loss_keys:
        pts = [(r["step"], r[k]) for r in rows if k in r and "step" in r]
        if pts:
            s, v = zip(*pts)
            ax.plot(s, v, label=k.split("/", 1)[1], linewidth=1)
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss")
    ax.set_title(title or "losses")
    if loss_keys:
        ax.legend()
    ax.grid(alpha=0.3)
    if eval_keys:
        ax2 = axes[0, 1]
        for k in eval_keys:
            pts = [(r["step"], r[k]) for r in rows if k in r]
            if pts:
                s, v = zip(*pts)
                ax2.plot(s, v, marker="o", label=k.split("/", 1)[1])
        ax2.set_xlabel("generator step")
        ax2.set_title("evaluation")
        ax2.legend()
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b; t (T,) in [0, 1] -> (T, D)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    t = t[:, None]
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t[:, None]
    return (1 - t) * a + t * b
