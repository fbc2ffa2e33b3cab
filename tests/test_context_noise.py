"""The training noise on the fiber-shape couplings' context (``model.context_noise``)."""

from __future__ import annotations

import pytest
import torch

from bundlenet.bundles import Bundle, SlicedTorus, Torus
from bundlenet.bundles.base import BundleSpec
from bundlenet.models.bundlenet import BundleNet

torch.set_num_threads(1)


def fitted(bundle: Bundle, rows: int = 1000, **options: object) -> BundleNet:
    samples = bundle.sample_total(rows, torch.Generator().manual_seed(0))
    model = BundleNet(bundle.spec, **options)  # type: ignore[arg-type]
    model.fit_data(samples.total, samples.base)
    return model


def test_every_fiber_of_a_torus_has_one_shape_and_gets_the_full_noise() -> None:
    model = fitted(Torus())
    assert model.frames.shape_change(model.cover) < BundleNet.SHAPE_TOLERANCE
    assert model.context_sigma() == pytest.approx(float(model.cover.bandwidth))
    half = fitted(Torus(), context_noise=0.5)
    assert half.context_sigma() == pytest.approx(0.5 * float(half.cover.bandwidth))


def test_fibers_that_grow_with_the_base_get_no_noise() -> None:
    # the sliced torus's arcs seen as circles in their plane (two directions): their spread goes
    # from a full circle's down to a sliver's
    model = fitted(SlicedTorus(), num_circles=1, fiber_span=2)
    assert model.frames.shape_change(model.cover) > 2 * BundleNet.SHAPE_TOLERANCE  # a full circle down to a sliver
    assert model.context_sigma() == 0.0


def test_no_noise_without_a_chart_context_or_when_switched_off() -> None:
    y = torch.randn(64, 2)
    for options in ({"context_noise": 0.0}, {"fiber_context": "none"}):
        model = fitted(Torus(), rows=300, **options)
        torch.testing.assert_close(model.context(y, noisy=True), model.context(y))
        assert model.context_sigma() == 0.0  # and the log says so


def test_a_base_of_classes_gets_no_noise() -> None:
    # each neighbourhood is one base value: the cover's bandwidth, and with it the noise, vanish
    torus = Torus()
    samples = torus.sample_total(600, torch.Generator().manual_seed(0))
    quadrant = 2.0 * (samples.base[:, 0] > 0) + (samples.base[:, 1] > 0)
    model = BundleNet(BundleSpec(("quadrant",), torus.total_names, fiber_span=2), num_nbhds=4)
    model.fit_data(samples.total, quadrant.unsqueeze(1))
    assert model.context_sigma() < 1e-5


def test_only_the_chart_part_of_the_context_is_noisy_and_only_in_training() -> None:
    model = fitted(Torus(), rows=300)
    y = torch.randn(500, 2)
    exact, noisy = model.context(y), model.context(y, noisy=True)
    torch.testing.assert_close(noisy[:, :2], y)  # what the normal couplings and the affine map see
    torch.testing.assert_close(exact, torch.cat([y, y], dim=1))
    spread = (noisy[:, 2:] - y).std(0)
    torch.testing.assert_close(spread, torch.full((2,), model.context_sigma()), rtol=0.15, atol=0.0)
    # sampling and the density use the exact context: they do not depend on the global RNG
    base = torch.zeros(5, 2) + torch.tensor([4.5, 0.0])
    x = model.total_scaler.inverse(torch.randn(5, 3))
    draws = []
    for seed in (5, 6):
        torch.manual_seed(seed)
        draws.append((model.generate(base, torch.Generator().manual_seed(2)), model.density_std(x, model.base_scaler(base))))
    torch.testing.assert_close(draws[0], draws[1])


def test_a_resumed_model_uses_the_same_noise() -> None:
    model = fitted(Torus(), rows=300)
    again = BundleNet(model.spec, **{k: v for k, v in model.hparams.items() if k != "spec"})
    again.load_state_dict(model.state_dict())
    assert again.context_sigma() == pytest.approx(model.context_sigma())
    assert again.context_sigma() > 0
    # a σ already computed is not kept over loaded buffers: another data set's cover and frames
    other = fitted(SlicedTorus(), rows=300, num_circles=1, fiber_span=2)
    assert other.context_sigma() != pytest.approx(model.context_sigma())
    other.load_state_dict(model.state_dict())
    assert other.context_sigma() == pytest.approx(model.context_sigma())
