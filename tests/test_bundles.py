"""Synthetic bundles: exact fibers project back, total samples satisfy their equations."""

from __future__ import annotations

import math

import pytest
import torch

from bundlenet.bundles import MoebiusBand, SlicedTorus, Torus
from bundlenet.errors import InputError

BUNDLES = [Torus(), SlicedTorus(), MoebiusBand()]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: type(b).__name__)
def test_fiber_projects_to_its_base_point(bundle) -> None:
    gen = torch.Generator().manual_seed(0)
    base = bundle.sample_total(16, gen).base
    fibers = bundle.sample_fiber(base, 50, gen)
    assert fibers.shape == (16, 50, 3)
    projected = bundle.project(fibers.reshape(-1, 3)).reshape(16, 50, 2)
    torch.testing.assert_close(projected, base.unsqueeze(1).expand_as(projected), atol=1e-4, rtol=0)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: type(b).__name__)
def test_total_samples_project_to_their_base(bundle) -> None:
    samples = bundle.sample_total(500, torch.Generator().manual_seed(1))
    assert samples.total.shape == (500, 3) and samples.base.shape == (500, 2)
    torch.testing.assert_close(bundle.project(samples.total), samples.base, atol=1e-4, rtol=0)
    torch.testing.assert_close(samples.base.norm(dim=1), torch.full((500,), 4.5), atol=1e-4, rtol=0)


@pytest.mark.parametrize("bundle", [Torus(), SlicedTorus()], ids=lambda b: type(b).__name__)
def test_torus_equation(bundle) -> None:
    x = bundle.sample_total(1000, torch.Generator().manual_seed(2)).total
    rho = x[:, :2].norm(dim=1)
    torch.testing.assert_close((rho - 8) ** 2 + x[:, 2] ** 2, torch.full((1000,), 4.0), atol=1e-3, rtol=0)


def test_moebius_equation() -> None:
    band = MoebiusBand()
    x = band.sample_total(1000, torch.Generator().manual_seed(3)).total
    s = torch.remainder(torch.atan2(x[:, 1], x[:, 0]), 2 * math.pi)
    t = torch.where((s / 2).sin().abs() > 0.5, x[:, 2] / (s / 2).sin(), (x[:, :2].norm(dim=1) - 8) / (s / 2).cos())
    assert t.abs().max() <= 2 + 1e-4
    torch.testing.assert_close(band.embed(s, t), x, atol=1e-3, rtol=0)


def test_sliced_torus_fibers_respect_the_slice() -> None:
    bundle = SlicedTorus()
    phi = torch.tensor([0.05, math.pi / 2, math.pi - 0.05])
    base = 4.5 * torch.stack([phi.cos(), phi.sin()], 1)
    fibers = bundle.sample_fiber(base, 400, torch.Generator().manual_seed(4))
    rho = fibers[..., :2].norm(dim=-1)
    theta = torch.remainder(torch.atan2(fibers[..., 2], rho - 8), 2 * math.pi)
    allowed = (theta / (2 * math.pi) - 0.5).abs() - 0.01 <= (phi / (2 * math.pi) - 0.5).abs().unsqueeze(1) + 1e-5
    assert bool(allowed.all())
    spread = theta.max(dim=1).values - theta.min(dim=1).values
    assert spread[0] > 5.0 and spread[2] < 0.5  # full circle near φ=0, small arc near φ=π


def test_authors_torus_tensors_satisfy_our_equations() -> None:
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "paper-splits" / "torus_bundle.pt"
    if not path.exists():
        pytest.skip("../shared/data not present")
    x = torch.load(path)
    y = torch.load(SHARED_DATA / "paper-splits" / "torus_base.pt")
    torch.testing.assert_close(Torus().project(x), y, atol=1e-4, rtol=0)


def test_distance_to_true_fiber_is_zero_on_the_fiber() -> None:
    torus = Torus()
    base = torus.sample_total(8, torch.Generator().manual_seed(5)).base
    fibers = torus.sample_fiber(base, 30, torch.Generator().manual_seed(6))
    d = torus.distance_to_fiber(fibers, base)
    assert float(d.max()) < 1e-4
    assert float(torus.distance_to_fiber(fibers + torch.tensor([0.0, 0.0, 1.0]), base).mean()) > 0.3


def test_wrong_base_dimension_is_rejected() -> None:
    with pytest.raises(InputError, match="dimension 2.*got dimension 3"):
        Torus().sample_fiber(torch.zeros(1, 3), 10)
    with pytest.raises(InputError, match="NaN"):
        Torus().sample_fiber(torch.tensor([[float("nan"), 0.0]]), 10)
