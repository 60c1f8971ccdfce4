"""k-NN manifold metrics: precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

Each real (or generated) point carries a ball whose radius is the distance to its k-th nearest neighbour in its own set,
the point itself excluded (the (k+1)-th smallest distance when the zero self-distance is counted, as both reference
implementations do; a duplicate point counts as a neighbour).

- precision: share of generated points inside at least one real ball (k = 3);
- recall:    share of real points inside at least one generated ball (k = 3);
- density:   mean number of real balls containing a generated point, divided by k (k = 5; can exceed 1);
- coverage:  share of real balls that contain at least one generated point (k = 5).

Boundary conventions follow the reference code of each paper, and they differ: Kynkäänniemi et al.'s
``ManifoldEstimator.evaluate`` counts a point on the sphere as inside (``distance <= radius``), while Naeem et al.'s
``prdc.compute_prdc`` counts it as outside (``distance < radius``) for density and coverage. Comparisons are made on
squared distances, which have the same order and stay exact for integer data.

Distances are computed in blocks of rows (a block × M float64 matrix at a time, never an N×M×D tensor).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import GankitError
from .fd import ArrayLike, as_float64

# Elements of one block of the distance matrix (float64): 2**24 is 128 MiB.
BLOCK_ELEMENTS = 2**24


def _tensor(x: ArrayLike, what: str) -> torch.Tensor:
    a = as_float64(x)
    if a.ndim != 2:
        raise GankitError(f"{what}: expected features of shape (N, F), got {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a))


def _rows_per_block(m: int, block_elements: int) -> int:
    return max(1, block_elements // max(m, 1))


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, D), (M, D) float64 -> (B, M) squared Euclidean distances, clamped at 0 against round-off."""
    d = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return d.clamp_min_(0.0)


def knn_radii(feats: ArrayLike, ks: tuple[int, ...], block_elements: int = BLOCK_ELEMENTS) -> np.ndarray:
    """Squared distance from each point of (N, D) to its k-th nearest other point, for each k in ``ks``: (len(ks), N)."""
    x = _tensor(feats, "features")
    n = x.shape[0]
    kmax = max(ks)
    if n <= kmax:
        raise GankitError(f"k-NN radii with k={kmax} need more than {kmax} points, got {n}")
    out = torch.empty((len(ks), n), dtype=torch.float64)
    rows = _rows_per_block(n, block_elements)
    for i in range(0, n, rows):
        d = squared_distances(x[i : i + rows], x)
        b = d.shape[0]
        d[torch.arange(b), torch.arange(i, i + b)] = float("inf")  # exclude the point itself, by index
        nearest = torch.topk(d, kmax, dim=1, largest=False, sorted=True).values  # (b, kmax)
        for j, k in enumerate(ks):
            out[j, i : i + b] = nearest[:, k - 1]
    return out.numpy()


def as_rows(x: ArrayLike) -> torch.Tensor:
    """(N, ...) array or tensor of any dtype -> (N, D) tensor without copying where possible; blocks are converted to
    float64 only when used, so uint8 image sets never exist in float64 all at once."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    t = t.detach().cpu()
    return t.reshape(t.shape[0], -1)


def nearest_neighbours(
    query: ArrayLike, ref: ArrayLike, k: int = 1, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``ref`` (M, ...) for each row of ``query`` (N, ...), both flattened to D values:
    Euclidean distances (N, k), ascending, and indices into ``ref`` (N, k).

    Works block by block over both sets with a running top-k, converting each block to float64 as it goes, so a large
    uint8 training set is never held in float64 (distances are then in uint8 units: divide by 255 for [0, 1]).
    """
    q, r = as_rows(query), as_rows(ref)
    if q.shape[1] != r.shape[1]:
        raise GankitError(f"nearest neighbours: dimensions differ, {tuple(q.shape)} vs {tuple(r.shape)}")
    n, m, d = q.shape[0], r.shape[0], q.shape[1]
    if m == 0:
        raise GankitError("nearest neighbours: the reference set is empty")
    k = min(k, m)
    q_rows = max(1, min(n, 2048))
    r_rows = max(1, min(m, block_elements // max(q_rows, d)))
    dist = torch.empty((n, k), dtype=torch.float64)
    idx = torch.empty((n, k), dtype=torch.int64)
    for i in range(0, n, q_rows):
        qb = q[i : i + q_rows].to(torch.float64)
        best_d = torch.full((qb.shape[0], k), float("inf"), dtype=torch.float64)
        best_i = torch.zeros((qb.shape[0], k), dtype=torch.int64)
        for j in range(0, m, r_rows):
            dd = squared_distances(qb, r[j : j + r_rows].to(torch.float64))
            top = torch.topk(dd, min(k, dd.shape[1]), dim=1, largest=False, sorted=True)
            cand_d = torch.cat([best_d, top.values], dim=1)
            cand_i = torch.cat([best_i, top.indices + j], dim=1)
            # stable sort keeps the earlier (lower-index) neighbour first among equal distances
            order = torch.sort(cand_d, dim=1, stable=True).indices[:, :k]
            best_d, best_i = cand_d.gather(1, order), cand_i.gather(1, order)
        dist[i : i + q_rows], idx[i : i + q_rows] = best_d.sqrt(), best_i
    return dist.numpy(), idx.numpy()


def prdc(
    real: ArrayLike,
    fake: ArrayLike,
    k_pr: int = 3,
    k_dc: int = 5,
    block_elements: int = BLOCK_ELEMENTS,
) -> dict[str, float]:
    """Precision, recall (k = ``k_pr``), density, coverage (k = ``k_dc``) of generated features ``fake`` (M, D)
    against real features ``real`` (N, D). Returns ``{"precision", "recall", "density", "coverage"}``."""
    r, f = _tensor(real, "real features"), _tensor(fake, "generated features")
    if r.shape[1] != f.shape[1]:
        raise GankitError(f"real and generated features differ in dimension: {r.shape[1]} vs {f.shape[1]}")
    real_radii = torch.from_numpy(knn_radii(r, (k_pr, k_dc), block_elements))
    r_pr, r_dc = real_radii[0], real_radii[1]
    f_pr = torch.from_numpy(knn_radii(f, (k_pr,), block_elements))[0]
    n, m = r.shape[0], f.shape[0]

    in_real_manifold = 0  # generated points inside >= 1 real ball (<=)
    real_balls_hit = 0.0  # sum over generated points of the real balls containing them (<)
    rows = _rows_per_block(n, block_elements)
    for i in range(0, m, rows):
        d = squared_distances(f[i : i + rows], r)  # (b, N)
        in_real_manifold += int((d <= r_pr[None, :]).any(dim=1).sum())
        real_balls_hit += float((d < r_dc[None, :]).sum())

    in_fake_manifold = 0  # real points inside >= 1 generated ball (<=)
    covered = 0  # real balls holding >= 1 generated point (<)
    rows = _rows_per_block(m, block_elements)
    for i in range(0, n, rows):
        d = squared_distances(r[i : i + rows], f)  # (b, M)
        in_fake_manifold += int((d <= f_pr[None, :]).any(dim=1).sum())
        covered += int((d.min(dim=1).values < r_dc[i : i + rows]).sum())

    return {
        "precision": in_real_manifold / m,
        "recall": in_fake_manifold / n,
        "density": real_balls_hit / (k_dc * m),
        "coverage": covered / n,
    }
