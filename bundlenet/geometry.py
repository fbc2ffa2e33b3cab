r"""Geometry and math below everything else: distances between point clouds, nearest points,
kNN estimators, distinct rows, and moving points onto the level sets of a map.

Every function takes clouds shaped ``[..., n, d]`` (a leading batch of clouds is allowed where
noted) and optional boolean masks ``[..., n]`` marking the valid rows of padded clouds, so the
training losses (one cloud per neighbourhood, padded), the data (empirical fibers, nearest
rows) and the evaluation share one code path. Conventions (Courts & Kvinge 2022, evaluation
protocol):

* :func:`mmd`: Gaussian-kernel MMD with geomloss' convention,
  ``½ (E k(x,x') + E k(y,y') − 2 E k(x,y))``, ``k(x,y) = exp(−|x−y|² / 2σ²)``, σ = ``blur``
  (equal to ``geomloss.SamplesLoss("gaussian", blur=σ)``).
* :func:`knn_kl_divergence`: the 1-NN estimator of Wang, Kulkarni & Verdú (2009),
  ``D̂(P‖Q) = d/n Σ_i log(ν_i / ρ_i) + log(m / (n − 1))``, ν_i the distance from x_i ~ P to its
  nearest y ~ Q, ρ_i the distance to its nearest other x. Zero distances (duplicates) are
  skipped, as in the authors' code.
* :func:`wasserstein`: exact optimal transport (POT ``ot.emd2``, uniform weights, Euclidean
  ground cost to the power p), returned as the distance ``W_p = (min Σ π_ij |x_i − y_j|^p)^{1/p}``.
* :func:`msmd`: mean over true points of the squared distance to the nearest generated point.

:func:`project_to_level_set` takes points x ∈ R^d and targets y ∈ R^m of a differentiable map
π: R^d → R^m and moves each point onto the level set {x : π(x) = y} by Gauss–Newton steps of
minimal norm,

.. math::
    x_{k+1} = x_k - J_k^\top (J_k J_k^\top + λ I)^{-1} (π(x_k) - y), \qquad J_k = ∂π/∂x\,(x_k),

a damped pseudo-inverse step: each one moves x only in the directions normal to the level set
(the row space of J), so for a point near the set the limit is, to second order in its distance,
the nearest point of the set (the foot of its normal). Batched: one Jacobian per row through
``torch.func.vmap(torch.func.jacrev(π))``; π must act row-wise on ``[N, d]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def project_to_level_set(
    x: Tensor,
    y: Tensor,
    forward: Callable[[Tensor], Tensor],
    steps: int = 20,
    damping: float = 1e-9,
    tolerance: float = 1e-10,
    jacobian: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Points ``x [N, d]`` moved onto {π = y} for targets ``y [N, m]``: ``[N, d]``.

    Stops early once every residual ‖π(x) − y‖ is below ``tolerance``. Rows whose step is not
    finite (a Jacobian of rank < m) keep their last finite position. ``jacobian`` (``[N, d]`` →
    ``[N, m, d]``) replaces the Jacobians of ``torch.func`` (e.g. finite differences of a map
    that is not written in torch).
    """
    x = x.detach().clone()
    y = y.to(x)

    def single(row: Tensor) -> Tensor:
        return forward(row.unsqueeze(0)).squeeze(0)

    jac_fn = jacobian or torch.func.vmap(torch.func.jacrev(single))
    with torch.no_grad():
        for _ in range(int(steps)):
            residual = forward(x) - y  # [N, m]
            if float(residual.norm(dim=-1).max()) < tolerance:
                break
            jac = jac_fn(x)  # [N, m, d]
            gram = jac @ jac.transpose(1, 2) + damping * torch.eye(jac.shape[1], dtype=x.dtype, device=x.device)
            step = (jac.transpose(1, 2) @ torch.linalg.solve(gram, residual.unsqueeze(-1))).squeeze(-1)
            ok = torch.isfinite(step).all(dim=-1, keepdim=True)
            x = torch.where(ok, x - step, x)
    return x


_EXACT = "donot_use_mm_for_euclid_dist"


