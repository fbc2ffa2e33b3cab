"""Fiber latents: :class:`FiberLatent`, the prior of a BundleNet (circle pairs, intervals and
normal coordinates, with a density), and :class:`FiberPrior`, the authors' per-neighbourhood
statistics of encoded latents (the paper objective, :mod:`bundlenet.models.paper`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bundlenet.nn.gaussian import LOG_2PI, log_normal


@dataclass(frozen=True)
class LatentStats:
    """Statistics of encoded fiber coordinates, one row per neighbourhood (or group).

    Attributes:
        mean, std: ``[K, L]`` per-coordinate mean and standard deviation.
        radius_mean, radius_std: ``[K, C]`` mean and standard deviation of each circle pair's
            radius.
    """

    mean: Tensor
    std: Tensor
    radius_mean: Tensor
    radius_std: Tensor

    def select(self, rows: Tensor) -> LatentStats:
        """The statistics of the given rows (an index or boolean mask)."""
        return LatentStats(self.mean[rows], self.std[rows], self.radius_mean[rows], self.radius_std[rows])


def _masked_mean_std(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased std over dim 1 of ``values [G, M, F]`` where ``mask [G, M]``."""
    w = mask.unsqueeze(-1).to(values.dtype)
    n = w.sum(1)
    mean = (values * w).sum(1) / n.clamp_min(1)
    var = ((values - mean.unsqueeze(1)).pow(2) * w).sum(1) / (n - 1).clamp_min(1)
    return mean, var.clamp_min(1e-12).sqrt()


