"""Closed-form oracles for the metrics shared by the losses and the evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from bundlenet.geometry import knn_kl_divergence, mean_nearest_distance, mmd, msmd, wasserstein


def test_mmd_of_identical_sets_is_zero_and_shift_is_positive() -> None:
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    floor = float(mmd(x[:150], x[150:]))  # two samples of one distribution
    assert float(mmd(x, x + 2.0)) > 5 * floor


def test_mmd_matches_geomloss() -> None:
    geomloss = pytest.importorskip("geomloss")
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(80, 3, generator=gen), torch.randn(90, 3, generator=gen) + 0.3
    expected = geomloss.SamplesLoss("gaussian", blur=0.5)(x, y)
    assert float(mmd(x, y)) == pytest.approx(float(expected), rel=1e-4)


def test_w1_of_a_translate_is_the_translation_length() -> None:
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    assert float(wasserstein(x, x + v, p=1)) == pytest.approx(float(v.norm()), rel=1e-6)
    assert float(wasserstein(x, x + v, p=2)) == pytest.approx(float(v.norm()), rel=1e-6)


def test_wasserstein_batches_fibers() -> None:
    x = torch.randn(4, 50, 2, generator=torch.Generator().manual_seed(3))
    w = wasserstein(x, x + torch.tensor([1.0, 0.0]))
    assert w.shape == (4,)
    torch.testing.assert_close(w, torch.ones(4), atol=1e-5, rtol=0)


def test_knn_kl_between_gaussians_matches_closed_form() -> None:
    gen = torch.Generator().manual_seed(4)
    n, d, shift = 2000, 2, 1.0
    p = torch.randn(n, d, generator=gen, dtype=torch.float64)
    q = torch.randn(n, d, generator=gen, dtype=torch.float64) * 1.5 + shift
    # KL(N(0, I) || N(m, s²I)) = d/2 (1/s² + log s² - 1) + |m|²/(2 s²)
    s2 = 1.5**2
    exact = d / 2 * (1 / s2 + math.log(s2) - 1) + d * shift**2 / (2 * s2)
    assert float(knn_kl_divergence(p, q)) == pytest.approx(exact, rel=0.1)


def test_knn_kl_masks_padding_like_separate_calls() -> None:
    gen = torch.Generator().manual_seed(5)
    a1, b1 = torch.randn(30, 3, generator=gen), torch.randn(40, 3, generator=gen)
    a2, b2 = torch.randn(20, 3, generator=gen), torch.randn(25, 3, generator=gen)
    pa, pb = torch.zeros(2, 30, 3), torch.zeros(2, 40, 3)
    pa[0], pb[0] = a1, b1
    pa[1, :20], pb[1, :25] = a2, b2
    ma = torch.arange(30) < torch.tensor([[30], [20]])
    mb = torch.arange(40) < torch.tensor([[40], [25]])
    batched = knn_kl_divergence(pa, pb, ma, mb)
    torch.testing.assert_close(batched, torch.stack([knn_kl_divergence(a1, b1), knn_kl_divergence(a2, b2)]))
    dist = mean_nearest_distance(pb, pa, mb, ma)
    torch.testing.assert_close(dist, torch.stack([mean_nearest_distance(b1, a1), mean_nearest_distance(b2, a2)]))


def test_msmd_of_identical_sets_is_zero() -> None:
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(6))
    assert float(msmd(x, x)) == 0.0
    assert float(msmd(x, x + 0.5)) > 0


@pytest.mark.parametrize("block", [512, 7])
def test_cloud_metrics_match_the_single_metrics_and_batch(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamed over row blocks (one block, or blocks of 7 rows), with a duplicate true point
    and a point shared by both clouds (zero distances the KL estimator skips)."""
    import bundlenet.evaluation.metrics as metrics_module
    from bundlenet.evaluation.metrics import cloud_metrics

    monkeypatch.setattr(metrics_module, "_BLOCK", block)
    gen = torch.Generator().manual_seed(8)
    t = torch.randn(3, 120, 2, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 90, 2, generator=gen, dtype=torch.float64) * 1.3 + 0.2
    t[:, 5] = t[:, 17]
    g[:, 40] = t[:, 60]
    m = cloud_metrics(t, g)  # distance matrices in float32: agree to ~1e-6
    tol = {"rtol": 1e-5, "atol": 1e-7}
    torch.testing.assert_close(m.mmd, mmd(t, g), **tol)
    torch.testing.assert_close(m.msmd, msmd(t, g), **tol)
    torch.testing.assert_close(m.kl_fwd, knn_kl_divergence(t, g), **tol)
    torch.testing.assert_close(m.kl_bwd, knn_kl_divergence(g, t), **tol)
    torch.testing.assert_close(m.w1, wasserstein(t, g, p=1))
    torch.testing.assert_close(m.w2, wasserstein(t, g, p=2))
    single = cloud_metrics(t[1], g[1])
    for name, value in single.items().items():
        torch.testing.assert_close(value, m.items()[name][1])


def test_cloud_metrics_of_identical_clouds_are_zero_and_translation_is_exact() -> None:
    from bundlenet.evaluation.metrics import cloud_metrics

    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    same = cloud_metrics(x, x)
    for name in ("mmd", "msmd", "w1", "w2"):
        assert float(same.items()[name]) == pytest.approx(0.0, abs=1e-9), name
    v = torch.tensor([0.0, 3.0, 4.0], dtype=torch.float64)
    moved = cloud_metrics(x, x + v, ot_points=100)
    assert float(moved.w1) == pytest.approx(5.0, rel=1e-6) and float(moved.w2) == pytest.approx(5.0, rel=1e-6)
    floor = cloud_metrics(x[:150], x[150:])
    assert float(moved.mmd) > 3 * float(floor.mmd) and float(moved.kl_fwd) > 1.0 and float(moved.kl_bwd) > 1.0


def test_cloud_metrics_rejects_mismatched_clouds() -> None:
    from bundlenet.errors import InputError
    from bundlenet.evaluation.metrics import cloud_metrics

    with pytest.raises(InputError, match="share batch shape and dimension"):
        cloud_metrics(torch.zeros(2, 10, 3), torch.zeros(10, 3))
    with pytest.raises(InputError, match="ot_points must be at least 2"):
        cloud_metrics(torch.zeros(10, 3), torch.zeros(10, 3), ot_points=1)
