"""The pieces of a BundleNet trivialization, checked like flows are: inverse∘forward = id,
log-determinants against the autograd Jacobian in float64, densities that integrate to 1,
every parameter gets a gradient."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from bundlenet.nn.cover import Cover
from bundlenet.nn.fiber_prior import FiberLatent
from bundlenet.nn.frames import LocalFrames
from bundlenet.nn.trivialization import FiberFlow

pytestmark = pytest.mark.usefixtures("float64")  # exact checks in float64, for this module's tests only


def _nudge(module: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter off its initial value (zero-initialised output layers make a flow
    the identity, which would hide errors in the log-determinant)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize(("dim", "span", "chart"), [(3, 2, 0), (4, 2, 2), (3, 3, 0), (2, 1, 2)])
def test_fiber_flow_inverts_and_its_logdet_is_the_jacobians(dim: int, span: int, chart: int) -> None:
    flow = FiberFlow(dim, span, base_features=2, chart_features=chart, num_blocks=2, hidden_features=16, depth=1)
    _nudge(flow)
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(6, dim, generator=gen)
    ctx = torch.randn(6, 2 + chart, generator=gen)
    z, logdet = flow(r, ctx)
    back, inv_logdet = flow.inverse(z, ctx)
    torch.testing.assert_close(back, r, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-8, rtol=1e-8)
    for i in range(r.shape[0]):
        jac = jacobian(lambda v, i=i: flow(v.unsqueeze(0), ctx[i : i + 1])[0].squeeze(0), r[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-7, rtol=1e-7)


def test_fiber_flow_starts_without_mixing_coordinates() -> None:
    """At initialisation (zero output layers) every coupling is the same monotone map of each
    coordinate: the Jacobian is diagonal and positive, so a fiber circle in local coordinates
    still winds once around 0 in the latent."""
    flow = FiberFlow(3, 2, base_features=2, num_blocks=3, hidden_features=8, depth=1)
    r = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(5, 2)
    for i in range(5):
        jac = jacobian(lambda v, i=i: flow(v.unsqueeze(0), ctx[i : i + 1])[0].squeeze(0), r[i])
        torch.testing.assert_close(jac - torch.diag(torch.diagonal(jac)), torch.zeros(3, 3), atol=1e-9, rtol=0)
        assert bool((torch.diagonal(jac) > 0).all())


def test_every_fiber_flow_parameter_gets_a_gradient() -> None:
    flow = FiberFlow(4, 2, base_features=2, chart_features=2, num_blocks=2, hidden_features=8, depth=1)
    _nudge(flow)
    z, logdet = flow(torch.randn(32, 4), torch.randn(32, 4))
    (z.pow(2).sum() - logdet.sum()).backward()
    missing = [n for n, p in flow.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def _fitted_frames(span: int = 2) -> tuple[LocalFrames, Cover, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(400, 2, generator=gen) * 4
    angle = 2 * math.pi * torch.rand(400, generator=gen)
    x = torch.stack([y[:, 0] + angle.cos(), y[:, 1] + angle.sin(), 0.1 * y[:, 0]], dim=1)
    cover = Cover(4, 2)
    cover.fit(y, seed=0, overlap=1.0)
    frames = LocalFrames(4, 2, 3, span)
    frames.fit(x, y, cover)
    return frames, cover, x, y


def test_local_frames_invert_and_their_logdet_is_the_jacobians() -> None:
    frames, cover, x, y = _fitted_frames()
    r, logdet = frames.to_local(x[:5], y[:5], cover)
    torch.testing.assert_close(frames.from_local(r, y[:5], cover), x[:5], atol=1e-9, rtol=1e-9)
    for i in range(5):
        jac = jacobian(lambda v, i=i: frames.to_local(v.unsqueeze(0), y[i : i + 1], cover)[0].squeeze(0), x[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-9, rtol=1e-9)


def test_local_frames_centre_each_fiber_and_give_it_unit_variance() -> None:
    """The fiber over y is a unit circle around (y1, y2, 0.1·y1): in local coordinates the
    centre moves to 0 and the circle's two directions have variance ≈ 1 (radius √2)."""
    frames, cover, x, y = _fitted_frames()
    r, _ = frames.to_local(x, y, cover)
    assert float(r.mean(0).abs().max()) < 0.15
    assert float((r[:, :2].norm(dim=1) - math.sqrt(2)).abs().mean()) < 0.15
    assert float(r[:, 2].abs().max()) < 0.05  # no spread off the fiber's plane


