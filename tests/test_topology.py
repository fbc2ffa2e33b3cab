"""The fiber's topology found from points alone: the span and the circle count of known fibers."""

from __future__ import annotations

import pytest
import torch

from bundlenet.bundles import GrowingArc, MoebiusBand, RobotArm, Torus
from bundlenet.data.datamodule import BundleDataModule
from bundlenet.data.topology import estimate_fiber_topology, two_nn_dimension


@pytest.mark.parametrize(
    ("bundle", "span", "circles"),
    [(Torus(), 2, 1), (MoebiusBand(), 1, 0), (RobotArm(), 2, 0), (GrowingArc(), 1, 0)],
    ids=["torus", "moebius", "arm (a curved sheet that fills 3 directions)", "arc"],
)
def test_the_topology_of_known_fibers_is_found(bundle, span: int, circles: int) -> None:
    points = bundle.sample_total(2000, torch.Generator().manual_seed(0))
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


def test_two_nn_finds_the_dimension_of_flat_and_curved_sets() -> None:
    gen = torch.Generator().manual_seed(0)
    plane = torch.cat([torch.rand(1500, 2, generator=gen, dtype=torch.float64), torch.zeros(1500, 3, dtype=torch.float64)], 1)
    angle = 2 * torch.pi * torch.rand(1500, generator=gen, dtype=torch.float64)
    circle = torch.stack([angle.cos(), angle.sin(), (3 * angle).sin()], 1)
    assert two_nn_dimension(plane) == pytest.approx(2, abs=0.25)
    assert two_nn_dimension(circle) == pytest.approx(1, abs=0.2)
    assert two_nn_dimension(torch.zeros(10, 3, dtype=torch.float64)) != two_nn_dimension(
        torch.zeros(10, 3, dtype=torch.float64)
    )  # NaN


def test_a_table_of_few_values_per_column_keeps_its_principal_span() -> None:
    """A lattice of settings (each column takes 8 values) has a nearest-neighbour dimension below 1
    that says nothing of its fibers (it would cap the span at 1): the span stays the principal
    components' count, 2 (the base follows the first column)."""
    gen = torch.Generator().manual_seed(0)
    total = torch.randint(0, 8, (2000, 3), generator=gen).double()
    base = total[:, :1] + 0.1 * torch.randn(2000, 1, generator=gen, dtype=torch.float64)
    assert estimate_fiber_topology(total, base).span == 2
