"""The evaluation's metrics of point clouds: :class:`CloudMetrics` and :func:`cloud_metrics`.

The distances behind them live in :mod:`bundlenet.geometry` (the lowest layer, shared with the
training losses): ``mmd`` (Gaussian kernel, geomloss' convention), ``msmd``, the 1-NN
``knn_kl_divergence`` of Wang, Kulkarni & Verdú (2009) and the exact-OT ``wasserstein``.
``cloud_metrics`` gives all six metrics of the evaluation protocol (docs/evaluation.md) for a
pair of (batches of) clouds, from one pass of nearest distances and kernel means.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import overload

import torch
from torch import Tensor

from bundlenet.errors import InputError
from bundlenet.geometry import (
    gaussian_kernel,
    knn_kl_estimate,
    pairwise_distances,
    wasserstein,
)


@dataclass(frozen=True)
class Metric:
    """What the evaluation and the report know of one metric (declared once, below).

    Attributes:
        name: its key in ``evaluation.json`` and ``metrics.json``.
        label: its column in the report's tables.
        ratio: reported as model / noise floor (distances), or as its value (metrics whose floor
            is ≈ 0 by definition or can be negative, and shares).
        over_time: its label in the report's quality-against-training-time table and figure
            (``None``: not drawn there).
    """

    name: str
    label: str
    ratio: bool
    over_time: str | None = None


@dataclass(frozen=True)
class CloudMetrics:
    r"""The evaluation metrics between true clouds T and generated clouds G (docs/evaluation.md).

    Each field is a tensor of the clouds' batch shape ``[...]``:

    * ``mmd`` = MMD(T, G), Gaussian kernel, σ = 0.5 (:func:`mmd`);
    * ``msmd`` = (1/|T|) Σ_{t∈T} min_{g∈G} |t − g|² (:func:`msmd`);
    * ``kl_fwd`` = KL̂(T‖G) and ``kl_bwd`` = KL̂(G‖T), the 1-NN estimator (:func:`knn_kl_divergence`);
    * ``w1``, ``w2`` = exact W₁, W₂ (:func:`wasserstein`).
    """

    mmd: Tensor = field(metadata={"label": "MMD", "ratio": True})
    msmd: Tensor = field(metadata={"label": "MSMD", "ratio": True})
    kl_fwd: Tensor = field(metadata={"label": "KL-fwd", "ratio": False})  # the floor is ≈ 0 and can be negative
    kl_bwd: Tensor = field(metadata={"label": "KL-bwd", "ratio": False})
    w1: Tensor = field(metadata={"label": "W1", "ratio": True})
    w2: Tensor = field(metadata={"label": "W2", "ratio": True, "over_time": "fiber W2 / floor"})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def items(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self.names()}


# metrics of fibers beside the cloud metrics, computed by the protocol (precision, coverage,
# re-simulation) or by a bundle's fiber_scores (tables, images)
FIBER_SCORES = (
    Metric("precision", "precision", False, "precision (mean distance to the fiber)"),
    Metric("coverage", "coverage / floor", True, "coverage / floor"),
    Metric("resimulation", "re-simulation error", False),
    Metric("support", "in support", False, "share inside the support"),
    Metric("image_mmd", "image MMD / floor", True),
    Metric("accuracy", "classified as their digit", False),
    Metric("ink_error", "ink error", False),
    Metric("confidence", "classifier confidence", False),
    Metric("forest_resimulation", "re-simulation (forest) / floor", True),
    Metric("nearest_row", "to nearest row / floor", True),
)
METRICS: dict[str, Metric] = {
    **{f.name: Metric(f.name, **f.metadata) for f in fields(CloudMetrics)},
    **{m.name: m for m in FIBER_SCORES},
}


def cloud_metrics(true: Tensor, generated: Tensor, ot_points: int | None = None) -> CloudMetrics:
    """All evaluation metrics between ``true [..., n, d]`` and ``generated [..., m, d]`` (float64 results).

    ``ot_points`` limits W1 and W2 to the first ``ot_points`` points of each cloud (exact OT costs
    O(n³); the clouds are i.i.d. samples, so a prefix is a smaller i.i.d. sample); the other
    metrics always use every point.

    The distance-based metrics stream over blocks of ``_BLOCK`` rows (:func:`_nearest_and_kernel`):
    memory O((n + m)·block), never the n × n matrices (three 4000² float32 matrices and their
    temporaries are ~0.4 GB). Distances in float32 (exact kernel; errors ~1e-7 relative),
    optimal transport in float64.
    """
    if true.shape[:-2] != generated.shape[:-2] or true.shape[-1] != generated.shape[-1]:
        raise InputError(
            f"true and generated clouds must share batch shape and dimension, got {tuple(true.shape)} and {tuple(generated.shape)}"
        )
    if ot_points is not None and ot_points < 2:
        raise InputError(f"ot_points must be at least 2 (or null for every point), got {ot_points}")
    t, g = true.float(), generated.float()
    within_t, to_g, to_g_any, kernel_tt, kernel_tg, from_g = _nearest_and_kernel(t, g)
    within_g, _, _, kernel_gg, _, _ = _nearest_and_kernel(g, None)
    n, m, dim = t.shape[-2], g.shape[-2], t.shape[-1]
    t_ot, g_ot = true.double(), generated.double()
    if ot_points is not None:
        t_ot, g_ot = t_ot[..., :ot_points, :], g_ot[..., :ot_points, :]
    all_t = torch.ones(t.shape[:-1], dtype=torch.bool, device=t.device)
    all_g = torch.ones(g.shape[:-1], dtype=torch.bool, device=g.device)
    return CloudMetrics(
        mmd=(0.5 * (kernel_tt / n**2 + kernel_gg / m**2 - 2 * kernel_tg / (n * m))).double(),
        msmd=to_g_any.double().pow(2).mean(-1),
        kl_fwd=knn_kl_estimate(within_t, to_g, all_t, torch.tensor(float(m)), dim).double(),
        kl_bwd=knn_kl_estimate(within_g, from_g, all_g, torch.tensor(float(n)), dim).double(),
        w1=wasserstein(t_ot, g_ot, p=1),
        w2=wasserstein(t_ot, g_ot, p=2),
    )


_BLOCK = 512  # rows of a distance block in cloud_metrics


@overload
def _nearest_and_kernel(x: Tensor, y: Tensor, blur: float = ...) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]: ...
@overload
def _nearest_and_kernel(x: Tensor, y: None, blur: float = ...) -> tuple[Tensor, None, None, Tensor, None, None]: ...
def _nearest_and_kernel(
    x: Tensor, y: Tensor | None, blur: float = 0.5
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor, Tensor | None, Tensor | None]:
    """Nearest-neighbour distances and Gaussian-kernel sums of ``x [..., n, d]`` (and against
    ``y [..., m, d]``), computed over blocks of ``_BLOCK`` rows of x.

    Returns, with zero distances (duplicates) skipped where the KL estimator needs it:
    ``within [..., n]`` nearest other x point (nonzero); ``to_y [..., n]`` nearest y point
    (nonzero); ``to_y_any [..., n]`` nearest y point (zeros allowed, for MSMD); ``k_xx [...]``
    Σ exp(−|x−x'|²/2σ²); ``k_xy [...]`` the same over x × y; ``from_y [..., m]`` each y point's
    nearest x point (nonzero). The y outputs are ``None`` without ``y``.
    """
    n = x.shape[-2]
    inf = float("inf")
    within, to_y, to_y_any = [], [], []
    k_xx = x.new_zeros(x.shape[:-2])
    k_xy = x.new_zeros(x.shape[:-2])  # returned only with y
    from_y = x.new_full((*y.shape[:-1],), inf) if y is not None else x.new_empty(0)
    for start in range(0, n, _BLOCK):
        block = x[..., start : start + _BLOCK, :]
        d_xx = pairwise_distances(block, x)
        k_xx = k_xx + gaussian_kernel(d_xx, blur).sum(dim=(-2, -1))
        rows = torch.arange(block.shape[-2], device=x.device).unsqueeze(1)
        self_pair = torch.arange(n, device=x.device).unsqueeze(0) == rows + start
        within.append(d_xx.masked_fill(self_pair | (d_xx <= 0), inf).min(dim=-1).values)
        if y is not None:
            d_xy = pairwise_distances(block, y)
            k_xy = k_xy + gaussian_kernel(d_xy, blur).sum(dim=(-2, -1))
            to_y_any.append(d_xy.min(dim=-1).values)
            nonzero = d_xy.masked_fill(d_xy <= 0, inf)
            to_y.append(nonzero.min(dim=-1).values)
            from_y = torch.minimum(from_y, nonzero.min(dim=-2).values)
    if y is None:
        return torch.cat(within, -1), None, None, k_xx, None, None
    return torch.cat(within, -1), torch.cat(to_y, -1), torch.cat(to_y_any, -1), k_xx, k_xy, from_y
