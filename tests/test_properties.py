"""Property-based tests (hypothesis): φ is invertible everywhere; metrics have their symmetries."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bundlenet.geometry import mmd, wasserstein
from bundlenet.nn.trivialization import LocalTrivialization


@settings(max_examples=25, deadline=None)
@given(
    dim=st.integers(2, 8),
    context=st.integers(1, 4),
    blocks=st.integers(1, 3),
    coupling=st.sampled_from(["rq_spline", "affine"]),
    affine_first=st.booleans(),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 8.0),
)
def test_phi_is_invertible(dim: int, context: int, blocks: int, coupling: str, affine_first: bool, seed: int, scale: float) -> None:
    torch.manual_seed(seed)
    phi = LocalTrivialization(dim, context, num_blocks=blocks, hidden_features=8, depth=1, coupling=coupling,
                              conditional_affine=affine_first).double()
    with torch.no_grad():
        for p in phi.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = scale * torch.randn(16, dim, dtype=torch.float64)
    c = 3 * torch.randn(16, context, dtype=torch.float64)
    u, logdet = phi(x, c)
    back, inv_logdet = phi.inverse(u, c)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-5, rtol=1e-6)


clouds = st.integers(0, 2**16).map(lambda s: torch.Generator().manual_seed(s))


@settings(max_examples=20, deadline=None)
@given(gen=clouds, n=st.integers(5, 40), m=st.integers(5, 40), dim=st.integers(1, 4), p=st.sampled_from([1, 2]),
       shift=st.floats(-50, 50))
def test_wasserstein_is_translation_invariant(gen: torch.Generator, n: int, m: int, dim: int, p: int, shift: float) -> None:
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    y = torch.randn(m, dim, generator=gen, dtype=torch.float64) + 0.5
    v = torch.full((dim,), shift, dtype=torch.float64)
    torch.testing.assert_close(wasserstein(x + v, y + v, p=p), wasserstein(x, y, p=p), atol=1e-6, rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(gen=clouds, n=st.integers(2, 40), m=st.integers(2, 40), dim=st.integers(1, 4), blur=st.floats(0.1, 2.0))
def test_mmd_is_symmetric_and_nonnegative(gen: torch.Generator, n: int, m: int, dim: int, blur: float) -> None:
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    y = 2 * torch.randn(m, dim, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(mmd(x, y, blur), mmd(y, x, blur), atol=1e-12, rtol=1e-10)
    assert float(mmd(x, y, blur)) >= -1e-12
