r"""Geometry below everything else: moving points onto the level sets of a map.

:func:`project_to_level_set` takes points x ∈ R^d and targets y ∈ R^m of a differentiable map
π: R^d → R^m and moves each point onto the level set {x : π(x) = y} by Gauss–Newton steps of
minimal norm,

.. math::
    x_{k+1} = x_k - J_k^\top (J_k J_k^\top + λ I)^{-1} (π(x_k) - y), \qquad J_k = ∂π/∂x\,(x_k),

a damped pseudo-inverse step: each one moves x only in the directions normal to the level set
(the row space of J), so for a point near the set the limit is, to second order in its distance,
the nearest point of the set (the foot of its normal). Batched: one Jacobian per row through
``torch.func.vmap(torch.func.jacrev(π))``; π must act row-wise on ``[N, d]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def project_to_level_set(x: Tensor, y: Tensor, forward: Callable[[Tensor], Tensor], steps: int = 20,
                         damping: float = 1e-9, tolerance: float = 1e-10,
                         jacobian: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Points ``x [N, d]`` moved onto {π = y} for targets ``y [N, m]``: ``[N, d]``.

    Stops early once every residual ‖π(x) − y‖ is below ``tolerance``. Rows whose step is not
    finite (a Jacobian of rank < m) keep their last finite position. ``jacobian`` (``[N, d]`` →
    ``[N, m, d]``) replaces the Jacobians of ``torch.func`` (e.g. finite differences of a map
    that is not written in torch).
    """
    x = x.detach().clone()
    y = y.to(x)

    def single(row: Tensor) -> Tensor:
        return forward(row.unsqueeze(0)).squeeze(0)

    jac_fn = jacobian or torch.func.vmap(torch.func.jacrev(single))
    with torch.no_grad():
        for _ in range(int(steps)):
            residual = forward(x) - y  # [N, m]
            if float(residual.norm(dim=-1).max()) < tolerance:
                break
            jac = jac_fn(x)  # [N, m, d]
            gram = jac @ jac.transpose(1, 2) + damping * torch.eye(jac.shape[1], dtype=x.dtype, device=x.device)
            step = (jac.transpose(1, 2) @ torch.linalg.solve(gram, residual.unsqueeze(-1))).squeeze(-1)
            ok = torch.isfinite(step).all(dim=-1, keepdim=True)
            x = torch.where(ok, x - step, x)
    return x
