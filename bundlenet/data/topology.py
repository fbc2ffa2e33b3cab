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
    # one scale for all coordinates (as the models): a circle stays a circle
    x, y = _unit_scale(total.double()), _unit_scale(base.double())
    n = x.shape[0]
    if n < MIN_TOPOLOGY_ROWS:
        raise InputError(f"{n} rows are too few to find the fiber's topology; state data.fiber_span and data.fiber_circles")
    groups, labels = _neighbourhoods(y, num_groups, seed)
    rng = np.random.default_rng(seed)
    sub = torch.as_tensor(rng.choice(n, min(n, max_points * 10), replace=False))
    intrinsic = _fiber_dimension(x, y, sub)
    dims, circles = [], []
    for g in range(groups):
        shape = _group_shape(x, y, np.flatnonzero(labels == g), rng, min_variance, min_persistence, max_points)
        if shape is not None:
            dims.append(_capped_span(*shape, intrinsic))
            circles.append(shape[1])
    if not dims:
        raise InputError(
            "no neighbourhood of the base has 10 or more rows to find the fiber's topology; "
            "state data.fiber_span and data.fiber_circles"
        )
    span = round(statistics.median(dims))
    count = int(min(span // 2, round(statistics.median(circles))))
    return FiberTopology(span, count, len(dims), tuple(dims), tuple(circles))


def _unit_scale(points: Tensor) -> Tensor:
    """``points [N, d]`` centred and divided by one scale for all columns, the square root of their
    mean variance: ``(p − p̄) / √(mean_j Var p_j)`` (floored at 1e-12), so a circle stays a circle."""
    return (points - points.mean(0)) / points.var(0).mean().sqrt().clamp_min(1e-12)


def _neighbourhoods(y: Tensor, num_groups: int | None, seed: int) -> tuple[int, np.ndarray]:
    """``(groups, labels [N])``: the k-means cells (seeded, 4 starts) of the base points ``y [N, d_B]``.

    ``groups`` is ``num_groups`` (``None``: N / 50, between 4 and 24), at most the number of distinct
    base points and at least 1; a cell's label is in ``range(groups)``.
    """
    n = y.shape[0]
    groups = num_groups or int(min(24, max(4, n // 50)))
    distinct = torch.unique(y, dim=0).shape[0]
    groups = max(1, min(groups, distinct))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = KMeans(groups, n_init=4, random_state=seed).fit_predict(y.numpy())
    return groups, labels


def _fiber_dimension(x: Tensor, y: Tensor, sub: Tensor) -> float:
    """The fiber's intrinsic dimension ``d̂_E − d̂_B`` (TwoNN of the rows ``sub`` of ``x`` and of
    ``y``; a base of repeated values, such as classes, has dimension 0), or NaN when a column of
    ``x`` has distinct values in fewer than ``CONTINUOUS_SHARE`` of the rows (a setting, a rounded
    measurement: the rows lie on a lattice, whose nearest neighbours say nothing of the dimension)."""
    if min(torch.unique(column).numel() for column in x.T) < CONTINUOUS_SHARE * x.shape[0]:
        return math.nan
    # a fiber's dimension is the total space's less the base's (a submersion)
    base_dim = two_nn_dimension(y[sub])
    return two_nn_dimension(x[sub]) - (base_dim if math.isfinite(base_dim) else 0.0)


def _group_shape(
    x: Tensor,
    y: Tensor,
    rows: np.ndarray,
    rng: np.random.Generator,
    min_variance: float,
    min_persistence: float,
    max_points: int,
) -> tuple[int, int] | None:
    """``(span, circles)`` of the fiber seen from one neighbourhood, the ``rows`` of
    ``(x [N, d_E], y [N, d_B])``; ``None`` when they are fewer than 10 or their residuals
    (:func:`_residuals`) do not vary.

    The span counts the principal components of the residuals with variance ``λ_i ≥ min_variance·λ_1``;
    the circles are counted (:func:`_circle_count`) in the coordinates along the first
    ``max(span, 2)`` of them, at most ``max_points`` rows (drawn from ``rng`` beyond), relative to
    the radius ``√(2 λ_1)``.
    """
    if rows.size < 10:
        return None
    residual = _residuals(x[rows], y[rows])
    variance, axes = torch.linalg.eigh(torch.cov(residual.T))
    variance, axes = variance.flip(0).clamp_min(0), axes.flip(1)
    if float(variance[0]) <= 0:
        return None
    dim = int((variance >= min_variance * variance[0]).sum())
    coords = (residual @ axes[:, : max(dim, 2)]).numpy()
    if coords.shape[0] > max_points:
        coords = coords[rng.choice(coords.shape[0], max_points, replace=False)]
    radius = math.sqrt(2 * float(variance[0]))
    return dim, _circle_count(coords, radius, dim, min_persistence)


def _circle_count(coords: np.ndarray, radius: float, span: int, min_persistence: float) -> int:
    """How many H1 classes of the Vietoris–Rips filtration of ``coords [n, k]`` (ripser) live at
    least ``min_persistence · radius``, at most ``span // 2`` (a circle spans 2 directions)."""
    from ripser import ripser

    bars = ripser(coords, maxdim=1)["dgms"][1]
    life = bars[:, 1] - bars[:, 0] if len(bars) else np.zeros(0)
    return int(min(span // 2, (life >= min_persistence * radius).sum()))


def _capped_span(span: int, circles: int, intrinsic: float) -> int:
    """A group's principal-component ``span`` capped by the fiber's ``intrinsic`` dimension, raised
    to twice its circle count (module docstring): ``min(span, max(round(d̂), 2c, 1))``; the
    principal-component count alone when ``intrinsic`` is NaN."""
    return span if not math.isfinite(intrinsic) else min(span, max(round(intrinsic), 2 * circles, 1))


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
