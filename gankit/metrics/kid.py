"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel.

k(x, y) = (x·y / d + 1)³. The estimate is averaged over random subsets (100 of min(1000, n) by default, as
stylegan2-ada and torch-fidelity do), and the spread over subsets is reported as its std. Unlike FD, KID is unbiased in
the number of samples, so values from different sample counts can be compared.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import GankitError
from .fd import ArrayLike, as_float64


def _cubic(gram: np.ndarray, d: int) -> np.ndarray:
    """(gram / d + 1)³ in place; a product, because ``** 3`` goes through the much slower ``pow``."""
    k = gram
    k /= d
    k += 1.0
    return k * k * k


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between x (m, d) and y (n, d) under k(a, b) = (a·b / d + 1)³; float64."""
    d = x.shape[1]
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _cubic(x @ x.T, d), _cubic(y @ y.T, d), _cubic(x @ y.T, d)
    # The unbiased estimator leaves out the i == j terms of the within-set sums.
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(
    feats_a: ArrayLike,
    feats_b: ArrayLike,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between features (Na, F) and (Nb, F): (mean, std) over ``num_subsets`` subsets of
    ``min(subset_size, Na, Nb)`` rows drawn without replacement, with ``np.random.default_rng(seed)``.

    Can be slightly negative for two samples of one distribution (the estimator is unbiased). Passing one array
    as both sets is not such a pair: subsets of the two sides then share points, and each shared point's k(x, x)
    enters the cross term only, biasing the value below 0 by about 2·(m/N)·(mean k(x, x) - mean k(x, y)) / m.
    """
    a, b = as_float64(feats_a), as_float64(feats_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise GankitError(f"KID needs two feature sets (N, F) of equal F, got {a.shape} and {b.shape}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise GankitError(f"KID needs at least 2 samples in each set, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets, dtype=np.float64)
    for i in range(num_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std())
