"""The continuous fiber flow, checked like the coupling flow: inverse∘forward = id and the
log-determinant against the autograd Jacobian in float64 (both up to the ODE solver's
discretisation), a density that integrates to 1, and the mini-batch OT pairing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from bundlenet.nn.fiber_cnf import FiberCNF, ot_pairing
from bundlenet.nn.fiber_prior import FiberLatent

pytestmark = pytest.mark.usefixtures("float64")  # exact checks in float64 (tests/conftest.py)


def _flow(dim: int = 3, context: int = 2, steps: int = 64, size: float = 0.6) -> FiberCNF:
    flow = FiberCNF(dim, context, hidden_features=16, depth=2, ode_steps=steps, ode_method="rk4")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in flow.parameters():  # a velocity field well away from 0
            p.copy_(size * torch.randn(p.shape, generator=gen))
    return flow


def test_cnf_inverts_and_its_logdet_is_the_jacobians() -> None:
    flow = _flow()
    gen = torch.Generator().manual_seed(1)
    r, ctx = torch.randn(5, 3, generator=gen), torch.randn(5, 2, generator=gen)
    z, logdet = flow(r, ctx)
    assert float((z - r).abs().max()) > 0.1  # the map is far from the identity
    back, inv_logdet = flow.inverse(z, ctx)
    torch.testing.assert_close(back, r, atol=1e-6, rtol=0)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-6, rtol=0)
    torch.testing.assert_close(flow.decode(z, ctx), r, atol=1e-6, rtol=0)
    for i in range(5):
        jac = jacobian(lambda v, i=i: _forward_map(flow, v, ctx[i]), r[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-5, rtol=0)


def _forward_map(flow: FiberCNF, r: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """The solver's map r ↦ z, differentiable (rk4 steps from t = 1 to 0)."""
    x, h = r.unsqueeze(0), -1.0 / flow.ode_steps
    c = ctx.unsqueeze(0)
    for k in range(flow.ode_steps):
        t = torch.tensor(1.0 + k * h)
        k1 = flow.velocity(x, t, c)
        k2 = flow.velocity(x + h / 2 * k1, t + h / 2, c)
        k3 = flow.velocity(x + h / 2 * k2, t + h / 2, c)
        k4 = flow.velocity(x + h * k3, t + h, c)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x.squeeze(0)


def test_cnf_density_integrates_to_one() -> None:
    """log p(r) = log p_F(z) + log|det ∂z/∂r| on a grid over R²: the integral is 1."""
    flow = _flow(dim=2, context=1, steps=32, size=0.3)
    latent = FiberLatent(2, circles=0, span=1, normal_width=0.5)
    axis = torch.linspace(-6, 6, 121)
    grid = torch.cartesian_prod(axis, axis)
    z, logdet = flow(grid, torch.full((grid.shape[0], 1), 0.3))
    mass = float((latent.log_prob(z) + logdet).exp().sum() * (axis[1] - axis[0]) ** 2)
    assert mass == pytest.approx(1.0, abs=0.02)


def test_the_flow_matching_loss_trains_every_parameter() -> None:
    flow = FiberCNF(3, 2, hidden_features=8, depth=2)
    latent = FiberLatent(3, circles=1, span=2)
    loss = flow.objective(torch.randn(64, 3), torch.randn(64, 2), latent, torch.Generator().manual_seed(0))
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in flow.parameters())


def test_ot_pairing_is_the_optimal_assignment() -> None:
    gen = torch.Generator().manual_seed(0)
    x, z = torch.randn(6, 2, generator=gen), torch.randn(6, 2, generator=gen)
    perm = ot_pairing(x, z)
    assert sorted(perm.tolist()) == list(range(6))
    cost = float((x - z[perm]).pow(2).sum())
    best = min(float((x - z[list(p)]).pow(2).sum()) for p in itertools.permutations(range(6)))
    assert cost == pytest.approx(best, rel=1e-12)
    # in one dimension the optimal assignment pairs the sorted orders, block by block
    a, b = torch.randn(10, 1, generator=gen), torch.randn(10, 1, generator=gen)
    paired = b[ot_pairing(a, b, block=5)]
    for block in (slice(0, 5), slice(5, 10)):
        assert torch.equal(paired[block][a[block, 0].argsort(), 0], b[block, 0].sort().values)
