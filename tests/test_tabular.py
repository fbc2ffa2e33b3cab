"""Tables as bundles: scaling, the seeded split, exact and nearest empirical fibers, units."""

from __future__ import annotations

import pytest
import torch

from bundlenet.data.tabular import TabularBundle, column_scaling, split_rows
from bundlenet.errors import InputError


def table(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two inputs in units far from [0, 10]; base = (grade in {1..4}, flag in {0, 1}); grade 4 with flag 1 is rare."""
    gen = torch.Generator().manual_seed(seed)
    grade = torch.randint(1, 4, (n,), generator=gen).double()
    flag = torch.randint(0, 2, (n,), generator=gen).double()
    grade[:2], flag[:2] = 4.0, 1.0  # a base value with only 2 rows
    total = torch.stack(
        [
            1000 + 50 * grade + torch.randn(n, generator=gen, dtype=torch.float64),
            0.01 * torch.rand(n, generator=gen, dtype=torch.float64),
        ],
        dim=1,
    )
    return total, torch.stack([grade, flag], dim=1)


def test_column_scaling_methods_and_constant_columns() -> None:
    x = torch.tensor([[1.0, 5.0], [3.0, 7.0], [5.0, 9.0]])
    offset, scale = column_scaling(x, ["a", "b"], "minmax10")
    torch.testing.assert_close(
        ((x.double() - offset) / scale), torch.tensor([[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]], dtype=torch.float64)
    )
    offset, scale = column_scaling(x, ["a", "b"], "standard")
    z = (x.double() - offset) / scale
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(2, dtype=torch.float64))
    offset, scale = column_scaling(x, ["a", "b"], "none")
    assert offset.tolist() == [0, 0] and scale.tolist() == [1, 1]
    with pytest.raises(InputError, match=r"column 'b' is constant \(every row is 2\).*data.scaling=none"):
        column_scaling(torch.tensor([[1.0, 2.0], [3.0, 2.0]]), ["a", "b"], "minmax10")


def test_split_is_seeded_disjoint_and_covers_every_row() -> None:
    train, test = split_rows(6497, 0.8, seed=3)
    assert (train.numel(), test.numel()) == (5197, 1300)
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(6497))
    assert torch.equal(split_rows(6497, 0.8, seed=3)[0], train)
    assert not torch.equal(split_rows(6497, 0.8, seed=4)[0], train)
    assert split_rows(1503, 0.8, 0)[0].numel() == 1202


def test_exact_fibers_hold_rows_with_that_base_only() -> None:
    total, base = table()
    bundle = TabularBundle(total, base, ["mass", "ratio"], ["grade", "flag"], fibers="auto")
    assert bundle.fiber_rule == "exact"
    values = {tuple(v) for v in bundle.fiber_base_points.tolist()}
    assert (4.0, 1.0) not in values and len(values) == 6  # the 2-row value has no fiber
    gen = torch.Generator().manual_seed(0)
    drawn = bundle.sample_total(500, gen)
    assert not ((drawn.base[:, 0] == 4) & (drawn.base[:, 1] == 1)).any()
    fibers = bundle.sample_fiber(drawn.base[:20], 50, gen)  # original units
    assert fibers.shape == (20, 50, 2)
    assert float(fibers[..., 0].mean()) > 1000  # original units, not [0, 10]
    projected = bundle.project(fibers.reshape(-1, 2)).reshape(20, 50, 2)
    assert torch.equal(projected, drawn.base[:20].unsqueeze(1).expand_as(projected))
    with pytest.raises(InputError, match=r"base point \[4.0, 1.0\] is not a value of \(grade, flag\) with at least 3 rows"):
        bundle.sample_fiber(torch.tensor([[4.0, 1.0]]), 5)
    with pytest.raises(InputError, match="not a value"):
        bundle.sample_fiber(torch.tensor([[2.5, 0.0]]), 5)


def test_units_of_fibers_and_totals_agree_with_the_spec() -> None:
    total, base = table()
    bundle = TabularBundle(total, base, ["mass", "ratio"], ["grade", "flag"])
    spec = bundle.spec
    s_orig = bundle.sample_total(30, torch.Generator().manual_seed(1))
    s_scaled = bundle.sample_total(30, torch.Generator().manual_seed(1), units="scaled")
    torch.testing.assert_close(spec.to_scaled(s_orig.total, "total"), s_scaled.total)
    torch.testing.assert_close(spec.to_scaled(s_orig.base, "base"), s_scaled.base)
    assert float(s_scaled.total.min()) >= 0 and float(s_scaled.total.max()) <= 10
    f_orig = bundle.sample_fiber(s_orig.base, 40, torch.Generator().manual_seed(2))
    f_scaled = bundle.sample_fiber(s_scaled.base, 40, torch.Generator().manual_seed(2), units="scaled")
    torch.testing.assert_close(spec.to_scaled(f_orig, "total"), f_scaled, atol=1e-4, rtol=1e-5)


def test_nearest_fibers_are_the_k_nearest_rows_with_random_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(300, 1, generator=gen, dtype=torch.float64) * 100
    x = torch.cat(
        [y + torch.randn(300, 1, generator=gen, dtype=torch.float64), torch.rand(300, 2, generator=gen, dtype=torch.float64)], 1
    )
    bundle = TabularBundle(x, y, ["a", "b", "c"], ["y"], fibers="auto", fiber_neighbours=15)
    assert bundle.fiber_rule == "nearest"  # 300 distinct values > max_exact_values
    query = torch.tensor([[50.0]])
    fiber = bundle.sample_fiber(query, 400, torch.Generator().manual_seed(1))[0]
    kth = (y - 50).abs().squeeze(1).sort().values[14]
    fiber_bases = bundle.project(fiber).squeeze(1)
    assert float((fiber_bases - 50).abs().max()) <= float(kth) + 1e-4
    assert torch.unique(fiber, dim=0).shape[0] == 15  # 400 draws with replacement cover the 15 rows
    # ties: 30 rows share the base value; the 5 chosen change with the generator
    tied = TabularBundle(
        torch.rand(60, 2, dtype=torch.float64),
        torch.cat([torch.zeros(30), torch.arange(1, 31)]).double().unsqueeze(1),
        ["a", "b"],
        ["y"],
        fibers="nearest",
        fiber_neighbours=5,
    )
    picks = {
        tuple(sorted(set(tied.sample_fiber(torch.zeros(1, 1), 200, torch.Generator().manual_seed(s))[0, :, 0].tolist())))
        for s in range(4)
    }
    assert len(picks) > 1
    with pytest.raises(InputError, match="data.fiber_neighbours=500 must be between 1 and the 300 rows"):
        TabularBundle(x, y, ["a", "b", "c"], ["y"], fibers="nearest", fiber_neighbours=500)


def test_fiber_source_test_uses_held_out_rows_only() -> None:
    total, base = table()
    bundle = TabularBundle(total, base, ["mass", "ratio"], ["grade", "flag"], fiber_source="test")
    test_rows = {tuple(r) for r in total[bundle.test_index].float().tolist()}
    fibers = bundle.sample_fiber(
        bundle.sample_total(10, torch.Generator().manual_seed(0)).base, 30, torch.Generator().manual_seed(0)
    )
    assert {tuple(r) for r in fibers.reshape(-1, 2).tolist()} <= test_rows
