r"""State a model keeps of its training data for inverse design: the range of every total
column, and a regressor ŷ(x) for models without a learned projection.

:class:`ColumnRange` holds each total column's minimum and maximum over the training rows
(scaled units). :class:`Resimulator` is ridge regression on random Fourier features (Rahimi &
Recht, NeurIPS 2007) of the standardised total point u,

.. math::
    \hat y(u) = c_0 + \sum_m c_m \cos(w_m^\top u + b_m), \qquad w_m \sim N(0, ℓ^{-2} I),\;
    b_m \sim U[0, 2π),

with ℓ the median distance between training points, fitted in closed form on the standardised
base points, its ridge penalty the one of ``RIDGES`` with the least error on a held-out fifth: a smooth, differentiable stand-in for π (re-simulation error, refinement) that
costs one linear solve at fit time and no training. Both are buffers, so checkpoints keep them;
checkpoints written before they existed load with an unfitted state (``fitted`` false).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

MAX_FIT_ROWS = 20_000
RIDGES = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)  # × rows, the candidates of the held-out choice


class _FilledIn(nn.Module):
    """Buffers that checkpoints from before this module lack: such checkpoints keep the initial
    (unfitted) values instead of failing to load."""

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name, buffer in self.named_buffers(recurse=False):
            state_dict.setdefault(prefix + name, buffer.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ColumnRange(_FilledIn):
    """Per-column minimum and maximum of the training total points ``[d_E]`` (scaled units)."""

    low: Tensor
    high: Tensor
    fitted: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("low", torch.zeros(dim))
        self.register_buffer("high", torch.zeros(dim))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        self.low.copy_(x.min(0).values)
        self.high.copy_(x.max(0).values)
        self.fitted.fill_(True)

    def bounds(self) -> tuple[Tensor | None, Tensor | None]:
        """``(low, high)``, or ``(None, None)`` when unfitted (an older checkpoint)."""
        return (self.low, self.high) if bool(self.fitted) else (None, None)


class Resimulator(_FilledIn):
    """The random-feature ridge regressor of the module docstring: ``[N, d_E]`` → ``[N, d_B]``
    (standardised units in and out)."""

    weight: Tensor
    phase: Tensor
    coef: Tensor
    fitted: Tensor

    def __init__(self, total_dim: int, base_dim: int, features: int = 512) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(total_dim, features))
        self.register_buffer("phase", torch.zeros(features))
        self.register_buffer("coef", torch.zeros(features + 1, base_dim))
        self.register_buffer("fitted", torch.tensor(False))

    def features(self, u: Tensor) -> Tensor:
        phi = torch.cos(u @ self.weight.to(u) + self.phase.to(u)) * math.sqrt(2.0 / self.phase.numel())
        return torch.cat([torch.ones_like(phi[..., :1]), phi], dim=-1)

    @torch.no_grad()
    def fit(self, u: Tensor, y: Tensor, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        if u.shape[0] > MAX_FIT_ROWS:
            keep = torch.randperm(u.shape[0], generator=gen)[:MAX_FIT_ROWS].to(u.device)
            u, y = u[keep], y[keep]
        u, y = u.double(), y.double()
        sub = u[torch.randperm(u.shape[0], generator=gen)[:1000].to(u.device)]
        distances = torch.cdist(sub, sub)
        length = float(distances[distances > 0].median()) if bool((distances > 0).any()) else 1.0
        m = self.phase.numel()
        self.weight.copy_(torch.randn(u.shape[1], m, generator=gen, dtype=torch.float64) / length)
        self.phase.copy_(2 * math.pi * torch.rand(m, generator=gen, dtype=torch.float64))
        phi = self.features(u)
        order = torch.randperm(u.shape[0], generator=gen).to(u.device)
        held, kept = order[: u.shape[0] // 5], order[u.shape[0] // 5 :]
        eye = torch.eye(m + 1, dtype=phi.dtype, device=phi.device)

        def solve(rows: Tensor, ridge: float) -> Tensor:
            return torch.linalg.solve(phi[rows].T @ phi[rows] + ridge * rows.numel() * eye, phi[rows].T @ y[rows])

        ridge = RIDGES[0]
        if held.numel() > 0:
            errors = [float((phi[held] @ solve(kept, r) - y[held]).pow(2).mean()) for r in RIDGES]
            ridge = RIDGES[min(range(len(RIDGES)), key=lambda i: errors[i] if math.isfinite(errors[i]) else math.inf)]
        self.coef.copy_(solve(torch.arange(u.shape[0], device=u.device), ridge))
        self.fitted.fill_(True)

    def forward(self, u: Tensor) -> Tensor:
        return self.features(u) @ self.coef.to(u)