def pairwise_distances(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances ``[..., n, d] × [..., m, d]`` → ``[..., n, m]``, computed exactly.

    ``torch.cdist``'s matrix-product shortcut gives self-distances of order 1e-3 in float32,
    which breaks nearest-neighbour estimators; this uses the direct kernel.
    """
    return torch.cdist(a, b, compute_mode=_EXACT)


def per_query(query: Tensor, reference: Tensor, reduce: Callable[[Tensor], Tensor], block: int = 8192) -> Tensor:
    """``reduce`` of each query row's distances to the reference points, over blocks of
    ``block`` query rows: ``query [N, d]``, ``reference [M, d]`` → ``torch.cat`` of
    ``reduce([b, M])``. Memory O(block·M), never the whole ``[N, M]`` matrix."""
    if query.shape[0] <= block:
        return reduce(pairwise_distances(query, reference))
    return torch.cat([reduce(pairwise_distances(rows, reference)) for rows in query.split(block)])


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


def knn_kl_divergence(p: Tensor, q: Tensor, p_mask: Tensor | None = None, q_mask: Tensor | None = None) -> Tensor:
    """1-NN estimate of KL(P‖Q) from samples ``p [..., n, d]`` and ``q [..., m, d]``: ``[...]``.

    Rows of ``p`` whose nearest-neighbour distances are undefined (duplicates only, masked) are
    left out; a batch entry with fewer than two valid ``p`` rows gives NaN.
    """
    if p_mask is None:
        p_mask = torch.ones(p.shape[:-1], dtype=torch.bool, device=p.device)
    if q_mask is None:
        q_mask = torch.ones(q.shape[:-1], dtype=torch.bool, device=q.device)
    rho = nearest_neighbour_distance(p, p, p_mask, exclude_self=True, exclude_zero=True)
    nu = nearest_neighbour_distance(p, q, q_mask, exclude_zero=True)
    return knn_kl_estimate(rho, nu, p_mask, q_mask.sum(-1).to(p.dtype), p.shape[-1])


def knn_kl_estimate(rho: Tensor, nu: Tensor, p_mask: Tensor, m: Tensor, dim: int) -> Tensor:
    """The 1-NN KL estimate from each P point's distance to its nearest other P point ``rho
    [..., n]`` and to its nearest Q point ``nu [..., n]``; ``m [...]`` Q points, ``dim`` the
    dimension: ``d/n' Σ log(ν/ρ) + log(m/(n−1))`` over the n' points where both are finite."""
    valid = p_mask & torch.isfinite(rho) & torch.isfinite(nu)
    log_ratio = torch.where(valid, nu.clamp_min(1e-30).log() - rho.clamp_min(1e-30).log(), torch.zeros_like(nu))
    n = p_mask.sum(-1).to(nu.dtype)
    n_valid = valid.sum(-1).to(nu.dtype)
    estimate = dim * log_ratio.sum(-1) / n_valid.clamp_min(1) + torch.log(m.clamp_min(1) / (n - 1).clamp_min(1))
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
        return gaussian_kernel(pairwise_distances(a, b), blur).mean(dim=(-2, -1))

    return 0.5 * (mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y))


def gaussian_kernel(distance: Tensor, blur: float) -> Tensor:
    """exp(−d²/2σ²) with σ = ``blur`` (geomloss' ``"gaussian"`` kernel)."""
    return torch.exp(-distance.pow(2) / (2 * blur**2))


def wasserstein(x: Tensor, y: Tensor, p: int = 2, num_iter_max: int = 10_000_000) -> Tensor:
    """Exact W_p between clouds ``[..., n, d]`` and ``[..., m, d]`` (uniform weights): ``[...]``.

    Solved with POT's network simplex per cloud pair; ``num_iter_max`` ≥ 1e7 because POT's
    default silently stops early at a few thousand points.
    """
    import ot  # POT: loaded by the evaluation, not by every import of a bundle

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


def distinct_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of ``x [N, C]`` and, for each row, its index among them:
    ``(x[first] [U, C], index [N])`` with ``x == x[first][index]``. Differentiable in ``x``
    (the distinct rows are gathered from ``x``, not copies of it). The distinct rows are in
    lexicographic order, as ``torch.unique(x, dim=0)`` gives them; the index is built one column
    at a time from 1-D ``torch.unique`` calls (each row's rank among the distinct prefixes), which
    is some 50 times faster than ``torch.unique(dim=0)`` on a CPU."""
    index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for column in x.detach().T if x.shape[0] else ():
        _, code = torch.unique(column, return_inverse=True)
        # ranks of (prefix, value) pairs: lexicographic, and below N² (no overflow below 2³¹ rows)
        _, index = torch.unique(index * (int(code.max()) + 1) + code, return_inverse=True)
    first = torch.full((int(index.max()) + 1 if index.numel() else 0,), x.shape[0], dtype=index.dtype, device=x.device)
    first = first.scatter_reduce(0, index, torch.arange(x.shape[0], device=x.device), reduce="amin")
    return x[first], index
