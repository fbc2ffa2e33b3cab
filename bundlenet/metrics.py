"""Distances between point clouds, vectorised; the one home of every metric in bundlenet.

All functions take clouds shaped ``[..., n, d]`` (a leading batch of clouds is allowed where
noted) and optional boolean masks ``[..., n]`` marking the valid rows of padded clouds, so the
training losses (one cloud per neighbourhood, padded) and the evaluation share one code path.

Conventions (Courts & Kvinge 2022, evaluation protocol):

* ``mmd``: Gaussian-kernel MMD with geomloss' convention,
  ``½ (E k(x,x') + E k(y,y') − 2 E k(x,y))``, ``k(x,y) = exp(−|x−y|² / 2σ²)``, σ = ``blur``
  (equal to ``geomloss.SamplesLoss("gaussian", blur=σ)``).
* ``knn_kl_divergence``: the 1-NN estimator of Wang, Kulkarni & Verdú (2009),
  ``D̂(P‖Q) = d/n Σ_i log(ν_i / ρ_i) + log(m / (n − 1))``, ν_i the distance from x_i ~ P to its
  nearest y ~ Q, ρ_i the distance to its nearest other x. Zero distances (duplicates) are
  skipped, as in the authors' code.
* ``wasserstein``: exact optimal transport (POT ``ot.emd2``, uniform weights, Euclidean ground
  cost to the power p), returned as the distance ``W_p = (min Σ π_ij |x_i − y_j|^p)^{1/p}``.
"""

from __future__ import annotations

import numpy as np
import ot
import torch
from torch import Tensor

_EXACT = "donot_use_mm_for_euclid_dist"


def pairwise_distances(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances ``[..., n, d] × [..., m, d]`` → ``[..., n, m]``, computed exactly.

    ``torch.cdist``'s matrix-product shortcut gives self-distances of order 1e-3 in float32,
    which breaks nearest-neighbour estimators; this uses the direct kernel.
    """
    return torch.cdist(a, b, compute_mode=_EXACT)


def nearest_neighbour_distance(
    query: Tensor,
    reference: Tensor,
    reference_mask: Tensor | None = None,
    exclude_self: bool = False,
    exclude_zero: bool = False,
) -> Tensor:
    """Distance from each query point to its nearest reference point: ``[..., n]``.

    Args:
        query: ``[..., n, d]``.
        reference: ``[..., m, d]``.
        reference_mask: ``[..., m]`` booleans, False rows are ignored.
        exclude_self: query and reference are the same cloud; skip the diagonal.
        exclude_zero: skip references at distance exactly 0 (duplicates).

    Returns ``inf`` where no valid reference exists.
    """
    dist = pairwise_distances(query, reference)
    invalid = torch.zeros_like(dist, dtype=torch.bool)
    if reference_mask is not None:
        invalid = invalid | ~reference_mask.unsqueeze(-2)
    if exclude_self:
        eye = torch.eye(dist.shape[-2], dist.shape[-1], dtype=torch.bool, device=dist.device)
        invalid = invalid | eye
    if exclude_zero:
        invalid = invalid | (dist <= 0)
    return dist.masked_fill(invalid, float("inf")).min(dim=-1).values


def knn_kl_divergence(
    p: Tensor, q: Tensor, p_mask: Tensor | None = None, q_mask: Tensor | None = None
) -> Tensor:
    """1-NN estimate of KL(P‖Q) from samples ``p [..., n, d]`` and ``q [..., m, d]``: ``[...]``.

    Rows of ``p`` whose nearest-neighbour distances are undefined (duplicates only, masked) are
    left out; a batch entry with fewer than two valid ``p`` rows gives NaN.
    """
    if p_mask is None:
        p_mask = torch.ones(p.shape[:-1], dtype=torch.bool, device=p.device)
    if q_mask is None:
        q_mask = torch.ones(q.shape[:-1], dtype=torch.bool, device=q.device)
    d = p.shape[-1]
    rho = nearest_neighbour_distance(p, p, p_mask, exclude_self=True, exclude_zero=True)
    nu = nearest_neighbour_distance(p, q, q_mask, exclude_zero=True)
    valid = p_mask & torch.isfinite(rho) & torch.isfinite(nu)
    log_ratio = torch.where(valid, nu.clamp_min(1e-30).log() - rho.clamp_min(1e-30).log(), torch.zeros_like(nu))
    n = p_mask.sum(-1).to(p.dtype)
    m = q_mask.sum(-1).to(p.dtype)
    n_valid = valid.sum(-1).to(p.dtype)
    estimate = d * log_ratio.sum(-1) / n_valid.clamp_min(1) + torch.log(m.clamp_min(1) / (n - 1).clamp_min(1))
    return torch.where((n >= 2) & (n_valid >= 1), estimate, torch.full_like(estimate, float("nan")))


def mean_nearest_distance(
    query: Tensor, reference: Tensor, query_mask: Tensor | None = None, reference_mask: Tensor | None = None
) -> Tensor:
    """Mean over query points of the distance to the nearest reference point: ``[...]``."""
    nearest = nearest_neighbour_distance(query, reference, reference_mask)
    if query_mask is None:
        return nearest.mean(-1)
    nearest = torch.where(query_mask, nearest, torch.zeros_like(nearest))
    return nearest.sum(-1) / query_mask.sum(-1).clamp_min(1)


def msmd(true: Tensor, generated: Tensor) -> Tensor:
    """Mean over true points of the squared distance to the nearest generated point: ``[...]``."""
    return nearest_neighbour_distance(true, generated).pow(2).mean(-1)


def mmd(x: Tensor, y: Tensor, blur: float = 0.5) -> Tensor:
    """Gaussian-kernel MMD (geomloss convention, σ = ``blur``) of ``[..., n, d]``, ``[..., m, d]``."""

    def mean_kernel(a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-pairwise_distances(a, b).pow(2) / (2 * blur**2)).mean(dim=(-2, -1))

    return 0.5 * (mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y))


def wasserstein(x: Tensor, y: Tensor, p: int = 2, num_iter_max: int = 10_000_000) -> Tensor:
    """Exact W_p between clouds ``[..., n, d]`` and ``[..., m, d]`` (uniform weights): ``[...]``.

    Solved with POT's network simplex per cloud pair; ``num_iter_max`` ≥ 1e7 because POT's
    default silently stops early at a few thousand points.
    """
    batch = x.shape[:-2]
    xs = x.detach().reshape(-1, *x.shape[-2:]).double()
    ys = y.detach().reshape(-1, *y.shape[-2:]).double()
    values = []
    for a, b in zip(xs, ys):
        cost = pairwise_distances(a, b).pow(p).cpu().numpy()
        wa = np.full(a.shape[0], 1.0 / a.shape[0])
        wb = np.full(b.shape[0], 1.0 / b.shape[0])
        values.append(float(ot.emd2(wa, wb, cost, numItermax=num_iter_max)) ** (1.0 / p))
    return torch.tensor(values, dtype=x.dtype).reshape(batch)
