"""Columns keep their support: found from the data, stated by the user, and respected by the
invertible per-column maps every model samples through."""

from __future__ import annotations

import pytest
import torch

from bundlenet.bundles.base import BundleSpec, ColumnSupport
from bundlenet.data.columns import infer_supports
from bundlenet.errors import InputError
from bundlenet.nn.support import Interval, LowerBound, SupportTransform, UpperBound


def _table(n: int = 2000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    amount = torch.where(torch.rand(n, generator=gen) < 0.4, 0.0, torch.rand(n, generator=gen) * 5)  # 40% exact zeros
    age = torch.tensor([1.0, 3.0, 7.0, 28.0, 90.0])[torch.randint(0, 5, (n,), generator=gen)]  # 5 values
    share = torch.rand(n, generator=gen) * 0.9 + 0.05  # in (0, 1)
    free = torch.randn(n, generator=gen) * 3  # any sign
    return torch.stack([amount, age, share, free], dim=1)


def test_supports_are_found_from_the_data() -> None:
    amount, age, share, free = infer_supports(_table(), ["amount", "age", "share", "free"])
    assert amount.lower == 0.0 and amount.atoms == (0.0,) and amount.values is None
    assert age.values == (1.0, 3.0, 7.0, 28.0, 90.0)
    assert share.lower == 0.0 and share.atoms == ()  # non-negative, no point mass
    assert free.is_trivial


def test_stated_bounds_and_discrete_columns_win() -> None:
    _, age, share, _ = infer_supports(_table(), ["amount", "age", "share", "free"], bounds={"share": [0, 1]}, discrete=[])
    assert share.lower == 0.0 and share.upper == 1.0
    assert age.values is None  # discrete=[]: no column is discrete
    with pytest.raises(InputError, match="nope"):
        infer_supports(_table(), ["amount", "age", "share", "free"], bounds={"nope": [0, 1]})


def _transform() -> tuple[SupportTransform, torch.Tensor, tuple[ColumnSupport, ...]]:
    x = _table()
    supports = tuple(infer_supports(x, ["amount", "age", "share", "free"], bounds={"share": [0, 1]}))
    spec = BundleSpec(("y",), ("amount", "age", "share", "free"), total_support=supports)
    t = SupportTransform(spec)
    t.fit(x)
    return t, x, supports


def test_any_unconstrained_value_maps_inside_the_support() -> None:
    t, _, supports = _transform()
    u = 10 * torch.randn(5000, 4, generator=torch.Generator().manual_seed(1))
    x = t.inverse(u)
    for j, support in enumerate(supports):
        assert bool(support.contains(x[:, j]).all()), f"column {j} left its support"


def test_inverse_of_forward_is_the_data_and_point_masses_keep_their_share() -> None:
    t, x, _ = _transform()
    u = t(x, generator=torch.Generator().manual_seed(2))
    back = t.inverse(u)
    torch.testing.assert_close(back[:, [0, 1, 3]], x[:, [0, 1, 3]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back[:, 2], x[:, 2], atol=1e-4, rtol=1e-4)
    # dequantized training values are continuous: no two rows share a value of the discrete column
    assert torch.unique(u[:, 1]).numel() == x.shape[0]
    # exact zeros become values below the bound, so the mass below it is the share of zeros
    assert float((u[:, 0] < 0).double().mean()) == pytest.approx(float((x[:, 0] == 0).double().mean()))


def test_a_spec_without_supports_is_the_identity() -> None:
    t = SupportTransform(BundleSpec(("y",), ("a", "b")))
    x = torch.randn(10, 2)
    assert not t.active and t(x) is x and t.inverse(x) is x


def _bound_map(kind: str) -> tuple[LowerBound | UpperBound | Interval, torch.Tensor]:
    """A smooth bound map in float64 with parameters away from 0 and 1, and points ``u [40, 3]``
    that reach from deep in the bend at the bound to where the map is nearly the identity."""
    z = 16 * torch.rand(40, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64) - 8
    lower = torch.tensor([-1.3, 0.4, 2.5], dtype=torch.float64)
    width = torch.tensor([0.37, 1.9, 0.05], dtype=torch.float64)
    if kind == "lower":
        return LowerBound(lower, width), lower + width * z
    if kind == "upper":
        return UpperBound(lower, width), lower - width * z
    upper = lower + torch.tensor([0.6, 3.7, 11.0], dtype=torch.float64)
    return Interval(lower, upper), (lower + upper) / 2 + (upper - lower) / 4 * z


@pytest.mark.parametrize("kind", ["lower", "upper", "interval"])
def test_bound_maps_invert_and_carry_the_log_jacobian_of_autograd(kind: str) -> None:
    """Every smooth column map: its values lie in its codomain, inverse∘forward is the
    identity, and ``log_abs_det_jacobian`` is log|diagonal| of the autograd Jacobian, which has
    nothing off its diagonal (the maps act per column)."""
    t, u = _bound_map(kind)
    x = t(u)
    assert bool(t.codomain.check(x).all())
    torch.testing.assert_close(t.inv(x), u, rtol=1e-9, atol=1e-9)
    jacobian = torch.autograd.functional.jacobian(t, u).reshape(u.numel(), u.numel())
    diagonal = jacobian.diagonal()
    assert int(torch.count_nonzero(jacobian - torch.diag(diagonal))) == 0
    torch.testing.assert_close(t.log_abs_det_jacobian(u, x), diagonal.abs().log().reshape(u.shape), rtol=0, atol=1e-10)


def test_bundlenet_rounds_discrete_columns_so_that_samples_stay_over_their_base() -> None:
    """Counts whose base is their sum: an (untrained) BundleNet's continuous samples have the
    right sum but spill past 0 and 5; rounding each count to its nearest value adds up the
    spill, rounding along the frame's base gradient keeps the sum within a count."""
    from bundlenet.data.tabular import TabularBundle
    from bundlenet.models.bundlenet import BundleNet

    gen = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 6, (800, 8), generator=gen).double()
    counts[:, :4] *= (torch.rand(800, 4, generator=gen) < 0.4).double()  # many exact zeros
    bundle = TabularBundle(counts, counts.sum(1, keepdim=True), [f"c{i}" for i in range(8)], ["total"])
    model = BundleNet(bundle.spec, num_nbhds=4, num_blocks=1, hidden_features=16, depth=1)
    model.fit_data(*bundle.train_tensors())
    base = bundle.train_tensors()[1][:400].float()
    with torch.no_grad():
        y = model.base_scaler(base)
        u = model.decode(model.latent.sample(400, torch.Generator().manual_seed(1)), y)
        nearest = bundle.spec.to_original(model.unstandardize(u), "total")
        kept = bundle.spec.to_original(model.round_on_fiber(u, y), "total")
    target = bundle.spec.to_original(base, "base").squeeze(1)
    for x in (nearest, kept):
        assert bool(((x - x.round()).abs() < 1e-4).all()) and bool(((x >= 0) & (x <= 5 + 1e-4)).all())
    error_nearest = (nearest.sum(1) - target).abs().mean()
    error_kept = (kept.sum(1) - target).abs().mean()
    assert float(error_nearest) > 1.0
    assert float(error_kept) < 0.5 * float(error_nearest)
    model.frames.gradient.zero_()  # no base direction (e.g. classes): nearest rounding
    torch.testing.assert_close(model.round_on_fiber(u, y), model.unstandardize(u))
