"""Gaussian log-densities, the one formula the fiber latents, the padding noise and the flows' priors share."""

from __future__ import annotations

import math

from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def log_normal(x: Tensor, mean: float = 0.0, std: float | Tensor = 1.0) -> Tensor:
    """log N(x; mean, std²) of each entry of ``x`` (same shape; ``std`` a number or broadcastable)."""
    log_std = std.log() if isinstance(std, Tensor) else math.log(std)
    return -0.5 * ((x - mean) / std) ** 2 - log_std - 0.5 * LOG_2PI


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I_D) of each row of ``z [N, D]``: ``[N]``."""
    return -0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * LOG_2PI
