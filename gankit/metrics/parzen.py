"""Parzen-window log-likelihood, with the protocol of Goodfellow et al. 2014 (``parzen_ll.py`` in goodfeli/adversarial).

A Gaussian kernel of width σ sits on each of N generated samples s_i (pixels scaled to [0, 1], flattened to D values):

    log p(x) = logsumexp_i(-||x - s_i||² / (2σ²)) - log N - D·log(σ·sqrt(2π))

σ is chosen from ``logspace(-1, 0, 10)`` by the mean log-likelihood of a validation set; the reported figure is the mean
over the test set ± its standard error (std with ddof=0 / sqrt(n), as the original script). It is a poor estimator in
784 dimensions (Theis et al. 2016) and is reported for comparison with the 2014 paper, not as a verdict.

Computed in float64 blocks of (test rows × sample rows) with a running log-sum-exp, so memory is one block, never an
N×M×D tensor; the squared distances of a block are computed once and reused for every candidate σ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..core.errors import GankitError
from .fd import ArrayLike
from .prdc import as_rows, squared_distances

SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.logspace(-1, 0, 10))


def flatten01(x: ArrayLike) -> torch.Tensor:
    """Images or vectors -> (N, D) float64. uint8 input (any shape (N, ...)) is divided by 255 to [0, 1]; float input is
    taken as already in [0, 1]."""
    t = as_rows(x)
    return t.to(torch.float64) / 255.0 if t.dtype == torch.uint8 else t.to(torch.float64)


def _log_likelihoods(
    samples: ArrayLike, test: ArrayLike, sigmas: Sequence[float], batch: int, sample_batch: int
) -> np.ndarray:
    """(len(sigmas), N_test) log-likelihoods of each test point under the Parzen window of each σ."""
    # Kept in their own dtype and converted block by block: 10,000 CIFAR samples would be 250 MB in float64.
    s, t = as_rows(samples), as_rows(test)
    if s.shape[1] != t.shape[1]:
        raise GankitError(f"Parzen: samples have {s.shape[1]} values per image, test points {t.shape[1]}")
    if s.shape[0] == 0 or t.shape[0] == 0:
        raise GankitError("Parzen: needs at least one sample and one test point")
    if any(not sigma > 0 for sigma in sigmas):
        raise GankitError(f"Parzen: sigmas must be > 0, got {list(sigmas)}")
    n, d = s.shape
    scale = torch.tensor([1.0 / (2.0 * sigma**2) for sigma in sigmas], dtype=torch.float64)
    norm = torch.tensor(
        [math.log(n) + d * math.log(sigma * math.sqrt(2.0 * math.pi)) for sigma in sigmas], dtype=torch.float64
    )
    out = torch.empty((len(sigmas), t.shape[0]), dtype=torch.float64)
    for i in range(0, t.shape[0], batch):
        tb = flatten01(t[i : i + batch])
        run_max = torch.full((len(sigmas), tb.shape[0]), float("-inf"), dtype=torch.float64)
        run_sum = torch.zeros((len(sigmas), tb.shape[0]), dtype=torch.float64)
        for j in range(0, n, sample_batch):
            d2 = squared_distances(tb, flatten01(s[j : j + sample_batch]))  # (b, bs), shared by every σ
            d2_min = d2.min(dim=1).values  # the largest exponent of the block, for every σ
            for k in range(len(sigmas)):
                block_max = -d2_min * scale[k]
                new_max = torch.maximum(run_max[k], block_max)
                terms = torch.exp(d2.mul(-scale[k]).sub_(new_max[:, None])).sum(dim=1)
                run_sum[k] = run_sum[k] * torch.exp(run_max[k] - new_max) + terms
                run_max[k] = new_max
        out[:, i : i + tb.shape[0]] = run_max + torch.log(run_sum) - norm[:, None]
    return out.numpy()


def parzen_log_likelihood(
    samples: ArrayLike, test: ArrayLike, sigma: float, batch: int = 500, sample_batch: int = 5000
) -> np.ndarray:
    """Log-likelihood (N_test,) of each test point under Gaussian kernels of width ``sigma`` on ``samples``.

    samples (N, ...), test (M, ...): uint8 images (scaled to [0, 1]) or float arrays already in [0, 1]; flattened.
    ``batch`` test points and ``sample_batch`` samples are processed at a time.
    """
    return _log_likelihoods(samples, test, [sigma], batch, sample_batch)[0]


def select_sigma(
    samples: ArrayLike,
    val: ArrayLike,
    sigmas: Sequence[float] = SIGMAS,
    batch: int = 500,
    sample_batch: int = 5000,
) -> tuple[float, list[tuple[float, float]]]:
    """The σ of ``sigmas`` with the highest mean validation log-likelihood, and the table [(σ, mean LL), ...]."""
    ll = _log_likelihoods(samples, val, list(sigmas), batch, sample_batch).mean(axis=1)
    table = [(float(s), float(v)) for s, v in zip(sigmas, ll)]
    return float(sigmas[int(np.argmax(ll))]), table


def parzen_evaluate(
    samples: ArrayLike,
    val: ArrayLike,
    test: ArrayLike,
    sigmas: Sequence[float] = SIGMAS,
    batch: int = 500,
    sample_batch: int = 5000,
) -> dict[str, float]:
    """The 2014 protocol: σ by validation likelihood, then ``{"sigma", "mean", "sem"}`` of the test log-likelihood
    (nats per image; sem = std (ddof=0) / sqrt(n))."""
    sigma, _ = select_sigma(samples, val, sigmas, batch, sample_batch)
    ll = parzen_log_likelihood(samples, test, sigma, batch, sample_batch)
    return {"sigma": sigma, "mean": float(ll.mean()), "sem": float(ll.std() / math.sqrt(len(ll)))}
