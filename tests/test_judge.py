"""The table judge: a forest fitted on held-out rows scores re-simulation; real rows are judged out of bag."""

from __future__ import annotations

import torch

from bundlenet.data.judge import TableJudge
from bundlenet.data.tabular import TabularBundle
from bundlenet.evaluation.metrics import METRICS


def sum_table(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x1, x2 ~ U(0, 4), y = x1 + x2: the fiber over y is the segment x1 + x2 = y."""
    x = 4 * torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x, x.sum(1, keepdim=True)


def test_fit_rows_are_predicted_out_of_bag() -> None:
    x, y = sum_table(300)
    judge = TableJudge(x, x, y)
    torch.testing.assert_close(judge.predict(x), torch.from_numpy(judge.out_of_bag))
    # in-bag predictions of the fit rows would be closer to y than the out-of-bag ones
    in_bag = torch.from_numpy(judge.forest.predict(x.numpy())).unsqueeze(1)
    assert (in_bag - y).abs().mean() < (judge.predict(x) - y).abs().mean()


def test_resimulation_tells_points_on_the_fiber_from_points_off_it() -> None:
    x, y = sum_table(600)
    judge = TableJudge(x, x[:400], y[:400])
    base = torch.tensor([[2.0], [4.0], [6.0]], dtype=torch.float64)
    t = torch.rand(3, 100, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lo, hi = (base - 4).clamp_min(0).unsqueeze(1), base.clamp_max(4).unsqueeze(1)
    x1 = lo + (hi - lo) * t
    on = torch.cat([x1, base.unsqueeze(1) - x1], dim=-1)  # exactly on each fiber
    off = on + torch.tensor([0.75, 0.75], dtype=torch.float64)  # on the fiber over y + 1.5
    on_error, off_error = judge.resimulation(on, base), judge.resimulation(off, base)
    assert on_error.shape == (3,)
    assert (on_error < 0.35).all()
    assert (off_error > 1.0).all()  # a forest cannot extrapolate past y = 8, but 1.5 off it sees


def test_nearest_row_leaves_a_real_row_out_and_finds_the_nearest_other() -> None:
    x, y = sum_table(200)
    judge = TableJudge(x, x, y)
    distance = torch.cdist(x, x)
    distance.fill_diagonal_(float("inf"))
    points = x[:50].reshape(5, 10, 2)
    expected = distance[:50].min(dim=1).values.reshape(5, 10).median(dim=1).values
    torch.testing.assert_close(judge.nearest_row(points), expected)
    shifted = points + 1e-3  # not a row: its nearest row is the row it was moved from
    torch.testing.assert_close(judge.nearest_row(shifted), torch.full((5,), 2**0.5 * 1e-3, dtype=torch.float64))


def test_a_tables_fiber_scores_have_a_floor_from_real_rows() -> None:
    x, y = sum_table(600)
    x = torch.cat([x, torch.sin(2 * x[:, :1])], dim=1)  # rows on a surface in R^3: noise leaves it
    bundle = TabularBundle(x, y, ["x1", "x2", "x3"], ["y"], fibers="nearest")
    base = bundle.sample_total(4, torch.Generator().manual_seed(0)).base
    real = bundle.sample_fiber(base, 50, torch.Generator().manual_seed(1))
    noise = real + 0.5 * torch.randn(real.shape, generator=torch.Generator().manual_seed(2), dtype=real.dtype)
    floor, worse = bundle.fiber_scores(real, base), bundle.fiber_scores(noise, base)
    assert set(floor) == {"forest_resimulation", "nearest_row"}
    assert all(METRICS[name].ratio for name in floor)  # declared, with a floor to divide by
    assert all(v.shape == (4,) and torch.isfinite(v).all() for v in floor.values())
    assert (floor["nearest_row"] > 0).all()  # real rows are not their own nearest row
    assert worse["forest_resimulation"].mean() > floor["forest_resimulation"].mean()
    assert worse["nearest_row"].mean() > floor["nearest_row"].mean()


def test_too_few_held_out_rows_give_no_judge() -> None:
    x, y = sum_table(30)
    bundle = TabularBundle(x, y, ["x1", "x2"], ["y"], fibers="nearest", fiber_neighbours=5)
    assert bundle.test_index.numel() < 10
    assert bundle.fiber_scores(x[:10].unsqueeze(0), y[:1]) == {}


def sum_forward(x):  # the true map of sum_table, named as data.forward="tests.test_judge:sum_forward"
    return x.sum(-1, keepdim=True)


def test_a_tables_true_map_gives_the_exact_resimulation_error() -> None:
    import pytest

    from bundlenet.errors import InputError

    x, y = sum_table(600)
    bundle = TabularBundle(x, y, ["x1", "x2"], ["y"], fibers="nearest", forward="tests.test_judge:sum_forward")
    base = torch.tensor([[3.0], [5.0]], dtype=torch.float64)
    x1 = torch.linspace(1.1, 2.9, 40, dtype=torch.float64).expand(2, 40).unsqueeze(-1)
    on = torch.cat([x1, base.unsqueeze(1) - x1], dim=-1)  # exactly on the fibers, original units
    scores = bundle.fiber_scores(on, base)
    torch.testing.assert_close(scores["resimulation"], torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0)
    off = on + torch.tensor([0.5, 0.25], dtype=torch.float64)  # π(x̂) = y + 0.75, in scaled units 0.75 / the base's scale
    expected = torch.full((2,), 0.75 / float(bundle.base_scale[0]), dtype=torch.float64)
    torch.testing.assert_close(bundle.fiber_scores(off, base)["resimulation"], expected, atol=1e-9, rtol=0)
    with pytest.raises(InputError, match=r"data.forward=tests.test_judge:nowhere: module 'tests.test_judge' has no function"):
        TabularBundle(x, y, ["x1", "x2"], ["y"], fibers="nearest", forward="tests.test_judge:nowhere")
