"""The torus and the sliced torus as bundles over a circle (Courts & Kvinge 2022, §5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bundlenet.bundles.base import Bundle, BundleSamples, Units


def _uniform(shape: tuple[int, ...], low: Tensor | float, high: Tensor | float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def base_angle(base: Tensor) -> Tensor:
    """The angle φ ∈ [0, 2π) of a base point on the circle (or of a total point's (x, y))."""
    return torch.remainder(torch.atan2(base[..., 1], base[..., 0]), 2 * math.pi)


def circle_base(phi: Tensor, radius: float) -> Tensor:
    """Base points ``radius·(cos φ, sin φ)``: ``[...]`` → ``[..., 2]``."""
    return radius * torch.stack([phi.cos(), phi.sin()], dim=-1)


class Torus(Bundle):
    r"""The torus over the circle.

    .. math::
        x(φ, θ) = ((R + r\cos θ)\cos φ,\ (R + r\cos θ)\sin φ,\ r\sin θ), \qquad
        π(x) = ρ(\cos φ, \sin φ),

    with φ, θ uniform on [0, 2π). The fiber over a base point is the circle of radius r at
    angle φ. Defaults R = 8, r = 2, ρ = 4.5 as in the paper.
    """

    base_names = ("u", "v")
    total_names = ("x", "y", "z")
    fiber_circles = 1
    fiber_span = 2

    def __init__(self, major_radius: float = 8.0, minor_radius: float = 2.0, base_radius: float = 4.5) -> None:
        self.major_radius = float(major_radius)
        self.minor_radius = float(minor_radius)
        self.base_radius = float(base_radius)

    def embed(self, phi: Tensor, theta: Tensor) -> Tensor:
        """Torus coordinates of angles ``phi, theta [...]`` → ``[..., 3]``."""
        ring = self.major_radius + self.minor_radius * theta.cos()
        return torch.stack([ring * phi.cos(), ring * phi.sin(), self.minor_radius * theta.sin()], dim=-1)

    def theta_bounds(self, phi: Tensor) -> tuple[Tensor, Tensor]:
        """The interval of θ allowed over φ (the whole circle for the torus)."""
        return torch.zeros_like(phi), torch.full_like(phi, 2 * math.pi)

    def sample_angles(self, num_samples: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        phi = _uniform((num_samples,), 0.0, 2 * math.pi, generator)
        theta = _uniform((num_samples,), 0.0, 2 * math.pi, generator)
        return phi, theta

    def sample_total(self, num_samples: int, generator: torch.Generator | None = None) -> BundleSamples:
        phi, theta = self.sample_angles(num_samples, generator)
        return BundleSamples(self.embed(phi, theta), circle_base(phi, self.base_radius))

    def sample_fiber(self, base: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        base = self.check_base(base)
        phi = base_angle(base).unsqueeze(1).expand(-1, num_samples)
        low, high = self.theta_bounds(phi)
        theta = _uniform(tuple(phi.shape), low, high, generator)
        return self.embed(phi, theta)

    def project(self, total: Tensor) -> Tensor:
        return circle_base(base_angle(total), self.base_radius)

    def fiber_plane(self, total: Tensor, base: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Coordinates of ``total [..., 3]`` in the plane of the fiber over ``base [..., 2]``:
        ``(radial, height, off_plane)`` with the fiber circle centred at radial = height = 0."""
        phi = base_angle(base)
        radial = total[..., 0] * phi.cos() + total[..., 1] * phi.sin() - self.major_radius
        off_plane = -total[..., 0] * phi.sin() + total[..., 1] * phi.cos()
        return radial, total[..., 2], off_plane

    def distance_to_fiber(
        self, total: Tensor, base: Tensor, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """Exact distance of ``total [B, n, 3]`` to the fiber over ``base [B, 2]``: ``[B, n]``.

        The fiber is the arc θ ∈ [low, high] of the circle of radius r in the fiber plane (the
        whole circle for the torus). A point whose nearest circle point lies on the arc is at
        its circle distance; otherwise the nearer arc end is the nearest fiber point.
        """
        base = self.check_base(base).to(total).unsqueeze(1)
        radial, height, off_plane = self.fiber_plane(total, base)
        circle = torch.sqrt(off_plane**2 + (torch.sqrt(radial**2 + height**2) - self.minor_radius) ** 2)
        low, high = self.theta_bounds(base_angle(base).expand_as(radial))
        if bool((high - low >= 2 * math.pi).all()):
            return circle
        theta = torch.remainder(torch.atan2(height, radial), 2 * math.pi)
        inside = ((theta - low) >= 0) & ((theta - low) <= high - low)
        ends = torch.stack([low, high], dim=-1)
        end_points = self.minor_radius * torch.stack([ends.cos(), ends.sin()], dim=-1)  # (radial, height) of both ends
        point = torch.stack([radial, height], dim=-1).unsqueeze(-2)
        to_ends = torch.sqrt((point - end_points).pow(2).sum(-1) + off_plane.unsqueeze(-1) ** 2).min(dim=-1).values
        return torch.where(inside, circle, to_ends)


class SlicedTorus(Torus):
    r"""The torus restricted to :math:`|θ/2π − ½| − ε ≤ |φ/2π − ½|` (ε = 0.01).

    Fibers shrink from a full circle (φ near 0) to a small arc around θ = π (φ near π). Total
    samples are uniform in (φ, θ) on the allowed region (rejection sampling), so the base
    density is proportional to the fiber length, as in the authors' data. Every fiber but those
    within ``slack`` of a turn of φ = 0 (full circles) is an arc, an interval: the topology is
    declared as such (no circle, one direction along the fiber), as
    :class:`~bundlenet.bundles.arc.GrowingArc`'s.
    """

    fiber_circles = 0
    fiber_span = 1

    def __init__(
        self, major_radius: float = 8.0, minor_radius: float = 2.0, base_radius: float = 4.5, slack: float = 0.01
    ) -> None:
        super().__init__(major_radius, minor_radius, base_radius)
        self.slack = float(slack)

    def half_width(self, phi: Tensor) -> Tensor:
        """Half-width of the allowed θ/2π interval around ½ over φ."""
        return torch.clamp((phi / (2 * math.pi) - 0.5).abs() + self.slack, max=0.5)

    def theta_bounds(self, phi: Tensor) -> tuple[Tensor, Tensor]:
        a = self.half_width(phi)
        return 2 * math.pi * (0.5 - a), 2 * math.pi * (0.5 + a)

    def sample_angles(self, num_samples: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        phis, thetas, have = [], [], 0
        while have < num_samples:
            batch = max(2 * (num_samples - have), 64)
            phi = _uniform((batch,), 0.0, 2 * math.pi, generator)
            theta = _uniform((batch,), 0.0, 2 * math.pi, generator)
            keep = (theta / (2 * math.pi) - 0.5).abs() - self.slack <= (phi / (2 * math.pi) - 0.5).abs()
            phis.append(phi[keep])
            thetas.append(theta[keep])
            have += int(keep.sum())
        return torch.cat(phis)[:num_samples], torch.cat(thetas)[:num_samples]