@pytest.mark.parametrize(("circles", "span", "dim"), [(1, 2, 3), (0, 1, 2), (1, 3, 3), (0, 2, 2)])
def test_fiber_latent_density_integrates_to_one_and_matches_its_samples(circles: int, span: int, dim: int) -> None:
    latent = FiberLatent(dim, circles, span, ring_width=0.2, normal_width=0.3)
    # Monte-Carlo: E_q[p/q] = 1 with q a wide Gaussian covering the latent
    gen = torch.Generator().manual_seed(0)
    q = torch.distributions.Normal(0.0, 2.0)
    w = 2.0 * torch.randn(200_000, dim, generator=gen)
    ratio = (latent.log_prob(w) - q.log_prob(w).sum(1)).exp().mean()
    assert float(ratio) == pytest.approx(1.0, abs=0.03)
    # its samples have the stated ring radius and widths
    z = latent.sample(50_000, gen)
    assert z.shape == (50_000, dim)
    if circles:
        radius = z[:, :2].norm(dim=1)
        assert float(radius.mean()) == pytest.approx(math.sqrt(2), abs=0.01)
        assert float(radius.std()) == pytest.approx(0.2, abs=0.01)
    if span < dim:
        assert float(z[:, span:].std()) == pytest.approx(0.3, abs=0.01)


def test_fiber_latent_rejects_impossible_shapes() -> None:
    with pytest.raises(ValueError, match="circles"):
        FiberLatent(2, circles=2, span=2)


