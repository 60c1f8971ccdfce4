"""Fréchet distance between two feature distributions, each summarised by a Gaussian (mean, covariance).

FD = ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½), in float64.

The trace of the matrix square root is taken from eigenvalues rather than from ``scipy.linalg.sqrtm``: S1 S2 is not
symmetric, and ``sqrtm`` on it warns, returns complex values, or loses accuracy when the covariances are singular
(fewer samples than feature dimensions, dead ReLU features). S1 S2 is similar to the symmetric PSD matrix
A = S1^½ S2 S1^½ (same eigenvalues), so tr((S1 S2)^½) = sum(sqrt(eig(A))), where S1^½ comes from ``eigh`` with
negative round-off eigenvalues clamped to 0.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import GankitError

ArrayLike = np.ndarray | torch.Tensor


def as_float64(x: ArrayLike) -> np.ndarray:
    """A numpy float64 view/copy of ``x`` (numpy array or torch tensor)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_features(x: ArrayLike, what: str) -> np.ndarray:
    a = as_float64(x)
    if a.ndim != 2:
        raise GankitError(f"{what}: expected features of shape (N, F), got {tuple(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise GankitError(f"{what}: features contain NaN or Inf")
    return a


def feature_stats(features: ArrayLike, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and covariance (F, F) of features (N, F), float64; the covariance is unbiased (N - 1), as ``np.cov``.

    Computed in chunks of ``chunk`` rows with two passes (mean, then centred outer products), so memory stays
    O(chunk·F + F²) and the result does not depend on how the features were batched (up to float64 round-off).
    """
    n = int(features.shape[0])
    if n < 2:
        raise GankitError(f"feature statistics need at least 2 samples, got {n}")
    if features.ndim != 2:
        raise GankitError(f"expected features of shape (N, F), got {tuple(features.shape)}")
    f = int(features.shape[1])
    total = np.zeros(f, dtype=np.float64)
    for i in range(0, n, chunk):
        total += _check_features(features[i : i + chunk], "features").sum(axis=0)
    mu = total / n
    # Centring before the outer product avoids the cancellation of E[xxᵀ] - μμᵀ when |μ| >> σ.
    scatter = np.zeros((f, f), dtype=np.float64)
    for i in range(0, n, chunk):
        xc = as_float64(features[i : i + chunk]) - mu
        scatter += xc.T @ xc
    sigma = scatter / (n - 1)
    return mu, sigma


def sqrt_trace_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^½) for symmetric PSD S1, S2 (F, F), from the eigenvalues of S1^½ S2 S1^½."""
    s1 = (sigma1 + sigma1.T) / 2
    s2 = (sigma2 + sigma2.T) / 2
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    a = root1 @ s2 @ root1
    ev = np.linalg.eigvalsh((a + a.T) / 2)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); means (F,), covariances (F, F); float64, >= 0."""
    m1, m2 = as_float64(mu1).reshape(-1), as_float64(mu2).reshape(-1)
    s1, s2 = as_float64(sigma1), as_float64(sigma2)
    f = m1.shape[0]
    if m2.shape[0] != f or s1.shape != (f, f) or s2.shape != (f, f):
        raise GankitError(
            f"feature statistics do not match: means {m1.shape}, {m2.shape}, covariances {s1.shape}, {s2.shape} "
            "(were they made by different feature extractors?)"
        )
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * sqrt_trace_product(s1, s2))
    # Round-off can make FD(x, x) a tiny negative number; a distance is never below 0.
    return max(value, 0.0)


def fd(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between two feature sets (Na, F) and (Nb, F)."""
    return frechet_distance(*feature_stats(feats_a), *feature_stats(feats_b))
