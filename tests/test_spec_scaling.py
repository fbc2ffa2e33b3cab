"""Per-column scaling in BundleSpec: identity by default, round trips, plain-dict storage."""

from __future__ import annotations

import pytest
import torch

from bundlenet.bundles.base import BundleSpec
from bundlenet.errors import InputError


def scaled_spec() -> BundleSpec:
    return BundleSpec(
        ("q",), ("a", "b"), 0, base_offset=(3.0,), base_scale=(0.6,), total_offset=(1.0, -2.0), total_scale=(0.5, 4.0)
    )


def test_identity_spec_is_unchanged_and_stores_no_scaling() -> None:
    spec = BundleSpec(("u", "v"), ("x", "y", "z"), 1)
    x = torch.randn(4, 3)
    assert spec.to_scaled(x, "total") is x and spec.to_original(x, "total") is x
    assert spec.to_dict() == {"base_names": ["u", "v"], "total_names": ["x", "y", "z"], "fiber_circles": 1}
    # a checkpoint written before scaling existed still loads
    assert BundleSpec.coerce({"base_names": ["u", "v"], "total_names": ["x", "y", "z"], "fiber_circles": 1}) == spec


def test_scaling_maps_columns_and_round_trips_through_a_plain_dict() -> None:
    spec = scaled_spec()
    total = torch.tensor([[1.0, -2.0], [6.0, 38.0]])
    torch.testing.assert_close(spec.to_scaled(total, "total"), torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    torch.testing.assert_close(spec.to_original(spec.to_scaled(total, "total"), "total"), total)
    torch.testing.assert_close(spec.to_scaled(torch.tensor([[9.0]]), "base"), torch.tensor([[10.0]]))
    d = spec.to_dict()
    assert d["total_scale"] == [0.5, 4.0] and all(type(v) is float for v in d["base_offset"])
    assert BundleSpec.coerce(d) == spec


def test_bad_scaling_is_rejected() -> None:
    with pytest.raises(InputError, match="total_scale has 1 values for 2 total columns"):
        BundleSpec(("q",), ("a", "b"), total_offset=(0.0, 0.0), total_scale=(1.0,))
    with pytest.raises(InputError, match="finite and positive"):
        BundleSpec(("q",), ("a",), base_offset=(0.0,), base_scale=(0.0,))