def _ink_like(n: int = 900, d: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer 'pixels' in 0-4 whose base is their sum, dequantized as a table's discrete columns
    are: (noisy points, their values, base)."""
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (n, d), generator=gen).double()
    values[:, -1] = values[:, -2]  # a direction the data never vary in: the fit meets a singular design
    noisy = values + torch.rand(n, d, generator=gen, dtype=torch.float64) - 0.5
    return noisy, values, values.sum(1, keepdim=True)


def test_the_base_gradient_is_that_of_the_values_and_zero_for_classes() -> None:
    """y = Σ values (dequantized in x): the fitted gradient is ∂y/∂x = 1 in every neighbourhood,
    although it is fitted on noisy points of few values; a base constant in each neighbourhood
    (two classes) has none, and a frame without normal directions (span = d) fits none."""
    x, values, y = _ink_like()
    cover = Cover(3, 1)
    cover.fit(y, seed=0)
    frames = LocalFrames(3, 1, x.shape[1], span=x.shape[1] - 1)
    frames.fit(x, y, cover, values=values)
    gradient = frames.gradient_at(y[:100], cover).squeeze(-1)  # [N, d]
    torch.testing.assert_close(gradient, torch.ones_like(gradient), atol=0.02, rtol=0)
    classes = (values[:, :1] > 2).double()
    two = Cover(2, 1)
    two.fit(classes, seed=0)
    for span, base, nbhds in ((x.shape[1] - 1, classes, two), (x.shape[1], y, cover)):
        other = LocalFrames(nbhds.num_nbhds, 1, x.shape[1], span=span)
        other.fit(x, base, nbhds, values=values)
        assert float(other.gradient.abs().max()) == 0.0


def test_frames_saved_before_the_base_gradient_still_load() -> None:
    frames = _fitted_frames()[0]
    state = {k: v for k, v in frames.state_dict().items() if k != "gradient"}
    fresh = LocalFrames(4, 2, 3, 2)
    fresh.load_state_dict(state)
    assert float(fresh.gradient.abs().sum()) == 0.0


def test_a_neighbourhood_of_one_point_gets_a_frame_of_the_right_size() -> None:
    """Circles around (y, 0, 0) for y in [0, 4], plus one point at y = 9 alone in its
    neighbourhood: its frame has the circles' scale (not the 0 of a single point) and its centre
    moves with y as the line of all the data does (a single point alone gives no slope)."""
    gen = torch.Generator().manual_seed(0)
    y = torch.cat([torch.rand(400, 1, generator=gen, dtype=torch.float64) * 4, torch.tensor([[9.0]], dtype=torch.float64)])
    angle = 2 * math.pi * torch.rand(401, generator=gen, dtype=torch.float64)
    x = torch.stack([y[:, 0], angle.cos(), angle.sin()], dim=1)
    cover = Cover(5, 1)
    sizes = cover.fit(y, seed=0)
    assert int(sizes.min()) == 1
    frames = LocalFrames(5, 1, 3, span=3)
    frames.fit(x, y, cover)
    mu, _, scale = frames.frame(torch.tensor([[2.0], [9.0], [9.5]], dtype=torch.float64), cover)
    assert float(scale[1]) > 0.3 * float(scale[0])
    assert float(mu[2, 0] - mu[1, 0]) == pytest.approx(0.5, abs=0.05)


def test_a_model_resumes_from_a_checkpoint_saved_before_the_base_gradient() -> None:
    from tests.conftest import make_torus_model

    model, dm = make_torus_model(num_nbhds=4, num_train=200)
    model.fit_data(*dm.train_tensors())
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("frames.gradient")}
    checkpoint = {"state_dict": state, "hyper_parameters": dict(model.hparams), "bundlenet": {"data_hash": model.data_hash}}
    model.on_load_checkpoint(checkpoint)  # no "different model" error
    model.load_state_dict(state)


def test_frame_axes_follow_the_base_continuously() -> None:
    """An ellipse fiber whose axes turn with y (the long axis at angle y/2): along a fine path in
    y the frame's axes never flip sign (consecutive axes have cosine near 1), so the local
    coordinates of a fiber change continuously with its base point."""
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(3000, 1, generator=gen) * 6
    t = 2 * math.pi * torch.rand(3000, generator=gen)
    a = y[:, 0] / 2
    long, short = 2 * t.cos(), 0.7 * t.sin()
    x = torch.stack(
        [long * a.cos() - short * a.sin(), long * a.sin() + short * a.cos(), 0.01 * torch.randn(3000, generator=gen)], 1
    )
    cover = Cover(30, 1)
    cover.fit(y, seed=0)
    frames = LocalFrames(30, 1, 3, span=2)
    frames.fit(x, y, cover)
    path = torch.linspace(0.2, 5.8, 2000).unsqueeze(1)
    _, axes, _ = frames.frame(path, cover)
    cosine = (axes[1:] * axes[:-1]).sum(1)
    assert float(cosine.min()) > 0.9
    # and the first axis is the ellipse's long axis
    truth = torch.stack([(path[:, 0] / 2).cos(), (path[:, 0] / 2).sin(), torch.zeros(2000)], 1)
    assert float((axes[:, :, 0] * truth).sum(1).abs().min()) > 0.95


def test_frames_saved_before_oriented_axes_still_load() -> None:
    frames = _fitted_frames()[0]
    state = {k: v for k, v in frames.state_dict().items() if k != "reference"}
    fresh = LocalFrames(4, 2, 3, 2)
    fresh.load_state_dict(state)
    assert float(fresh.reference.abs().sum()) == 0.0  # the eigenvectors' own signs, as trained


def test_learned_widths_start_at_the_fixed_ones_and_train() -> None:
    fixed = FiberLatent(4, circles=1, span=3, normal_width=0.05)
    learned = FiberLatent(4, circles=1, span=3, normal_width=0.05, learn_widths=True)
    z = fixed.sample(100, torch.Generator().manual_seed(0))
    torch.testing.assert_close(learned.log_prob(z), fixed.log_prob(z))
    torch.testing.assert_close(learned.sample(100, torch.Generator().manual_seed(0)), z)
    (-learned.log_prob(3 * z).mean()).backward()  # wider data: the likelihood widens every width
    assert learned.log_scale.grad is not None and bool((learned.log_scale.grad < 0).all())
    state = {k: v for k, v in learned.state_dict().items() if k != "log_scale"}
    learned.load_state_dict(state)  # a latent saved before learned widths loads with the fixed ones
    assert float(learned.log_scale.detach().abs().sum()) == 0.0
