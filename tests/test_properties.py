"""Property-based tests (hypothesis): φ is invertible everywhere; metrics have their symmetries."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bundlenet.geometry import mmd, wasserstein
from bundlenet.nn.trivialization import LocalTrivialization


@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples on every run
@given(
    dim=st.integers(2, 8),
    context=st.integers(1, 4),
    blocks=st.integers(1, 3),
    coupling=st.sampled_from(["rq_spline", "affine"]),
    affine_first=st.booleans(),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 8.0),
)
def test_phi_is_invertible(
    dim: int, context: int, blocks: int, coupling: str, affine_first: bool, seed: int, scale: float
) -> None:
    torch.manual_seed(seed)
    phi = LocalTrivialization(
        dim, context, num_blocks=blocks, hidden_features=8, depth=1, coupling=coupling, conditional_affine=affine_first
    ).double()
    with torch.no_grad():
        for p in phi.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = scale * torch.randn(16, dim, dtype=torch.float64)
    c = 3 * torch.randn(16, context, dtype=torch.float64)
    u, logdet = phi(x, c)
    back, inv_logdet = phi.inverse(u, c)
    # float64 round trips through random couplings at |x| up to ~30 lose a few parts in 10⁶
    torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-5, rtol=1e-5)


clouds = st.integers(0, 2**16).map(lambda s: torch.Generator().manual_seed(s))


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    gen=clouds,
    n=st.integers(5, 40),
    m=st.integers(5, 40),
    dim=st.integers(1, 4),
    p=st.sampled_from([1, 2]),
    shift=st.floats(-50, 50),
)
def test_wasserstein_is_translation_invariant(gen: torch.Generator, n: int, m: int, dim: int, p: int, shift: float) -> None:
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    y = torch.randn(m, dim, generator=gen, dtype=torch.float64) + 0.5
    v = torch.full((dim,), shift, dtype=torch.float64)
    torch.testing.assert_close(wasserstein(x + v, y + v, p=p), wasserstein(x, y, p=p), atol=1e-6, rtol=1e-6)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(gen=clouds, n=st.integers(2, 40), m=st.integers(2, 40), dim=st.integers(1, 4), blur=st.floats(0.1, 2.0))
def test_mmd_is_symmetric_and_nonnegative(gen: torch.Generator, n: int, m: int, dim: int, blur: float) -> None:
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    y = 2 * torch.randn(m, dim, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(mmd(x, y, blur), mmd(y, x, blur), atol=1e-12, rtol=1e-10)
    assert float(mmd(x, y, blur)) >= -1e-12


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    bundle_name=st.sampled_from(["torus", "moebius"]),
    scope=st.sampled_from(["global", "fiber"]),
    value=st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    row=st.integers(0, 10_000),
    column=st.integers(0, 2),
)
def test_no_metric_scores_non_finite_samples(bundle_name: str, scope: str, value: float, row: int, column: int) -> None:
    """One NaN or infinite coordinate anywhere in a model's global or fiber samples: the
    evaluation refuses (evaluation.protocol.check_finite) instead of returning any score."""
    import pytest

    from bundlenet import MoebiusBand, Torus
    from bundlenet.errors import BundleNetError
    from bundlenet.evaluation.protocol import Protocol, evaluate_model
    from tests.test_evaluation import OracleModel

    class Broken(OracleModel):
        def _poison(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.reshape(-1, x.shape[-1])
            flat[row % flat.shape[0], column] = value
            return x

        def sample(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            x = super().sample(*args, **kwargs)
            return self._poison(x) if scope == "global" else x

        def sample_fiber(self, *args: object, **kwargs: object) -> torch.Tensor:  # type: ignore[override]
            x = super().sample_fiber(*args, **kwargs)
            return self._poison(x) if scope == "fiber" else x

    bundle = Torus() if bundle_name == "torus" else MoebiusBand()
    protocol = Protocol(
        iterations=1, num_global=60, global_ot_points=None, num_fibers=2, num_points=20, coverage_points=40, seed=1
    )
    with pytest.raises(BundleNetError, match=f"the model's {scope} samples contain non-finite values"):
        evaluate_model(Broken(bundle), bundle, protocol)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 4)), bad=st.booleans(), seed=st.integers(0, 2**16))
def test_check_finite_refuses_exactly_the_non_finite(shape: tuple[int, int, int], bad: bool, seed: int) -> None:
    import pytest

    from bundlenet.errors import BundleNetError
    from bundlenet.evaluation.protocol import check_finite

    gen = torch.Generator().manual_seed(seed)
    x = 1e6 * torch.randn(*shape, generator=gen)
    if bad:
        x.view(-1)[int(torch.randint(x.numel(), (1,), generator=gen))] = float("nan")
        with pytest.raises(BundleNetError, match=r"contain non-finite values \(1 of"):
            check_finite(x, "fiber")
    else:
        check_finite(x, "fiber")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    rows=st.integers(0, 60),
    columns=st.integers(0, 4),
    values=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_distinct_rows_are_torch_unique_rows_in_the_same_order(rows: int, columns: int, values: int, seed: int) -> None:
    from bundlenet.geometry import distinct_rows

    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-values, values, (rows, columns), generator=gen).double() * 0.5  # repeats, negatives, -0.0
    distinct, index = distinct_rows(x)
    assert torch.equal(distinct[index], x)
    if rows and columns:
        expected, expected_index = torch.unique(x, dim=0, return_inverse=True)
        assert torch.equal(distinct, expected) and torch.equal(index, expected_index)
