r"""Local frames: the affine part of a local trivialization, fitted to the data of each neighbourhood.

For neighbourhood k of the cover (centre :math:`c_k`, partition-of-unity weights :math:`w_k`),
a weighted least-squares fit of the total-space points on their base points gives the fiber's
centre :math:`\mu_k + B_k (y - c_k)` and the covariance :math:`\Sigma_k` of the deviations from it.
A neighbourhood whose weight :math:`m_k` is below d + 1 (so :math:`\hat\Sigma_k` is singular)
adds one pseudo-point (``PRIOR_POINTS``) of the fit over all points to its fit, and
:math:`\Sigma_k = (m_k \hat\Sigma_k + \Sigma_{\text{pool}}) / (m_k + 1)` with
:math:`\Sigma_{\text{pool}}` the weighted mean of the :math:`\hat\Sigma_k`: a neighbourhood
of a few points (an outlying base value) gets a sensible frame instead of a degenerate one (an
isolated point's covariance is 0, and a training point near it had local coordinates of 10⁶).
Larger neighbourhoods keep their own fit (a pseudo-point in every fit would bias the frames of
well-populated neighbourhoods toward the global one).
At a base point y the frame blends them,

.. math::
    \mu(y) = \sum_k w_k(y)\,(\mu_k + B_k (y - c_k)), \qquad
    \Sigma(y) = \sum_k w_k(y)\,\Sigma_k = U(y)\,\mathrm{diag}(\lambda(y))\,U(y)^\top,

and the local coordinates of x over y are :math:`r = U(y)^\top (x - \mu(y)) / s(y)`, with the
principal directions in decreasing variance and one scale :math:`s(y) = \sqrt{\bar\lambda(y)}`,
the root mean variance of the first ``span`` directions (the fiber's own directions; the rest are
the directions normal to the fiber). One scale keeps the fiber's shape: a circle stays a circle,
centred at 0 in the plane of its first two coordinates, which is where a circle-pair latent
expects it. The map is affine in x for each y, with :math:`\log|\det \partial r/\partial x| = -d\log s(y)`.

**Oriented axes.** An eigenvector is defined up to its sign (and, among nearly equal variances,
up to a rotation), and a solver's choice jumps as y moves: the local coordinates of the fibers
would be mirrored between nearby base points, which no flow conditioned smoothly on y follows.
So each neighbourhood's axes are oriented like its parent's in a minimum spanning tree of the
centres (the ``reference`` buffer), and at y the axes of :math:`\Sigma(y)` take the signs (and,
in a block of the fiber's or the normal directions whose variances are within a factor
``ISOTROPIC``, the basis: orthogonal Procrustes) closest to the blended reference
:math:`\sum_k w_k(y) U_k`. The axes then follow y continuously wherever the fibers are
orientable (a Möbius band's are not: its one seam remains).

**The base's gradient.** Where the fiber spans fewer directions than the data (``span`` < d:
the base is a function of x), a weighted regression of y on x per neighbourhood, with d
pseudo-points of the regression over all points, gives :math:`A_k` ``[d, d_B]`` (:math:`y
\approx a_k + A_k^\top x`; 0 where the base does not vary inside the neighbourhood, e.g. a
class; per base coordinate), blended as :math:`A(y) = \sum_k w_k(y) A_k` (:meth:`gradient_at`).
The fit uses the data's values at their cells' centres, not their dequantization noise, which
would bias it. Samplers use it to round discrete columns without moving a sample off its base
point (:meth:`~bundlenet.models.bundlenet.BundleNet.round_on_fiber`). It does not change the
frame: the frame's normal coordinates stay the principal directions of the deviations.

Shapes: ``to_local(x [N, d], y [N, d_B], cover) → (r [N, d], log_det [N])``; ``from_local(r, y, cover) → x``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree
from torch import Tensor, nn

from bundlenet.geometry import distinct_rows, pairwise_distances
from bundlenet.nn.cover import Cover


class LocalFrames(nn.Module):
    """The frames of the module docstring over the neighbourhoods of a :class:`Cover` (passed to
    each method: the frames hold one centre, slope, covariance and base gradient per neighbourhood).

    Args:
        num_nbhds: K, the neighbourhoods of the cover.
        base_dim: d_B.
        total_dim: d, the dimension of the points (standardised units).
        span: how many leading principal directions are the fiber's own (sets the scale).
        ridge: ridge of the least-squares fits (standardised units).
        max_points: the fits use a seeded subsample of at most this many points (memory
            O(max_points · K · d)).
    """

    PRIOR_POINTS = 1.0
    ISOTROPIC = 2.0  # a block of variances within this factor has no preferred basis

    centre: Tensor
    slope: Tensor
    covariance: Tensor
    gradient: Tensor
    reference: Tensor

    def __init__(
        self, num_nbhds: int, base_dim: int, total_dim: int, span: int, ridge: float = 1e-3, max_points: int = 20_000
    ) -> None:
        super().__init__()
        self.span = max(1, min(int(span), total_dim))
        self.ridge = ridge
        self.max_points = max_points
        k, d_b = num_nbhds, base_dim
        self.register_buffer("centre", torch.zeros(k, total_dim))
        self.register_buffer("slope", torch.zeros(k, total_dim, d_b))
        self.register_buffer("covariance", torch.eye(total_dim).repeat(k, 1, 1))
        self.register_buffer("gradient", torch.zeros(k, total_dim, d_b))
        self.register_buffer("reference", torch.zeros(k, total_dim, total_dim))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints from before the base gradient: none (nearest rounding, as they were sampled);
        # from before oriented axes: none (the eigenvectors' own signs, as they were trained)
        state_dict.setdefault(prefix + "gradient", torch.zeros_like(self.gradient))
        state_dict.setdefault(prefix + "reference", torch.zeros_like(self.reference))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit(self, x: Tensor, y: Tensor, cover: Cover, values: Tensor | None = None) -> None:
        """Fit every neighbourhood's centre, slope and covariance on points ``x [N, d]`` over
        ``y [N, d_B]`` (after the cover is fitted), weighting points by the partition of unity,
        and, where the fiber spans fewer directions than the data (``span`` < d), the gradients
        of the base on ``values [N, d]``, the same points at their cells' centres without the
        dequantization noise (default ``x``): the noise would bias a regression on it."""
        values = x if values is None else values
        if x.shape[0] > self.max_points:
            keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[: self.max_points]
            x, y, values = x[keep.to(x.device)], y[keep.to(y.device)], values[keep.to(values.device)]
        w = cover.weights(y).double()  # [N, K]
        x, y = x.double(), y.double()
        offsets = y.unsqueeze(1) - cover.centres.double().unsqueeze(0)  # [N, K, d_B]
        design = torch.cat([torch.ones_like(offsets[..., :1]), offsets], dim=-1)  # [N, K, 1 + d_B]
        mass = w.sum(0).clamp_min(1e-12)
        # a neighbourhood of fewer points than d + 1 (its covariance is singular) gets PRIOR_POINTS
        # pseudo-points of the fit over all points (weight 1/N each)
        prior = torch.where(mass < x.shape[1] + 1, self.PRIOR_POINTS, 0.0)
        weighted = design * (w + prior / x.shape[0]).unsqueeze(-1)
        gram = torch.einsum("nki,nkj->kij", weighted, design)
        gram = gram + self.ridge * torch.eye(gram.shape[-1], dtype=gram.dtype)
        coef = torch.linalg.solve(gram, torch.einsum("nki,nd->kid", weighted, x))  # [K, 1 + d_B, d]
        residual = x.unsqueeze(1) - torch.einsum("nki,kid->nkd", design, coef)  # [N, K, d]
        covariance = torch.einsum("nk,nki,nkj->kij", w, residual, residual) / mass[:, None, None]
        pooled = torch.einsum("k,kij->ij", mass, covariance) / mass.sum()
        covariance = (mass[:, None, None] * covariance + prior[:, None, None] * pooled) / (mass + prior)[:, None, None]
        self.centre.copy_(coef[:, 0].to(self.centre))
        self.slope.copy_(coef[:, 1:].transpose(1, 2).to(self.slope))
        self.covariance.copy_(covariance.to(self.covariance))
        self.reference.copy_(self._oriented_axes(covariance, cover.centres.double()).to(self.reference))
        del residual  # [N, K, d]: freed before the gradient's moments of the same size
        if self.span < x.shape[1]:
            self.gradient.copy_(self._fit_gradient(values.double(), y, w, mass).to(self.gradient))

    @torch.no_grad()
    def shape_change(self, cover: Cover) -> float:
        """How much the fiber's shape changes between neighbouring neighbourhoods: the median over
        neighbourhoods k of :math:`\\max_{i < \\text{span}} |\\log λ_{k,i} − \\log λ_{j,i}|`, with
        λ the decreasing eigenvalues of Σ and j the neighbourhood of the nearest other centre
        (0 for a cover of one neighbourhood). With 1000 points: 0.025 to 0.05 where every fiber
        has the same shape (a torus's circles: the estimate's scatter), 0.07 to 0.1 for arcs that
        grow with the base point, 0.3 for arcs from a full circle to a sliver."""
        if cover.num_nbhds < 2:
            return 0.0
        variance = torch.linalg.eigvalsh(self.covariance.double()).flip(-1)[:, : self.span].clamp_min(1e-12)
        gaps = pairwise_distances(cover.centres, cover.centres).fill_diagonal_(float("inf"))
        nearest = gaps.argmin(dim=1)
        change = (variance.log() - variance[nearest].log()).abs().amax(dim=1)
        return float(change.median())

    def _fit_gradient(self, x: Tensor, y: Tensor, w: Tensor, mass: Tensor) -> Tensor:
        """A_k ``[K, d, d_B]``: the weighted regression of y on x in each neighbourhood, with d
        pseudo-points of the regression over all points (a neighbourhood of fewer points than
        dimensions does not determine its own)."""
        n, d = x.shape

        def moments(weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            """weights [N, G] → Cxx [G, d, d], Cxy [G, d, d_B] and the variances of y [G, d_B]."""
            total = weights.sum(0).clamp_min(1e-12)
            xc = x.unsqueeze(1) - (torch.einsum("ng,nd->gd", weights, x) / total[:, None]).unsqueeze(0)
            yc = y.unsqueeze(1) - (torch.einsum("ng,nb->gb", weights, y) / total[:, None]).unsqueeze(0)
            return (
                torch.einsum("ng,ngi,ngj->gij", weights, xc, xc) / total[:, None, None],
                torch.einsum("ng,ngi,ngb->gib", weights, xc, yc) / total[:, None, None],
                torch.einsum("ng,ngb->gb", weights, yc**2) / total[:, None],
            )

        cxx, cxy, spread = moments(w)
        gxx, gxy, _ = moments(torch.ones(n, 1, dtype=x.dtype, device=x.device))
        prior = float(d)
        lhs = mass[:, None, None] * cxx + prior * gxx
        rhs = mass[:, None, None] * cxy + prior * gxy
        ridge = self.ridge * lhs.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        gradient = torch.linalg.solve(lhs + ridge[:, None, None] * torch.eye(d, dtype=x.dtype, device=x.device), rhs)
        # a base coordinate that does not vary inside a neighbourhood (a class) has no direction there
        varies = spread > 1e-6 * y.var(0).clamp_min(1e-12)  # [K, d_B]
        return gradient * varies[:, None, :].to(gradient)

    def _oriented_axes(self, covariance: Tensor, centres: Tensor) -> Tensor:
        """Each neighbourhood's principal axes ``[K, d, d]`` (columns, decreasing variance),
        oriented (:meth:`_orient`) like those of its parent in a minimum spanning tree of the
        centres, from neighbourhood 0 outwards."""
        variance, axes = _principal_axes(covariance)
        k = axes.shape[0]
        if k == 1:
            return axes
        tree = minimum_spanning_tree(torch.cdist(centres, centres).cpu().numpy() + 1e-12 * (1 - np.eye(k)))
        order, parents = breadth_first_order(tree, i_start=0, directed=False)
        for node in order[1:]:
            parent = int(parents[node])
            axes[node] = self._orient(axes[node : node + 1], variance[node : node + 1], axes[parent : parent + 1])[0]
        return axes

    def _orient(self, axes: Tensor, variance: Tensor, target: Tensor) -> Tensor:
        """Principal axes ``[N, d, d]`` (variances ``[N, d]``, decreasing) with the signs, and
        within a nearly isotropic block the basis, closest to ``target [N, d, d]``.

        Each block (the fiber's ``span`` directions, then the normal ones) of variances within a
        factor ``ISOTROPIC`` of each other has no preferred basis (a circle's plane): it is
        rotated within its span to the target's (orthogonal Procrustes). Otherwise each axis keeps
        its direction and takes the sign of its cosine with the target's axis."""
        signs = torch.where((axes * target).sum(-2, keepdim=True) < 0, -1.0, 1.0).to(axes)
        out = axes * signs
        for block in (slice(0, self.span), slice(self.span, None)):
            part = variance[:, block]
            if part.shape[1] < 2:
                continue
            isotropic = part[:, 0] <= self.ISOTROPIC * part[:, -1].clamp_min(1e-12)
            rotated = _procrustes(axes[:, :, block], target[:, :, block])
            out[:, :, block] = torch.where(isotropic[:, None, None], rotated, out[:, :, block])
        return out

    def frame(self, y: Tensor, cover: Cover) -> tuple[Tensor, Tensor, Tensor]:
        """``(μ(y) [N, d], U(y) [N, d, d], s(y) [N])`` at base points ``y [N, d_B]``.

        Computed once per distinct base point (a table's base often takes few values, e.g. a
        class) and gathered back to the N rows."""
        unique, index = distinct_rows(y)
        if unique.shape[0] < y.shape[0]:
            mu, axes, scale = self._frame(unique, cover)
            return mu[index], axes[index], scale[index]
        return self._frame(y, cover)

    def _frame(self, y: Tensor, cover: Cover) -> tuple[Tensor, Tensor, Tensor]:
        w = cover.weights(y)
        offsets = y.unsqueeze(1) - cover.centres.unsqueeze(0)
        centres = self.centre.unsqueeze(0) + torch.einsum("kdb,nkb->nkd", self.slope, offsets)
        mu = torch.einsum("nk,nkd->nd", w, centres)
        covariance = torch.einsum("nk,kij->nij", w, self.covariance)
        variance, axes = _principal_axes(covariance.double())
        scale = variance[:, : self.span].mean(-1).sqrt().clamp_min(1e-6)
        if bool(self.reference.any()):  # axes that follow y continuously
            axes = self._orient(axes, variance, torch.einsum("nk,kij->nij", w.double(), self.reference.double()))
        return mu, axes.to(mu), scale.to(mu)

    def gradient_at(self, y: Tensor, cover: Cover) -> Tensor:
        """The blended base gradient A(y) ``[N, d, d_B]`` at base points ``y [N, d_B]`` (zero where
        the base is not a function of x)."""
        return torch.einsum("nk,kdb->ndb", cover.weights(y), self.gradient.to(y))

    def to_local(self, x: Tensor, y: Tensor, cover: Cover) -> tuple[Tensor, Tensor]:
        """Local coordinates of ``x [N, d]`` over ``y [N, d_B]`` and log|det ∂r/∂x| ``[N]``."""
        mu, axes, scale = self.frame(y, cover)
        r = torch.einsum("nij,ni->nj", axes, x - mu) / scale.unsqueeze(1)
        return r, -x.shape[1] * scale.log()

    def from_local(self, r: Tensor, y: Tensor, cover: Cover) -> Tensor:
        """Points with local coordinates ``r [N, d]`` over ``y [N, d_B]``: ``[N, d]``."""
        mu, axes, scale = self.frame(y, cover)
        return mu + torch.einsum("nij,nj->ni", axes, r * scale.unsqueeze(1))


def _principal_axes(covariance: Tensor) -> tuple[Tensor, Tensor]:
    """Variances ``[..., d]`` (decreasing, at least 0) and principal axes ``[..., d, d]``
    (columns) of covariances ``[..., d, d]``."""
    variance, axes = torch.linalg.eigh(covariance)
    return variance.flip(-1).clamp_min(0), axes.flip(-1)


def _procrustes(basis: Tensor, target: Tensor) -> Tensor:
    """The orthonormal basis of ``basis``'s span (columns, ``[..., d, b]``) closest to ``target``
    (same shape): ``basis · Q`` with Q the orthogonal factor of ``basisᵀ target``."""
    if basis.shape[-1] == 0:
        return basis
    u, _, vh = torch.linalg.svd(basis.transpose(-1, -2) @ target)
    return basis @ (u @ vh)
