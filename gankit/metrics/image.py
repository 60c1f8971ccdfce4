"""Paired-image metrics for image-to-image models (pix2pix): L1, PSNR and SSIM of outputs against targets.

Inputs are float tensors (B, C, H, W) in a known range; ``data_range`` is its width: 2.0 for gankit's [-1, 1] (the
default), 1.0 for [0, 1], 255.0 for [0, 255]. Each metric is computed per image and then averaged over the batch, so a
result does not depend on how the images were batched.
"""

from __future__ import annotations

import torch

from ..core.errors import GankitError


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise GankitError(
            f"image metrics need two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def l1(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean absolute difference, in the units of the inputs."""
    _check_pair(x, y)
    return float((x.double() - y.double()).abs().mean())


def psnr_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB of each image pair, 10·log10(data_range² / MSE): (B,) float64; +inf where the images are equal."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean over the batch of per-image PSNR (dB)."""
    return float(psnr_per_image(x, y, data_range).mean())


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian (size,) float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def valid_band(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n - k + 1, n) float64 matrix whose row i holds the 1-D window g (k,) at columns i..i+k-1: ``band @ v`` is the
    'valid' correlation of v (n,) with g."""
    k = g.numel()
    band = torch.zeros(n - k + 1, n, dtype=torch.float64)
    idx = torch.arange(n - k + 1)[:, None] + torch.arange(k)[None, :]
    band.scatter_(1, idx, g.expand(n - k + 1, k))
    return band


def ssim_per_image(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 2.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM of each image pair (B,) float64, as Wang et al. 2004: an 11×11 Gaussian window (σ = 1.5), K1 = 0.01,
    K2 = 0.03, C = (K·data_range)², statistics over 'valid' windows only (no padding, as the authors' ssim_index.m),
    averaged over positions and channels."""
    _check_pair(x, y)
    h, w = x.shape[-2:]
    if h < window or w < window:
        raise GankitError(f"SSIM needs images of at least {window}x{window} pixels, got {h}x{w}")
    g = gaussian_window(window, sigma)
    rows, cols = valid_band(h, g), valid_band(w, g)  # (h - window + 1, h), (w - window + 1, w)
    x, y = x.double(), y.double()

    def blur(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H', W'): each channel on its own
        # The 2-D Gaussian is the outer product of g with itself, so the 'valid' blur is two banded matrix products
        # (float64 BLAS). The depthwise float64 conv2d it replaces had no fast CPU kernel: it was most of pix2pix's
        # validation time (docs/notes/against-plain.md, "pix2pix's side work on real pairs").
        return rows @ t @ cols.T

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean over the batch of per-image SSIM (1 for identical images)."""
    return float(ssim_per_image(x, y, data_range).mean())


def image_metrics(outputs: torch.Tensor, targets: torch.Tensor, data_range: float = 2.0) -> dict[str, float]:
    """``{"l1", "psnr", "ssim"}`` of outputs vs targets (B, C, H, W), default range [-1, 1]. PSNR averages per-image
    values in dB; images identical to their target (infinite PSNR) are capped at 100 dB so the mean stays finite."""
    p = psnr_per_image(outputs, targets, data_range).clamp(max=100.0)
    return {"l1": l1(outputs, targets), "psnr": float(p.mean()), "ssim": ssim(outputs, targets, data_range)}
