"""Inception Score (Salimans et al. 2016) from class probabilities: exp(E_x KL(p(y|x) || p(y))).

With a domain classifier in place of Inception (gankit's default) this is the "MNIST score": 1 when every prediction
is uniform (or every image gets the same prediction), and at most the number of classes, reached when predictions are
confident and spread evenly over the classes.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from ..core.errors import GankitError
from .fd import ArrayLike, as_float64


def inception_score(probs: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """IS of class probabilities (N, K) (rows sum to 1): (mean, std) over ``splits`` consecutive splits, as
    stylegan2-ada computes it (split i is rows [i·N/splits, (i+1)·N/splits))."""
    p = as_float64(probs)
    if p.ndim != 2:
        raise GankitError(f"inception score needs probabilities (N, K), got {p.shape}")
    n = p.shape[0]
    if n < splits:
        raise GankitError(f"inception score with {splits} splits needs at least {splits} samples, got {n}")
    scores = []
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        # xlogy gives 0·log 0 = 0, so one-hot predictions are fine; a zero marginal only meets zero rows.
        kl = (xlogy(part, part) - xlogy(part, np.broadcast_to(marginal, part.shape))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