class FiberPrior(nn.Module):
    r"""The fiber latent distribution of each neighbourhood.

    The latent ``z ∈ R^L`` (L = D − d_B) is ``num_circles`` circle pairs followed by intervals:

    .. math::
        (z_{2j}, z_{2j+1}) = r_j(\cos α_j, \sin α_j),\ r_j ∼ N(\bar r_{kj}, s_{kj}^2),\ α_j ∼ U[0, 2π);
        \qquad z_i ∼ N(μ_{ki}, σ_{ki}^2)\ \text{for the interval coordinates},

    where k is the neighbourhood. The statistics are those of the encoded training fibers,
    ``φ(x)[d_B:]`` (the authors' algorithm). They are buffers, updated during training by an
    exponential moving average (``momentum``), so a checkpoint samples without the data.
    """

    mean: Tensor
    std: Tensor
    radius_mean: Tensor
    radius_std: Tensor
    initialized: Tensor

    def __init__(self, num_nbhds: int, latent_dim: int, num_circles: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_circles = num_circles
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(num_nbhds, latent_dim))
        self.register_buffer("std", torch.ones(num_nbhds, latent_dim))
        self.register_buffer("radius_mean", torch.ones(num_nbhds, num_circles))
        self.register_buffer("radius_std", torch.zeros(num_nbhds, num_circles))
        self.register_buffer("initialized", torch.zeros(num_nbhds, dtype=torch.bool))

    def statistics(self, z: Tensor, mask: Tensor) -> LatentStats:
        """Statistics of padded groups of latents ``z [G, M, L]`` with ``mask [G, M]`` (differentiable)."""
        mean, std = _masked_mean_std(z, mask)
        radii = z[..., : 2 * self.num_circles].reshape(*z.shape[:2], self.num_circles, 2).norm(dim=-1)
        radius_mean, radius_std = _masked_mean_std(radii, mask)
        return LatentStats(mean, std, radius_mean, radius_std)

    @property
    def stats(self) -> LatentStats:
        """The stored statistics of all neighbourhoods."""
        return LatentStats(self.mean, self.std, self.radius_mean, self.radius_std)

    @torch.no_grad()
    def update(self, stats: LatentStats, neighbourhoods: Tensor) -> None:
        """Move the stored statistics of ``neighbourhoods [G]`` towards ``stats`` (rows ``[G, ·]``)."""
        fresh = ~self.initialized[neighbourhoods]
        rate = torch.where(fresh, 1.0, self.momentum).to(self.mean.dtype).unsqueeze(1)
        for name in ("mean", "std", "radius_mean", "radius_std"):
            buf = getattr(self, name)
            buf[neighbourhoods] = torch.lerp(buf[neighbourhoods], getattr(stats, name).detach().to(buf.dtype), rate)
        self.initialized[neighbourhoods] = True

    def negative_log_likelihood(self, z: Tensor) -> Tensor:
        """Up to a constant, −log p_k(z) of latents ``z [N, K, L]`` under each neighbourhood k's
        prior (Gaussian intervals, Gaussian radius per circle pair; the uniform angle is
        constant): ``[N, K]``."""
        c = 2 * self.num_circles
        mean, std = self.mean[:, c:], self.std[:, c:].clamp_min(1e-6)
        intervals = (((z[..., c:] - mean) / std) ** 2 / 2 + std.log()).sum(-1)
        radius = z[..., :c].reshape(*z.shape[:-1], self.num_circles, 2).norm(dim=-1)
        radius_std = self.radius_std.clamp_min(1e-3)
        circles = (((radius - self.radius_mean) / radius_std) ** 2 / 2 + radius_std.log()).sum(-1)
        return intervals + circles

    def sample(self, stats: LatentStats, rows: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw one latent per entry of ``rows [N]`` (row indices into ``stats``): ``[N, L]``."""
        n, c = rows.shape[0], self.num_circles
        dev, dt = stats.mean.device, stats.mean.dtype
        eps = torch.randn(n, self.latent_dim, generator=generator, device=dev, dtype=dt)
        z = stats.mean[rows] + stats.std[rows] * eps
        if c == 0:
            return z
        radius_eps = torch.randn(n, c, generator=generator, device=dev, dtype=dt)
        angle = 2 * math.pi * torch.rand(n, c, generator=generator, device=dev, dtype=dt)
        radius = stats.radius_mean[rows] + stats.radius_std[rows] * radius_eps
        circles = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=-1).reshape(n, 2 * c)
        return torch.cat([circles, z[:, 2 * c :]], dim=1)


class FiberLatent(nn.Module):
    r"""A fiber latent with a density and the fiber's topology: the prior :math:`p_F` of a BundleNet.

    :math:`z \in R^D` is ``circles`` circle pairs, then ``span − 2·circles`` interval coordinates,
    then ``D − span`` normal coordinates:

    .. math::
        (z_{2j}, z_{2j+1}) = \rho_j(\cos\alpha_j, \sin\alpha_j),\ \rho_j \sim N(\sqrt2, \sigma_c^2),\
        \alpha_j \sim U[0, 2\pi); \qquad z_i \sim N(0, 1)\ \text{(intervals)}; \qquad
        z_i \sim N(0, \sigma_n^2)\ \text{(normal)}.

    The density of a circle pair at a point of radius ρ is :math:`N(\rho; \sqrt2, \sigma_c^2) /
    (2\pi\rho)` (the 1/ρ of polar coordinates). A circle of radius ρ has variance ρ²/2 per
    coordinate, so √2 is the radius of a circle of unit variance, which is what local frames
    make of a fiber circle. Interval coordinates hold the fiber's other directions; normal
    coordinates, the directions off the fiber, start narrow (σ_n = ``normal_width``) so samples
    lie close to the fiber. With ``learn_widths``, every interval and normal coordinate i has its
    width multiplied by :math:`e^{θ_i}`, a parameter trained with the likelihood (0 at the
    start): a normal direction as thick as the data's, or a direction wrongly counted as the
    fiber's, is learned rather than fixed.
    """

    log_scale: Tensor

    def __init__(
        self,
        dim: int,
        circles: int = 0,
        span: int | None = None,
        ring_width: float = 0.1,
        normal_width: float = 0.05,
        learn_widths: bool = False,
    ) -> None:
        super().__init__()
        span = dim if span is None else int(span)
        if not 0 <= 2 * circles <= span <= dim:
            raise ValueError(f"need 0 <= 2*circles <= span <= dim, got circles={circles}, span={span}, dim={dim}")
        self.dim, self.circles, self.span = dim, int(circles), span
        self.ring_width, self.normal_width = float(ring_width), float(normal_width)
        scale = torch.zeros(dim - 2 * self.circles)
        if learn_widths:
            self.log_scale = nn.Parameter(scale)
        else:
            self.register_buffer("log_scale", scale)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints from before learned widths: the fixed widths
        state_dict.setdefault(prefix + "log_scale", torch.zeros_like(self.log_scale))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def widths(self) -> Tensor:
        """The widths of the interval and normal coordinates ``[D − 2·circles]``."""
        base = torch.ones_like(self.log_scale)
        base[self.span - 2 * self.circles :] = self.normal_width
        return base * self.log_scale.exp()

    def log_prob(self, z: Tensor) -> Tensor:
        """log p_F(z) of latents ``z [N, D]``: ``[N]``."""
        c = 2 * self.circles
        radius = z[:, :c].reshape(z.shape[0], self.circles, 2).norm(dim=-1).clamp_min(1e-12)
        rings = (log_normal(radius, math.sqrt(2.0), self.ring_width) - LOG_2PI - radius.log()).sum(1)
        width = self.widths().to(z)
        return rings + log_normal(z[:, c:], 0.0, width).sum(1)

    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """``num`` latents ``[num, D]``."""
        z = torch.randn(num, self.dim, generator=generator, device=device, dtype=dtype)
        z[:, 2 * self.circles :] *= self.widths().detach().to(z)
        if self.circles:
            radius = math.sqrt(2.0) + self.ring_width * z[:, : self.circles]
            angle = 2 * math.pi * torch.rand(num, self.circles, generator=generator, device=device, dtype=dtype)
            z[:, : 2 * self.circles] = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=-1).reshape(num, -1)
        return z
