"""The Möbius band as a bundle over a circle (Courts & Kvinge 2022, §5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bundlenet.bundles.base import Bundle, BundleSamples, Units
from bundlenet.bundles.torus import _uniform, base_angle, circle_base


class MoebiusBand(Bundle):
    r"""A segment of half-length h turning by s/2 around a centre circle of radius R.

    .. math::
        x(s, t) = ((R + t\cos\tfrac{s}{2})\cos s,\ (R + t\cos\tfrac{s}{2})\sin s,\ t\sin\tfrac{s}{2}),
        \qquad π(x) = ρ(\cos s, \sin s),

    s uniform on [0, 2π), t uniform on [−h, h]. Defaults R = 8, h = 2, ρ = 4.5. The fiber over a
    base point is a segment (no circle factor).
    """

    base_names = ("u", "v")
    total_names = ("x", "y", "z")
    fiber_circles = 0
    fiber_span = 1

    def __init__(self, centre_radius: float = 8.0, half_width: float = 2.0, base_radius: float = 4.5) -> None:
        self.centre_radius = float(centre_radius)
        self.half_width = float(half_width)
        self.base_radius = float(base_radius)

    def embed(self, s: Tensor, t: Tensor) -> Tensor:
        ring = self.centre_radius + t * (s / 2).cos()
        return torch.stack([ring * s.cos(), ring * s.sin(), t * (s / 2).sin()], dim=-1)

    def sample_total(self, num_samples: int, generator: torch.Generator | None = None) -> BundleSamples:
        s = _uniform((num_samples,), 0.0, 2 * math.pi, generator)
        t = _uniform((num_samples,), -self.half_width, self.half_width, generator)
        return BundleSamples(self.embed(s, t), circle_base(s, self.base_radius))

    def sample_fiber(self, base: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        base = self.check_base(base)
        s = base_angle(base).unsqueeze(1).expand(-1, num_samples)
        t = _uniform(tuple(s.shape), -self.half_width, self.half_width, generator)
        return self.embed(s, t)

    def project(self, total: Tensor) -> Tensor:
        return circle_base(base_angle(total), self.base_radius)

    def distance_to_fiber(
        self, total: Tensor, base: Tensor, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """Exact distance of ``total [B, n, 3]`` to the fiber segment over ``base [B, 2]``: ``[B, n]``.

        The fiber over s is the segment c + t·u, t ∈ [−h, h], with c the centre-circle point and
        u = (cos(s/2)cos s, cos(s/2)sin s, sin(s/2)) a unit vector; the nearest point has t
        clamped to [−h, h].
        """
        s = base_angle(self.check_base(base).to(total)).unsqueeze(1)
        centre = self.embed(s, torch.zeros_like(s))
        direction = self.embed(s, torch.ones_like(s)) - centre
        t = ((total - centre) * direction).sum(-1).clamp(-self.half_width, self.half_width)
        return (total - centre - t.unsqueeze(-1) * direction).norm(dim=-1)
