"""The rational-quadratic spline (bundlenet.nn.spline) is nflows' function: the same values and
log-derivatives inside and outside its interval, forward and inverse; inverse∘forward = id; the
log-derivative is autograd's; the coupling built on it is nflows' coupling with the same weights."""

from __future__ import annotations

import pytest
import torch
from nflows.transforms import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.splines import unconstrained_rational_quadratic_spline

from bundlenet.nn.spline import rational_quadratic_spline
from bundlenet.nn.trivialization import ConditionalMLP, SplineCoupling

BOUND = 3.0


def parameters(n: int, bins: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    inputs = torch.empty(n, 3, dtype=torch.float64).uniform_(-1.3 * BOUND, 1.3 * BOUND, generator=g)  # some outside
    widths, heights = (2 * torch.randn(n, 3, bins, generator=g, dtype=torch.float64) for _ in range(2))
    derivatives = torch.randn(n, 3, bins - 1, generator=g, dtype=torch.float64)
    return inputs, widths, heights, derivatives


@pytest.mark.parametrize("inverse", [False, True])
def test_values_and_log_derivatives_are_nflows(inverse: bool) -> None:
    inputs, widths, heights, derivatives = parameters(500)
    ours = rational_quadratic_spline(inputs, widths, heights, derivatives, inverse=inverse, bound=BOUND)
    theirs = unconstrained_rational_quadratic_spline(
        inputs, widths, heights, derivatives.clone(), inverse=inverse, tails="linear", tail_bound=BOUND
    )
    assert bool(((inputs.abs() > BOUND).sum() > 50) & ((inputs.abs() < BOUND).sum() > 500))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_inverse_undoes_forward_and_the_log_derivative_is_autograds() -> None:
    inputs, widths, heights, derivatives = parameters(300, seed=1)
    x = inputs.clone().requires_grad_(True)
    y, log_derivative = rational_quadratic_spline(x, widths, heights, derivatives, bound=BOUND)
    (slope,) = torch.autograd.grad(y.sum(), x)  # element-wise map: the Jacobian is diagonal
    torch.testing.assert_close(log_derivative.detach(), slope.log(), rtol=1e-9, atol=1e-9)
    back, inverse_log_derivative = rational_quadratic_spline(y.detach(), widths, heights, derivatives, inverse=True, bound=BOUND)
    torch.testing.assert_close(back, inputs, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(inverse_log_derivative, -log_derivative.detach(), rtol=1e-9, atol=1e-9)
    outside = inputs.abs() > BOUND
    assert bool((y.detach()[outside] == inputs[outside]).all() and (log_derivative.detach()[outside] == 0).all())


def test_the_coupling_is_nflows_coupling_with_the_same_weights(float64: None) -> None:
    mask = torch.tensor([1, 0, 1, 0])

    def net(i: int, o: int) -> ConditionalMLP:
        return ConditionalMLP(i, o, 2, 16, 2)

    torch.manual_seed(0)
    ours = SplineCoupling(mask, net, num_bins=6, tail_bound=BOUND)
    theirs = PiecewiseRationalQuadraticCouplingTransform(mask, net, num_bins=6, tails="linear", tail_bound=BOUND)
    theirs.load_state_dict(ours.state_dict())
    for p in ours.parameters():  # away from the zero-initialised output layer
        p.data.add_(0.3 * torch.randn_like(p))
    theirs.load_state_dict(ours.state_dict())
    x, context = 2.5 * torch.randn(200, 4), torch.randn(200, 2)
    for direction in ("forward", "inverse"):
        for a, b in zip(getattr(ours, direction)(x, context), getattr(theirs, direction)(x, context), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
