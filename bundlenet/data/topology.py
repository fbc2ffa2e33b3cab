r"""The shape of a fiber found from data: how many directions it spreads in, and its circles.

For groups of rows with nearby base points (k-means cells of the base), the rows' deviations from
a linear fit on the base are the fiber seen from one neighbourhood. Their principal components
bound the fiber's span (components that carry at least ``min_variance`` of the largest one; a
circle spreads in 2, a segment in 1), and the 1-dimensional persistent homology of those
coordinates (Vietoris–Rips, ripser) counts the circles: one per long-lived H1 class. A curved
fiber spreads in more principal directions than it has dimensions (a bent sheet in R⁴ fills 3),
so the span is also capped by the fiber's intrinsic dimension: that of the rows less that of
the base (a submersion's fiber), each estimated from the distances of a point to its two
nearest neighbours (TwoNN: Facco et al., *Estimating the intrinsic dimension of datasets by a
minimal neighborhood information*, Sci. Rep. 2017), raised to twice the circle count (a circle is
1-dimensional and spans 2 directions):

.. math::
    \text{span} = \min\big(\#\{λ_i ≥ \text{min\_variance}\cdot λ_1\},\
    \max(\mathrm{round}(\hat d_E - \hat d_B), 2c, 1)\big), \qquad \hat d = \frac{n}{\sum_i \log(r_{2,i} / r_{1,i})}.

Tables with a column of few values (settings, rounded measurements: ``CONTINUOUS_SHARE``),
whose nearest neighbours lie on a lattice, keep the principal-component count, as do noisy
tables, whose rows fill every direction at small scales. The estimate is the median over groups, so a few groups that see a fiber badly (too few
rows, a fold) do not decide it.
"""

from __future__ import annotations

import logging
import math
import statistics
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor

from bundlenet.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FiberTopology:
    """What :func:`estimate_fiber_topology` found.

    Attributes:
        span: how many directions the fiber spreads in (median over groups).
        circles: circle factors of the fiber (median over groups), at most span / 2.
        groups: how many neighbourhoods were examined.
        spans, circle_counts: the per-group estimates.
    """

    span: int
    circles: int
    groups: int
    spans: tuple[int, ...]
    circle_counts: tuple[int, ...]


MIN_TOPOLOGY_ROWS = 20  # fewer rows cannot show a fiber's shape
CONTINUOUS_SHARE = 0.5  # the intrinsic dimension is used when every column has distinct values in this share of the rows


def estimate_fiber_topology(
    total: Tensor,
    base: Tensor,
    num_groups: int | None = None,
    min_variance: float = 0.02,
    min_persistence: float = 0.6,
    max_points: int = 300,
    seed: int = 0,
) -> FiberTopology:
    """Estimate the span and the circle count of the fibers of rows ``(total [N, d_E], base [N, d_B])``.

    Args:
        num_groups: neighbourhoods examined (``None``: N / 50, between 4 and 24).
        min_variance: a principal component of a group's fiber counts as a fiber direction when
            its variance is at least this share of the largest one.
        min_persistence: an H1 class counts as a circle when it lives at least this long,
            relative to the radius of the group's fiber (√(2·largest variance), the radius of a
            circle with that variance).
        max_points: rows per group given to ripser (a seeded subsample beyond).
    """
    from ripser import ripser

    x = total.double()
    y = base.double()
    n = x.shape[0]
    if n < MIN_TOPOLOGY_ROWS:
        raise InputError(f"{n} rows are too few to find the fiber's topology; state data.fiber_span and data.fiber_circles")
    # one scale for all coordinates (as the models): a circle stays a circle
    x = (x - x.mean(0)) / x.var(0).mean().sqrt().clamp_min(1e-12)
    y = (y - y.mean(0)) / y.var(0).mean().sqrt().clamp_min(1e-12)
    groups = num_groups or int(min(24, max(4, n // 50)))
    distinct = torch.unique(y, dim=0).shape[0]
    groups = max(1, min(groups, distinct))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = KMeans(groups, n_init=4, random_state=seed).fit_predict(y.numpy())
    rng = np.random.default_rng(seed)
    sub = torch.as_tensor(rng.choice(n, min(n, max_points * 10), replace=False))
    intrinsic = math.nan  # a column of few values (a setting, a rounded measurement) puts the rows on a lattice
    if min(torch.unique(column).numel() for column in x.T) >= CONTINUOUS_SHARE * n:
        # a fiber's dimension is the total space's less the base's (a submersion); a base of
        # repeated values (classes) has dimension 0
        base_dim = two_nn_dimension(y[sub])
        intrinsic = two_nn_dimension(x[sub]) - (base_dim if math.isfinite(base_dim) else 0.0)
    dims, circles = [], []
    for g in range(groups):
        rows = np.flatnonzero(labels == g)
        if rows.size < 10:
            continue
        residual = _residuals(x[rows], y[rows])
        variance, axes = torch.linalg.eigh(torch.cov(residual.T))
        variance, axes = variance.flip(0).clamp_min(0), axes.flip(1)
        if float(variance[0]) <= 0:
            continue
        dim = int((variance >= min_variance * variance[0]).sum())
        coords = (residual @ axes[:, : max(dim, 2)]).numpy()
        if coords.shape[0] > max_points:
            coords = coords[rng.choice(coords.shape[0], max_points, replace=False)]
        bars = ripser(coords, maxdim=1)["dgms"][1]
        radius = math.sqrt(2 * float(variance[0]))
        life = bars[:, 1] - bars[:, 0] if len(bars) else np.zeros(0)
        count = int(min(dim // 2, (life >= min_persistence * radius).sum()))
        dims.append(dim if not math.isfinite(intrinsic) else min(dim, max(round(intrinsic), 2 * count, 1)))
        circles.append(count)
    if not dims:
        raise InputError(
            "no neighbourhood of the base has 10 or more rows to find the fiber's topology; "
            "state data.fiber_span and data.fiber_circles"
        )
    span = round(statistics.median(dims))
    count = int(min(span // 2, round(statistics.median(circles))))
    return FiberTopology(span, count, len(dims), tuple(dims), tuple(circles))


def _residuals(x: Tensor, y: Tensor) -> Tensor:
    """Deviations of ``x [n, d_E]`` from its least-squares affine fit on ``y [n, d_B]`` (a little ridge)."""
    design = torch.cat([torch.ones(y.shape[0], 1, dtype=y.dtype), y - y.mean(0)], 1)
    gram = design.T @ design + 1e-6 * torch.eye(design.shape[1], dtype=y.dtype)
    coef = torch.linalg.solve(gram, design.T @ x)
    return x - design @ coef


def two_nn_dimension(points: Tensor) -> float:
    """The TwoNN maximum-likelihood estimate of the intrinsic dimension of ``points [n, d]``
    (module docstring), over the rows whose nearest neighbour is at a positive distance (repeated
    rows are left out); NaN with fewer than 3 such rows."""
    d = torch.cdist(points, points)
    d.fill_diagonal_(float("inf"))  # cdist's self-distance can come out as rounding noise, not 0
    d = torch.where(d > 0, d, torch.full_like(d, float("inf")))  # repeats say nothing of the dimension
    two = d.topk(2, dim=1, largest=False).values
    ratio = two[:, 1] / two[:, 0]
    ok = torch.isfinite(ratio) & (ratio > 1)
    if int(ok.sum()) < 3:
        return float("nan")
    return float(ok.sum() / ratio[ok].log().sum())
