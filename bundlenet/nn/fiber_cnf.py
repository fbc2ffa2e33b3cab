r"""A continuous fiber flow: local coordinates → fiber latent by an ODE, trained by flow matching.

The fiber part of a local trivialization as a continuous normalizing flow (Chen et al., *Neural
Ordinary Differential Equations*, NeurIPS 2018) trained without simulation by conditional flow
matching (Lipman et al., *Flow Matching for Generative Modeling*, ICLR 2023). A velocity field
:math:`v(r, t, c)` over local coordinates :math:`r \in R^D`, time t ∈ [0, 1] and a context c
(the base point, and the chart where asked) transports the fiber latent at t = 0 to the local
coordinates of the data at t = 1:

.. math::
    \dot r_t = v(r_t, t, c), \qquad r_0 = z \sim p_F, \qquad r_1 = r.

Training regresses v on the linear path between a latent z drawn from the fiber latent
:math:`p_F` (rings, intervals, narrow normal coordinates:
:class:`~bundlenet.nn.fiber_prior.FiberLatent`) and the data's local coordinates r,

.. math::
    r_t = t\,r + (1 - t)\,z, \qquad
    \mathcal L = E_{t, z, r}\,\lVert v(r_t, t, c) - (r - z)\rVert^2,

so the flow starts from a latent with the fiber's topology. The latents of a batch are paired
with its points by exact optimal transport in blocks of ``OT_BLOCK`` rows (mini-batch OT
coupling: Tong et al., *Improving and Generalizing Flow-Based Generative Models with Minibatch
Optimal Transport*, TMLR 2024; Pooladian et al., ICML 2023): each point of a fiber circle
is drawn from a ring point at about its own angle, so the paths do not cross the disc inside
the circle, and samples land on the fiber instead of inside it. The map r ↦ z integrates the ODE
from t = 1 to 0 and is invertible (up to the solver's discretisation). Its log-determinant is the
instantaneous change of variables,

.. math::
    \log\lvert\det ∂z/∂r\rvert = -\int_0^1 \nabla\!\cdot v(r_t, t, c)\,dt,

with the exact divergence (one gradient per coordinate) for D ≤ ``exact_divergence_max_dim``
and Hutchinson's unbiased estimate (Rademacher probes, fixed per call) above it. Both directions
use the fixed-step solvers of ``flow_matching`` (:class:`~flow_matching.solver.ODESolver`).

Shapes: ``forward(r [N, D], context [N, C]) → (z [N, D], log|det ∂z/∂r| [N])``;
``inverse(z, context) → (r, log|det ∂r/∂z|)``; ``decode(z, context) → r`` (no log-determinant:
sampling). The interface is :class:`~bundlenet.nn.trivialization.FiberFlow`'s.
"""

from __future__ import annotations

import numpy as np
import torch
from flow_matching.solver import ODESolver
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from bundlenet.errors import InputError
from bundlenet.nn.fiber_prior import FiberLatent
from bundlenet.nn.velocity import Conditioned, VelocityField

OT_BLOCK = 256  # rows per exact assignment problem (O(n³) each)


def ot_pairing(x: Tensor, z: Tensor, block: int = OT_BLOCK) -> Tensor:
    """A permutation ``p [N]`` such that ``z[p]`` is paired with ``x [N, D]`` by the exact
    optimal assignment under squared Euclidean cost, within consecutive blocks of ``block``
    rows. A permutation within blocks keeps the distribution of ``z`` (its rows are exchangeable)."""
    n = x.shape[0]
    perm = torch.arange(n, device=z.device)
    for start in range(0, n, block):
        stop = min(start + block, n)
        cost = torch.cdist(x[start:stop].double(), z[start:stop].double()).pow(2).cpu().numpy()
        rows, cols = linear_sum_assignment(cost)
        perm[start + torch.as_tensor(rows, device=z.device)] = start + torch.as_tensor(cols.astype(np.int64), device=z.device)
    return perm


class FiberCNF(nn.Module):
    """The continuous fiber flow of the module docstring.

    Args:
        dim: D, the latent (and local-coordinate) dimension.
        context_features: C, the width of the context (base point, chart).
        hidden_features: width of the velocity MLP.
        depth: hidden layers of the velocity MLP.
        ode_steps: fixed steps of the solver on [0, 1].
        ode_method: a fixed-step method of ``flow_matching``'s solver (``euler``, ``midpoint``, ``rk4``).
        exact_divergence_max_dim: exact divergence up to this D, Hutchinson's estimate above.
        ot_pairing: pair each batch's latents with its points by optimal transport
            (:func:`ot_pairing`) instead of independently.
    """

    likelihood_trained = False  # objective() is the flow-matching regression loss

    def __init__(
        self,
        dim: int,
        context_features: int,
        hidden_features: int = 128,
        depth: int = 3,
        ode_steps: int = 16,
        ode_method: str = "midpoint",
        exact_divergence_max_dim: int = 16,
        ot_pairing: bool = True,
    ) -> None:
        super().__init__()
        if int(ode_steps) < 1:
            raise InputError(f"model.ode_steps must be a positive integer, got {ode_steps}")
        if ode_method not in ("euler", "midpoint", "rk4"):
            raise InputError(f"model.ode_method must be euler, midpoint or rk4; got {ode_method!r}")
        self.dim = int(dim)
        self.ode_steps, self.ode_method = int(ode_steps), ode_method
        self.exact_divergence = self.dim <= int(exact_divergence_max_dim)
        self.ot_pairing = bool(ot_pairing)
        self.velocity = VelocityField(self.dim, context_features, hidden_features, depth)
        self.solver = ODESolver(velocity_model=Conditioned(self.velocity))

    def objective(self, r: Tensor, context: Tensor, latent: FiberLatent, generator: torch.Generator | None = None) -> Tensor:
        """The flow-matching loss of local coordinates ``r [N, D]`` over ``context [N, C]`` (scalar)."""
        z = latent.sample(r.shape[0], generator, device=r.device, dtype=r.dtype)
        if self.ot_pairing:
            z = z[ot_pairing(r.detach(), z)]
        t = torch.rand(r.shape[0], 1, generator=generator, device=r.device, dtype=r.dtype)
        r_t = t * r + (1 - t) * z
        return (self.velocity(r_t, t, context) - (r - z)).pow(2).sum(1).mean()

    def forward(self, r: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """Integrate from t = 1 to 0: latents and log|det ∂z/∂r| (the solver's likelihood with a
        zero source density)."""
        grid = torch.tensor([1.0, 0.0], dtype=r.dtype, device=r.device)
        z, log_det = self.solver.compute_likelihood(
            x_1=r,
            log_p0=lambda x: x.new_zeros(x.shape[0]),
            step_size=1.0 / self.ode_steps,
            method=self.ode_method,
            time_grid=grid,
            exact_divergence=self.exact_divergence,
            context=context,
        )
        return z.detach(), log_det.detach()

    def inverse(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """Integrate from t = 0 to 1; log|det ∂r/∂z| is minus that of the way back from r."""
        r = self.decode(z, context)
        return r, -self(r, context)[1]

    def decode(self, z: Tensor, context: Tensor) -> Tensor:
        """Latents ``z [N, D]`` → local coordinates ``[N, D]`` (the sampling direction)."""
        grid = torch.tensor([0.0, 1.0], dtype=z.dtype, device=z.device)
        with torch.no_grad():
            return self.solver.sample(
                x_init=z, step_size=1.0 / self.ode_steps, method=self.ode_method, time_grid=grid, context=context
            )
