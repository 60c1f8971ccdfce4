"""The pix2pix training jitter: resize up, crop back at a random place and mirror, the same for an input and its
target, so the pair stays aligned."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core.errors import GankitError


def default_load_size(image_size: int, load_size: int = 0) -> int:
    """``data.load_size``, or when 0 the pix2pix ratio 286/256 of the image size (64 -> 72, 256 -> 286)."""
    return load_size if load_size > 0 else int(round(image_size * 286 / 256))


def augment_pairs(
    a: torch.Tensor, b: torch.Tensor, load_size: int, flip: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pix2pix training jitter, applied identically to each input and its target.

    a: (B, C_a, H, W), b: (B, C_b, H, W), float (e.g. [-1, 1]). Both are resized (bilinear) to load_size x load_size
    (non-square: load_size wide, the height in proportion),
    cropped back to H x W at a random position per sample (the same for a and b), and, when ``flip``, mirrored left
    to right per sample with probability 1/2. Returns new tensors of the input shapes, on the input device; the
    result is a pure function of the inputs and the generator's state (draws happen on the generator's device).
    """
    if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must be aligned batches")
    n, ca, h, w = a.shape
    if load_size < w:
        raise GankitError(f"data.load_size={load_size} must be >= the image width {w}")
    load_h = load_size if h == w else round(h * load_size / w)  # non-square: the aspect ratio kept
    x = torch.cat([a, b.to(a.dtype)], 1)  # one resize and one gather for both sides keeps them aligned
    if load_size != w or load_h != h:
        x = F.interpolate(x, size=(load_h, load_size), mode="bilinear", align_corners=False)
    gdev = generator.device
    top = torch.randint(0, load_h - h + 1, (n,), generator=generator, device=gdev).to(x.device)
    left = torch.randint(0, load_size - w + 1, (n,), generator=generator, device=gdev).to(x.device)
    cols = torch.arange(w, device=x.device).expand(n, w)
    if flip:
        mirror = torch.rand(n, generator=generator, device=gdev).to(x.device) < 0.5
        cols = torch.where(mirror[:, None], (w - 1) - cols, cols)  # a flip is reading the crop's columns backwards
    rows = top[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = left[:, None] + cols  # (B, W)
    bi = torch.arange(n, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C_a + C_b, H, W)
    return out[:, :ca].contiguous(), out[:, ca:].to(b.dtype).contiguous()
