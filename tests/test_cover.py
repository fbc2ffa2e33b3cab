"""The cover: seeded k-means, nearest-centre assignment, vectorised grouping."""

from __future__ import annotations

import pytest
import torch

from bundlenet.errors import InputError
from bundlenet.nn.cover import Cover, group_by


def test_group_by_matches_a_loop() -> None:
    labels = torch.tensor([3, 0, 3, 1, 3, 0, 5])
    groups = group_by(labels, 6)
    assert groups.neighbourhood.tolist() == [0, 1, 3, 5]
    for row, k in enumerate(groups.neighbourhood.tolist()):
        members = groups.index[row][groups.mask[row]].tolist()
        assert members == [i for i, label in enumerate(labels.tolist()) if label == k]
    assert groups.index.shape == (4, 3)


def test_cover_is_seeded_and_assigns_to_nearest_centre() -> None:
    base = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    a, b = Cover(7, 2), Cover(7, 2)
    a.fit(base, seed=3)
    b.fit(base, seed=3)
    torch.testing.assert_close(a.centres, b.centres)
    labels = a.assign(base)
    nearest = torch.stack([((base - c) ** 2).sum(1) for c in a.centres], 1).argmin(1)
    assert torch.equal(labels, nearest)


def test_more_neighbourhoods_than_distinct_base_points_is_refused() -> None:
    base = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    with pytest.raises(InputError, match=r"model.num_nbhds=5 exceeds the 3 distinct"):
        Cover(5, 2).fit(base)


def test_kmeans_on_a_subsample_covers_every_point() -> None:
    gen = torch.Generator().manual_seed(1)
    blobs = 10 * torch.randn(8, 2, generator=gen)
    base = blobs.repeat(125, 1) + 0.3 * torch.randn(1000, 2, generator=gen)
    cover = Cover(8, 2)
    sizes = cover.fit(base, seed=0, max_points=200)
    assert int(sizes.sum()) == 1000 and int(sizes.min()) > 0
    full = Cover(8, 2)
    full.fit(base, seed=0)
    # the subsample finds the same clusters as the full data
    assert float(torch.cdist(cover.centres, full.centres).min(dim=1).values.max()) < 0.2


def test_distances_to_the_centres_are_computed_in_blocks() -> None:
    """Blocks of points give what one [N, K] distance matrix gives."""
    from bundlenet.geometry import pairwise_distances, per_query

    gen = torch.Generator().manual_seed(0)
    cover = Cover(6, 2)
    cover.fit(torch.randn(300, 2, generator=gen))
    base = torch.randn(50, 2, generator=gen)
    d = pairwise_distances(base, cover.centres)
    assert torch.equal(per_query(base, cover.centres, lambda x: x.argmin(1), block=7), d.argmin(1))
    topk = per_query(base, cover.centres, lambda x: x.topk(3, dim=1, largest=False).indices, block=7)
    assert torch.equal(topk, d.topk(3, dim=1, largest=False).indices)
    torch.testing.assert_close(per_query(base, cover.centres, lambda x: x.min(1).values, block=7), d.min(1).values)
    assert torch.equal(cover.assign(base), d.argmin(1)) and cover.assign(base[:0]).shape == (0,)


def test_partition_of_unity_blends_a_continuous_base_but_not_classes() -> None:
    gen = torch.Generator().manual_seed(0)
    continuous = torch.rand(2000, 1, generator=gen) * 10
    cover = Cover(10, 1)
    cover.fit(continuous)
    gaps = torch.cdist(cover.centres, cover.centres).fill_diagonal_(float("inf")).min(1).values
    assert torch.isclose(cover.bandwidth, gaps.median())  # overlap 1: one centre spacing
    mixed = cover.weights(continuous[:200]).max(1).values
    assert mixed.min() < 0.9  # neighbouring charts are mixed near their boundary
    classes = torch.randint(0, 10, (2000, 1), generator=gen).double()
    cover = Cover(10, 1).double()
    cover.fit(classes)
    assert float(cover.bandwidth) < 1e-3
    weights = cover.weights(classes)
    assert torch.equal(weights.argmax(1), cover.assign(classes)) and bool((weights.max(1).values > 1 - 1e-9).all())


def test_a_cover_chosen_from_the_data_merges_neighbourhoods_of_few_points() -> None:
    """A Gaussian base (thin tails): k-means alone leaves cells of a few points in the tails; with
    ``min_points`` every cell holds at least that many, and the cover has fewer cells."""
    base = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    plain = Cover(64, 2)
    assert int(plain.fit(base, seed=0).min()) < 10
    merged = Cover(64, 2)
    sizes = merged.fit(base, seed=0, min_points=10)
    assert int(sizes.min()) >= 10
    assert merged.num_nbhds == merged.centres.shape[0] == sizes.shape[0] < 64
    assert int(sizes.sum()) == 2000
