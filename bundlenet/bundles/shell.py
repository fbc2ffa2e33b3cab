"""Spheres S³ in R⁴ whose density tilts with the base point: a fiber of dimension 3."""

from __future__ import annotations

import torch
from torch import Tensor

from bundlenet.bundles.base import Units, check_units
from bundlenet.bundles.radial import RadialBundle


class TiltedShell(RadialBundle):
    r"""Concentric 3-spheres with a direction density that tilts toward one pole as y grows.

    .. math::
        x(y, g) = ρ(y)\,\frac{g}{\lVert g\rVert}, \qquad g \sim \mathcal N(κ\,y\,e_1, I_4), \qquad
        ρ(y) = 1 + y, \qquad π(x) = \lVert x\rVert - 1,

    with y uniform on [0, 1]. The fiber over y is the whole sphere of radius ρ(y) in R⁴ (three
    dimensions, no circle factor), drawn with the projected normal density of its direction:
    uniform at y = 0, denser toward +e₁ the larger y (the mean of x₁ / ‖x‖ is about 0.85 at κ = 3,
    y = 1). Default κ = 3.
    """

    total_names = ("x1", "x2", "x3", "x4")
    fiber_circles = 0
    fiber_span = 3

    def __init__(self, tilt: float = 3.0) -> None:
        if not tilt >= 0:
            raise ValueError("TiltedShell needs tilt >= 0")
        self.tilt = float(tilt)

    def embed(self, y: Tensor, generator: torch.Generator | None) -> Tensor:
        g = torch.randn((*y.shape, 4), generator=generator)
        g[..., 0] += self.tilt * y
        return (1 + y).unsqueeze(-1) * g / g.norm(dim=-1, keepdim=True)

    def distance_to_fiber(
        self, total: Tensor, base: Tensor, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """Exact distance of ``total [B, n, 4]`` to the sphere over ``base [B, 1]``: | ‖x‖ − 1 − y |, ``[B, n]``."""
        check_units(units)
        y = self.check_base(base).to(total)[:, :1]  # [B, 1]
        return (total.norm(dim=-1) - 1 - y).abs()
