"""Pictures: sample grids, the progress GIF, loss curves, interpolation strips."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .core.io import atomic_write_bytes, read_jsonl, series
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


def thin(items: list[Any], most: int) -> list[Any]:
    """At most ``most`` items spread evenly, the first and the last always kept."""
    if len(items) <= most:
        return items
    idx = sorted({round(i * (len(items) - 1) / (most - 1)) for i in range(most)})
    return [items[i] for i in idx]


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def grid_png(images: torch.Tensor, nrow: int | None = None) -> bytes:
    """A sample grid as PNG bytes, small images enlarged so it is readable when opened."""
    return encode(to_pil(grid(images, nrow), upscale_for(images.shape[-2])))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    """Write a sample grid to ``path`` atomically (a kill never leaves a truncated picture)."""
    atomic_write_bytes(path, grid_png(images, nrow))


GIF_FRAMES = 60  # progress.gif shows at most this many grids, spread evenly over training (the last always kept)
GIF_BYTES = 3_000_000  # what progress.gif aims to stay under: frames are shrunk to share this


def paletted(im: Image.Image) -> Image.Image:
    """An RGB frame reduced to a 256-colour palette for GIF by fast octree quantization: Pillow's own conversion
    when handed RGB frames (median cut) is far slower, and progress.gif encodes every frame
    (docs/notes/code-comments.md; the run's share in docs/notes/against-plain.md, "pix2pix's side work on real
    pairs")."""
    return im.quantize(256, method=Image.Quantize.FASTOCTREE)


def gif_bytes(
    frames: list[Path], ms_per_frame: int = 300, max_frames: int = GIF_FRAMES, max_bytes: int = GIF_BYTES
) -> bytes | None:
    """The sample grids in training order, as an animated GIF (the last frame held longer); None without frames.

    Bounded however long the run trained (200 full-size 64x64 grids made 17 MB): at most ``max_frames`` grids
    (thinned evenly, first and last kept), shrunk when the whole would pass ``max_bytes``. How far depends on the
    pictures: the first and last grids are encoded alone to measure their bytes per pixel (digits on black compress
    far better than noise), and should the result still pass the bound it is shrunk once more."""
    frames = thin(list(frames), max_frames)
    if not frames:
        return None
    imgs = []
    for f in frames:
        with Image.open(f) as im:
            imgs.append(im.convert("RGB"))
    w, h = imgs[-1].size
    per_px = max(len(encode(paletted(im), "GIF")) for im in (imgs[0], imgs[-1])) / (w * h) * 1.1
    scale = min(1.0, math.sqrt(max_bytes / (per_px * len(imgs) * w * h)))
    for _ in range(3):
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        shown = [paletted(im if im.size == size else im.resize(size, Image.BOX)) for im in imgs]
        durations = [ms_per_frame] * (len(shown) - 1) + [ms_per_frame * 5]
        data = encode(
            shown[0], "GIF", save_all=True, append_images=shown[1:], duration=durations, loop=0, optimize=False
        )
        if len(data) <= max_bytes:
            break
        scale *= 0.95 * math.sqrt(max_bytes / len(data))
    return data


def losses_png(metrics_file: str | Path, title: str = "") -> bytes:
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
        if pts := series(rows, k):
            s, v = zip(*pts)
            ax.plot(s, v, label=k.split("/", 1)[1], linewidth=1)
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss")
    ax.set_title(title or "losses")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)
    if eval_keys:
        ax2 = axes[0, 1]
        for k in eval_keys:
            if pts := series(rows, k):
                s, v = zip(*pts)
                ax2.plot(s, v, marker="o", label=k.split("/", 1)[1])
        ax2.set_xlabel("generator step")
        ax2.set_title("evaluation")
        if ax2.get_legend_handles_labels()[0]:
            ax2.legend()
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def figure_png(fig: Any, **savefig_kwargs: Any) -> bytes:
    """A matplotlib figure as PNG bytes (closed afterwards), to be written with atomic_write_bytes: saving to the path
    itself would truncate the user's old file first, and a kill or a full disk would leave half a picture."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, **savefig_kwargs)
    finally:
        plt.close(fig)
    return buf.getvalue()


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
