"""Whole-tensor image transforms on uint8 (N, C, H, W) data."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: int | tuple[int, int], chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) to ``size``; antialiased bilinear, so shrinking does not alias."""
    hw = (size, size) if isinstance(size, int) else size
    if tuple(images.shape[-2:]) == hw:
        return images
    out = []
    for i in range(0, images.shape[0], chunk):  # bounded memory for large sets
        x = images[i : i + chunk].to(torch.float32)
        x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], *hw))


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """1 <-> 3 channels; RGB to gray uses ITU-R 601 luma, as Pillow does."""
    c = images.shape[1]
    if channels in (0, c):
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.to(torch.float32) * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {c} channels to {channels}")
