"""φ is invertible, its log-det is the log-det of its Jacobian, and every parameter learns."""

from __future__ import annotations

import pytest
import torch

from bundlenet.trivialization import LocalTrivialization


def _nudge(model: torch.nn.Module) -> None:
    """Move every parameter off its (identity-like) initialisation."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("coupling", ["rq_spline", "affine"])
@pytest.mark.parametrize("dim", [3, 4, 7])
def test_inverse_of_forward_is_identity(coupling: str, dim: int) -> None:
    torch.manual_seed(dim)
    phi = LocalTrivialization(dim, context_features=2, num_blocks=3, hidden_features=16, depth=1, coupling=coupling).double()
    _nudge(phi)
    x = 2 * torch.randn(64, dim, dtype=torch.float64)
    c = torch.randn(64, 2, dtype=torch.float64)
    u, logdet = phi(x, c)
    back, inv_logdet = phi.inverse(u, c)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-5, rtol=0)
    assert not torch.allclose(u, x)  # a real transformation, not the identity


@pytest.mark.parametrize("coupling", ["rq_spline", "affine"])
def test_logdet_matches_autograd_jacobian(coupling: str) -> None:
    torch.manual_seed(1)
    dim = 4
    phi = LocalTrivialization(dim, context_features=2, num_blocks=2, hidden_features=8, depth=1, coupling=coupling).double()
    _nudge(phi)
    for i in range(3):
        x = torch.randn(1, dim, dtype=torch.float64)
        c = torch.randn(1, 2, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v: phi(v, c)[0], x).reshape(dim, dim)
        expected = torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(phi(x, c)[1][0], expected, atol=1e-6, rtol=1e-6)


def test_context_changes_the_map() -> None:
    torch.manual_seed(2)
    phi = LocalTrivialization(4, context_features=2, num_blocks=2, hidden_features=8, depth=1).double()
    _nudge(phi)
    x = torch.randn(8, 4, dtype=torch.float64)
    u1, _ = phi(x, torch.zeros(8, 2, dtype=torch.float64))
    u2, _ = phi(x, torch.ones(8, 2, dtype=torch.float64))
    assert (u1 - u2).abs().max() > 1e-3


def test_every_parameter_gets_a_gradient_from_the_total_loss() -> None:
    from tests.conftest import make_torus_model

    model, dm = make_torus_model(num_nbhds=4, context="both")
    model.fit_data(*dm.train_tensors())
    _nudge(model.phi)
    total, base = dm.train_tensors()
    loss = model.loss_terms(total, base).total(model.loss_weights)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, f"parameters without a finite, non-zero gradient: {missing}"


@pytest.mark.parametrize("bad", [{"coupling": "glow"}])
def test_bad_flow_options_are_rejected(bad: dict) -> None:
    from bundlenet.errors import InputError

    with pytest.raises(InputError, match="model.coupling"):
        LocalTrivialization(4, 2, **bad)
