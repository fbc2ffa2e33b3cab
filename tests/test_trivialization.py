"""φ is invertible, its log-det is the log-det of its Jacobian, and every parameter learns."""

from __future__ import annotations

import pytest
import torch

from bundlenet.nn.trivialization import LocalTrivialization


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
    for _ in range(3):
        x = torch.randn(1, dim, dtype=torch.float64)
        c = torch.randn(1, 2, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v, c=c: phi(v, c)[0], x).reshape(dim, dim)
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


@pytest.mark.parametrize("bad", [{"coupling": "glow"}])
def test_bad_flow_options_are_rejected(bad: dict) -> None:
    from bundlenet.errors import InputError

    with pytest.raises(InputError, match="model.coupling"):
        LocalTrivialization(4, 2, **bad)


def test_conditional_affine_runs_its_subnet_once_per_distinct_context() -> None:
    """Evaluating the context subnet on distinct rows and gathering gives the per-row result,
    with the same gradients for the parameters and for a learned context."""
    from bundlenet.geometry import distinct_rows
    from bundlenet.nn.trivialization import ConditionalAffine

    torch.manual_seed(3)
    affine = ConditionalAffine(4, 2, hidden_features=8, depth=1).double()
    _nudge(affine)
    table = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([2, 0, 2, 1, 0, 0, 2])
    x = torch.randn(rows.numel(), 4, dtype=torch.float64)
    distinct, index = distinct_rows(table[rows])
    assert distinct.shape == (3, 2) and torch.equal(distinct[index], table[rows])

    u, logdet = affine(x, table[rows])
    grads = torch.autograd.grad((u.sin().sum() + logdet.sum()), [table, *affine.parameters()])

    raw = affine.net(x.new_zeros(rows.numel(), 0), table[rows])  # the per-row evaluation
    log_scale = affine.clamp * torch.tanh(raw[:, :4] / affine.clamp)
    u_ref, logdet_ref = x * log_scale.exp() + raw[:, 4:], log_scale.sum(1)
    grads_ref = torch.autograd.grad((u_ref.sin().sum() + logdet_ref.sum()), [table, *affine.parameters()])
    torch.testing.assert_close(u, u_ref)
    torch.testing.assert_close(logdet, logdet_ref)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("coupling", ["rq_spline", "affine"])
def test_mixed_precision_keeps_the_coupling_arithmetic_in_float32(coupling: str) -> None:
    """Under bf16 autocast (``trainer.precision=bf16-mixed``) the subnets multiply in bfloat16 but
    φ's outputs stay float32 and φ⁻¹∘φ is still the identity to float32 accuracy: forward and
    inverse see the same (rounded) spline/affine parameters."""
    torch.manual_seed(4)
    phi = LocalTrivialization(6, context_features=2, num_blocks=4, hidden_features=32, depth=2, coupling=coupling)
    _nudge(phi)
    x = 2 * torch.randn(256, 6)
    c = torch.randn(256, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u, logdet = phi(x, c)
        back, inv_logdet = phi.inverse(u, c)
    assert u.dtype == logdet.dtype == back.dtype == torch.float32
    torch.testing.assert_close(back, x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-4, rtol=1e-4)
