"""The fiber latent: circle pairs × intervals, with per-neighbourhood statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


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

    def detach(self) -> LatentStats:
        return LatentStats(self.mean.detach(), self.std.detach(), self.radius_mean.detach(), self.radius_std.detach())


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
