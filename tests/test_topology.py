"""The fiber's topology found from points alone: the span and the circle count of known fibers."""

from __future__ import annotations

import pytest
import torch

from bundlenet.bundles import MoebiusBand, Torus
from bundlenet.data.datamodule import BundleDataModule
from bundlenet.data.topology import estimate_fiber_topology


@pytest.mark.parametrize(("bundle", "span", "circles"), [(Torus(), 2, 1), (MoebiusBand(), 1, 0)])
def test_the_topology_of_known_fibers_is_found(bundle, span: int, circles: int) -> None:
    points = bundle.sample_total(1000, torch.Generator().manual_seed(0))
    found = estimate_fiber_topology(points.total, points.base)
    assert (found.span, found.circles) == (span, circles)
    assert found.groups >= 4 and len(found.spans) == found.groups


def test_a_fiber_filling_its_space_has_no_circles() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1000, 1, generator=gen)
    total = torch.cat([base + 0.01 * torch.randn(1000, 1, generator=gen), torch.randn(1000, 2, generator=gen)], dim=1)
    found = estimate_fiber_topology(total, base)
    assert found.circles == 0 and found.span >= 2


def test_datamodule_auto_tells_the_model(caplog: pytest.LogCaptureFixture) -> None:
    dm = BundleDataModule(Torus(), num_train=800, fiber_circles="auto", fiber_span="auto")
    assert (dm.spec.fiber_circles, dm.spec.fiber_span) == (1, 2)
    few = BundleDataModule(Torus(), num_train=10, fiber_circles="auto", fiber_span="auto")
    with caplog.at_level("WARNING"):
        assert (few.spec.fiber_circles, few.spec.fiber_span) == (0, 3)
    assert "too few to find the fiber's topology" in caplog.text
