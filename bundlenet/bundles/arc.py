"""Arcs of circles whose length grows with the base point: a fiber that is not a closed circle."""

from __future__ import annotations

import torch
from torch import Tensor

from bundlenet.bundles.base import Units, check_units
from bundlenet.bundles.radial import RadialBundle


class GrowingArc(RadialBundle):
    r"""Arcs of concentric circles, longer the farther out.

    .. math::
        x(y, θ) = ρ(y)\,(\cos θ, \sin θ), \qquad ρ(y) = 1 + y, \qquad
        θ = a(y)\,(u_1 + u_2 - 1),\ u_i \sim U[0, 1], \qquad π(x) = \lVert x\rVert - 1,

    with y uniform on [0, 1] and the half-angle :math:`a(y) = a_0 + (a_1 - a_0)\,y`. The fiber
    over y is the arc |θ| ≤ a(y) of the circle of radius ρ(y), with a triangular density along
    it (densest in the middle): its span and its length vary over the base, and near y = 1
    (a₁ = 2.8 of π) it almost closes. Defaults a₀ = 0.4, a₁ = 2.8.
    """

    total_names = ("x1", "x2")
    fiber_circles = 0
    fiber_span = 1

    def __init__(self, min_half_angle: float = 0.4, max_half_angle: float = 2.8) -> None:
        if not 0 < min_half_angle <= max_half_angle < torch.pi:
            raise ValueError("GrowingArc needs 0 < min_half_angle <= max_half_angle < pi")
        self.min_half_angle, self.max_half_angle = float(min_half_angle), float(max_half_angle)

    def half_angle(self, y: Tensor) -> Tensor:
        return self.min_half_angle + (self.max_half_angle - self.min_half_angle) * y

    def embed(self, y: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand((*y.shape, 2), generator=generator)
        theta = self.half_angle(y) * (u.sum(-1) - 1)
        return (1 + y).unsqueeze(-1) * torch.stack([theta.cos(), theta.sin()], dim=-1)

    def distance_to_fiber(
        self, total: Tensor, base: Tensor, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """Exact distance of ``total [B, n, 2]`` to the arc over ``base [B, 1]``: ``[B, n]``: to the
        circle where the angle lies inside the arc, else to the nearer end."""
        check_units(units)
        y = self.check_base(base).to(total)[:, :1]  # [B, 1]
        radius, half = 1 + y, self.half_angle(y)
        theta = torch.atan2(total[..., 1], total[..., 0])
        inside = theta.abs() <= half
        end = radius.unsqueeze(-1) * torch.stack([half.cos().expand_as(theta), theta.sign() * half.sin()], dim=-1)
        return torch.where(inside, (total.norm(dim=-1) - radius).abs(), (total - end).norm(dim=-1))
