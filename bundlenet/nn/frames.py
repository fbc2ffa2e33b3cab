r"""Local frames: the affine part of a local trivialization, fitted to the data of each neighbourhood.

For neighbourhood k of the cover (centre :math:`c_k`, partition-of-unity weights :math:`w_k`),
a weighted least-squares fit of the total-space points on their base points gives the fiber's
centre :math:`\mu_k + B_k (y - c_k)` and the covariance :math:`\Sigma_k` of the deviations from it.
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

Shapes: ``to_local(x [N, d], y [N, d_B], cover) → (r [N, d], log_det [N])``; ``from_local(r, y, cover) → x``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bundlenet.nn.cover import Cover
from bundlenet.nn.trivialization import distinct_rows


class LocalFrames(nn.Module):
    """The frames of the module docstring over the neighbourhoods of a :class:`Cover` (passed to
    each method: the frames hold one centre, slope and covariance per neighbourhood).

    Args:
        num_nbhds: K, the neighbourhoods of the cover.
        base_dim: d_B.
        total_dim: d, the dimension of the points (standardised units).
        span: how many leading principal directions are the fiber's own (sets the scale).
        ridge: ridge of the least-squares fits (standardised units).
        max_points: the fits use a seeded subsample of at most this many points (memory
            O(max_points · K · d)).
    """

    centre: Tensor
    slope: Tensor
    covariance: Tensor

    def __init__(self, num_nbhds: int, base_dim: int, total_dim: int, span: int, ridge: float = 1e-3,
                 max_points: int = 20_000) -> None:
        super().__init__()
        self.span = max(1, min(int(span), total_dim))
        self.ridge = ridge
        self.max_points = max_points
        k, d_b = num_nbhds, base_dim
        self.register_buffer("centre", torch.zeros(k, total_dim))
        self.register_buffer("slope", torch.zeros(k, total_dim, d_b))
        self.register_buffer("covariance", torch.eye(total_dim).repeat(k, 1, 1))

    @torch.no_grad()
    def fit(self, x: Tensor, y: Tensor, cover: Cover) -> None:
        """Fit every neighbourhood's centre, slope and covariance on points ``x [N, d]`` over
        ``y [N, d_B]`` (after the cover is fitted), weighting points by the partition of unity."""
        if x.shape[0] > self.max_points:
            keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[: self.max_points]
            x, y = x[keep.to(x.device)], y[keep.to(y.device)]
        w = cover.weights(y).double()  # [N, K]
        x, y = x.double(), y.double()
        offsets = y.unsqueeze(1) - cover.centres.double().unsqueeze(0)  # [N, K, d_B]
        design = torch.cat([torch.ones_like(offsets[..., :1]), offsets], dim=-1)  # [N, K, 1 + d_B]
        weighted = design * w.unsqueeze(-1)
        gram = torch.einsum("nki,nkj->kij", weighted, design)
        gram = gram + self.ridge * torch.eye(gram.shape[-1], dtype=gram.dtype)
        coef = torch.linalg.solve(gram, torch.einsum("nki,nd->kid", weighted, x))  # [K, 1 + d_B, d]
        residual = x.unsqueeze(1) - torch.einsum("nki,kid->nkd", design, coef)  # [N, K, d]
        mass = w.sum(0).clamp_min(1e-12)
        covariance = torch.einsum("nk,nki,nkj->kij", w, residual, residual) / mass[:, None, None]
        self.centre.copy_(coef[:, 0].to(self.centre))
        self.slope.copy_(coef[:, 1:].transpose(1, 2).to(self.slope))
        self.covariance.copy_(covariance.to(self.covariance))

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
        variance, axes = torch.linalg.eigh(covariance.double())
        variance, axes = variance.flip(-1).clamp_min(0), axes.flip(-1)
        scale = variance[:, : self.span].mean(-1).sqrt().clamp_min(1e-6)
        return mu, axes.to(mu), scale.to(mu)

    def to_local(self, x: Tensor, y: Tensor, cover: Cover) -> tuple[Tensor, Tensor]:
        """Local coordinates of ``x [N, d]`` over ``y [N, d_B]`` and log|det ∂r/∂x| ``[N]``."""
        mu, axes, scale = self.frame(y, cover)
        r = torch.einsum("nij,ni->nj", axes, x - mu) / scale.unsqueeze(1)
        return r, -x.shape[1] * scale.log()

    def from_local(self, r: Tensor, y: Tensor, cover: Cover) -> Tensor:
        """Points with local coordinates ``r [N, d]`` over ``y [N, d_B]``: ``[N, d]``."""
        mu, axes, scale = self.frame(y, cover)
        return mu + torch.einsum("nij,nj->ni", axes, r * scale.unsqueeze(1))
