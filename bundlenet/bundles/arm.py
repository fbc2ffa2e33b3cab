"""A planar robot arm on a rail: a 2-dimensional curved fiber in R⁴ whose density is a prior's."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bundlenet.bundles.base import Bundle, BundleSamples, Units, check_units
from bundlenet.geometry import project_to_level_set


class RobotArm(Bundle):
    r"""The inverse kinematics of a three-link planar arm whose shoulder slides on a vertical rail
    (the benchmark of Kruse et al., *Benchmarking Invertible Architectures on Inverse Problems*,
    2019, with cumulative joint angles).

    Inputs x = (h, θ₁, θ₂, θ₃): the shoulder's height on the rail and three joint angles, each
    drawn from a Gaussian prior :math:`N(0, σ_i^2)`; the output is the hand's position,

    .. math::
        π(x) = \Big(h + \sum_{j=1}^3 l_j \sin φ_j,\ \sum_{j=1}^3 l_j \cos φ_j\Big), \qquad
        φ_j = θ_1 + \dots + θ_j .

    The fiber over a hand position y is the 2-dimensional surface of poses that reach it, with the
    density of the prior restricted to it (not uniform). With (θ₁, θ₂) free, the last link's
    angle solves :math:`l_3 \cos φ_3 = y_2 - l_1\cos φ_1 - l_2 \cos φ_2` (two branches ±) and h
    follows from y₁; changing variables (h, θ₃) → (y₁, y₂) has Jacobian :math:`l_3 |\sin φ_3|`, so

    .. math::
        p(θ_1, θ_2, \text{branch} \mid y) \propto
        \frac{p(θ_1)\,p(θ_2)\,p(h)\,p(θ_3)}{l_3\,\lvert\sin φ_3\rvert}.

    :meth:`sample_fiber` draws (θ₁, θ₂) from a proposal (half their prior, half uniform on
    [−π, π], so that poses of the prior's tails are proposed too) and resamples them with the
    density above over the proposal's as weights (sampling-importance-resampling from
    ``proposals_per_sample`` proposals per sample: asymptotically exact). :meth:`distance_to_fiber` projects a point onto the fiber by
    Gauss–Newton steps on π(x) = y (:func:`~bundlenet.geometry.project_to_level_set`) and
    measures the distance to the foot.

    Defaults: l = (0.5, 0.5, 1.0), σ = (0.25, 0.5, 0.5, 0.5).
    """

    base_names = ("hand_x", "hand_y")
    total_names = ("rail", "shoulder", "elbow", "wrist")
    fiber_circles = 0
    fiber_span = 2

    def __init__(
        self,
        lengths: tuple[float, float, float] = (0.5, 0.5, 1.0),
        prior_std: tuple[float, float, float, float] = (0.25, 0.5, 0.5, 0.5),
        proposals_per_sample: int = 200,
    ) -> None:
        self.lengths = tuple(float(v) for v in lengths)
        self.prior_std = tuple(float(v) for v in prior_std)
        if len(self.lengths) != 3 or len(self.prior_std) != 4 or min(*self.lengths, *self.prior_std) <= 0:
            raise ValueError("RobotArm needs 3 positive lengths and 4 positive prior standard deviations")
        self.proposals_per_sample = int(proposals_per_sample)

    def sample_total(self, num_samples: int, generator: torch.Generator | None = None) -> BundleSamples:
        x = torch.randn(num_samples, 4, generator=generator) * torch.tensor(self.prior_std)
        return BundleSamples(x, self.project(x))

    def project(self, total: Tensor) -> Tensor:
        angles = total[..., 1:].cumsum(-1)
        length = torch.tensor(self.lengths, dtype=total.dtype, device=total.device)
        return torch.stack([total[..., 0] + (length * angles.sin()).sum(-1), (length * angles.cos()).sum(-1)], dim=-1)

    def sample_fiber(self, base: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        base = self.check_base(base)
        l1, l2, l3 = self.lengths
        s_h, s1, s2, s3 = self.prior_std
        m = max(self.proposals_per_sample * num_samples, 4096)
        out = []
        for y in base:
            t1, log_q1 = _proposal(m, s1, generator)
            t2, log_q2 = _proposal(m, s2, generator)
            phi1, phi2 = t1, t1 + t2
            c = (y[1] - l1 * phi1.cos() - l2 * phi2.cos()) / l3
            reach = c.abs() < 1
            phi3 = torch.stack([c.clamp(-1, 1).acos(), -c.clamp(-1, 1).acos()])  # [2, m]: both branches
            t3 = phi3 - phi2
            h = y[0] - l1 * phi1.sin() - l2 * phi2.sin() - l3 * phi3.sin()
            log_w = (
                -0.5 * (h / s_h) ** 2
                - 0.5 * (t3 / s3) ** 2
                - 0.5 * (t1 / s1) ** 2
                - 0.5 * (t2 / s2) ** 2
                - log_q1
                - log_q2
                - (l3 * phi3.sin().abs()).clamp_min(1e-12).log()
            )
            log_w = torch.where(reach, log_w, -math.inf).reshape(-1)
            if not bool(torch.isfinite(log_w).any()):
                raise ValueError(f"no pose of the arm reaches {y.tolist()}")
            pick = torch.multinomial((log_w - log_w.max()).exp(), num_samples, replacement=True, generator=generator)
            branch, row = pick // m, pick % m
            out.append(torch.stack([h[branch, row], t1[row], t2[row], t3[branch, row]], dim=-1))
        return torch.stack(out) if out else torch.zeros(0, num_samples, 4)

    def distance_to_fiber(
        self, total: Tensor, base: Tensor, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """Distance of ``total [B, n, 4]`` to the fiber over ``base [B, 2]``: ``[B, n]``, to the
        foot of a Gauss–Newton projection (exact to second order in the distance)."""
        check_units(units)
        base = self.check_base(base).to(total)
        target = base.unsqueeze(1).expand(*total.shape[:-1], 2)
        foot = project_to_level_set(total.reshape(-1, 4), target.reshape(-1, 2), self.project)
        return (total.reshape(-1, 4) - foot).norm(dim=-1).reshape(total.shape[:-1])


def _proposal(num: int, std: float, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``num`` angles from ½ N(0, std²) + ½ U[−π, π] and the log of that density at them (up to
    the constant both weights share)."""
    normal = std * torch.randn(num, generator=generator)
    uniform = (2 * torch.rand(num, generator=generator) - 1) * math.pi
    angle = torch.where(torch.rand(num, generator=generator) < 0.5, normal, uniform)
    density = 0.5 * torch.exp(-0.5 * (angle / std) ** 2) / (std * math.sqrt(2 * math.pi)) + 0.5 / (2 * math.pi) * (
        angle.abs() <= math.pi
    )
    return angle, density.log()
