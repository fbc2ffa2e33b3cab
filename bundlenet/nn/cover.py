"""The cover of the base space: k-means neighbourhoods and grouping of points by neighbourhood."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from sklearn.cluster import KMeans
from torch import Tensor, nn

from bundlenet.errors import InputError
from bundlenet.geometry import pairwise_distances, per_query
from bundlenet.ranks import FirstRankLog

first_rank = FirstRankLog(__name__)


@dataclass(frozen=True)
class Groups:
    """Points grouped by neighbourhood into a padded table.

    Attributes:
        index: ``[G, M]`` row indices into the grouped points (padding entries hold 0).
        mask: ``[G, M]`` True where ``index`` is a real entry.
        neighbourhood: ``[G]`` the neighbourhood of each group (only non-empty ones appear).
    """

    index: Tensor
    mask: Tensor
    neighbourhood: Tensor

    def select(self, rows: Tensor) -> Groups:
        """The given groups only (an index or boolean mask over groups)."""
        return Groups(self.index[rows], self.mask[rows], self.neighbourhood[rows])

    def repeat(self, times: int) -> Groups:
        """Each entry repeated ``times`` times in place: ``[G, M]`` → ``[G, times·M]``."""
        return Groups(
            self.index.repeat_interleave(times, dim=1),
            self.mask.repeat_interleave(times, dim=1),
            self.neighbourhood,
        )


def capped_count(base: Tensor, wanted: int, sample: int = 100_000) -> int:
    """``wanted`` neighbourhoods, but at most as many as the distinct base points of ``base [N, d_B]``
    (counted on the first ``sample`` rows) and at least 1."""
    distinct = torch.unique(base[:sample], dim=0).shape[0]
    return max(1, min(int(wanted), distinct))


def group_by(labels: Tensor, num_groups: int) -> Groups:
    """Group row indices by integer label, vectorised (no Python loop over points).

    ``labels [N]`` in ``[0, num_groups)`` → :class:`Groups` over the labels that occur.
    """
    counts = torch.bincount(labels, minlength=num_groups)
    present = (counts > 0).nonzero().squeeze(1)
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(labels.numel(), device=labels.device) - starts[sorted_labels]
    row_of_label = torch.full((num_groups,), -1, dtype=torch.long, device=labels.device)
    row_of_label[present] = torch.arange(present.numel(), device=labels.device)
    width = int(counts.max()) if labels.numel() else 0
    index = torch.zeros(present.numel(), width, dtype=torch.long, device=labels.device)
    mask = torch.zeros(present.numel(), width, dtype=torch.bool, device=labels.device)
    rows = row_of_label[sorted_labels]
    index[rows, position] = order
    mask[rows, position] = True
    return Groups(index, mask, present)


class Cover(nn.Module):
    r"""K neighbourhoods of the base space: the Voronoi cells of k-means centres, overlapping
    through a partition of unity.

    The centres ``[K, d_B]`` are a buffer, so a checkpoint carries its cover. A base point
    belongs to the neighbourhood of its nearest centre (:meth:`assign`). The partition of unity
    (:meth:`weights`) blends neighbourhoods smoothly,

    .. math:: w_k(y) = \frac{\exp(-|y - c_k|^2 / 2h^2)}{\sum_j \exp(-|y - c_j|^2 / 2h^2)},

    with the bandwidth h = ``overlap`` × min(g, ``SPREAD_FACTOR`` · r) (a buffer set by
    :meth:`fit`): g is the median distance from a centre to its nearest other centre, r the
    median over neighbourhoods of the root-mean-square distance of their training points to their
    centre. For a continuous base r is a fraction of g and h = ``overlap`` · g; where each
    neighbourhood is one base value (a class, a few levels of a setting) r = 0 and the partition
    is the neighbourhoods themselves, so unrelated values are never blended.
    """

    SPREAD_FACTOR = 4.0

    centres: Tensor
    bandwidth: Tensor

    def __init__(self, num_nbhds: int, base_dim: int) -> None:
        super().__init__()
        if num_nbhds < 1:
            raise InputError(f"model.num_nbhds must be at least 1, got {num_nbhds}")
        self.num_nbhds = int(num_nbhds)
        self.register_buffer("centres", torch.zeros(num_nbhds, base_dim))
        self.register_buffer("bandwidth", torch.ones(()))

    def fit(self, base: Tensor, seed: int = 0, max_points: int = 100_000, overlap: float = 1.0, min_points: int = 1) -> Tensor:
        """Run k-means (scikit-learn, seeded) on training base points ``[N, d_B]``.

        Past ``max_points`` points, k-means runs on a seeded subsample of that size (memory
        stays flat in the dataset size; the centres barely move). A neighbourhood of fewer than
        ``min_points`` training points (the tail of a base distribution) is merged into its
        neighbours: its centre is dropped and k-means restarts from the other centres, until
        every neighbourhood holds ``min_points`` (so ``num_nbhds`` can shrink). Returns the
        neighbourhood sizes ``[K]`` of all points. Raises :class:`InputError` when there are
        fewer distinct base points than neighbourhoods.
        """
        sample = base
        if base.shape[0] > max_points:
            sample = base[torch.randperm(base.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]]
        self._check_distinct(sample, base)
        points = sample.double().cpu().numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            centres = KMeans(n_clusters=self.num_nbhds, n_init=10, random_state=seed).fit(points).cluster_centers_
            while True:
                self.centres = torch.as_tensor(centres, dtype=self.centres.dtype, device=self.centres.device)
                self.num_nbhds = int(centres.shape[0])
                labels = self.assign(base.to(self.centres))
                sizes = torch.bincount(labels, minlength=self.num_nbhds)
                keep = (sizes >= min_points).cpu().numpy()
                if keep.all() or keep.sum() == 0:
                    break
                centres = (
                    KMeans(n_clusters=int(keep.sum()), init=centres[keep], n_init=1, random_state=seed)
                    .fit(points)
                    .cluster_centers_
                )
        if self.num_nbhds > 1:
            self._fit_bandwidth(base, labels, sizes, overlap)
        small = (sizes < 2).nonzero().squeeze(1).tolist()
        if small:
            first_rank.warning("neighbourhoods %s hold fewer than 2 training points; lower model.num_nbhds", small)
        return sizes

    def _check_distinct(self, sample: Tensor, base: Tensor) -> None:
        """Refuse fewer distinct base points than neighbourhoods (counted on ``sample``, a subsample
        of ``base``, unless that has too few)."""
        distinct = torch.unique(sample, dim=0).shape[0]  # (sorting 10⁶ rows would cost ~250 MB)
        if distinct < self.num_nbhds and sample is not base:
            distinct = torch.unique(base, dim=0).shape[0]
        if distinct < self.num_nbhds:
            raise InputError(
                f"model.num_nbhds={self.num_nbhds} exceeds the {distinct} distinct base points "
                f"of the training data; set model.num_nbhds<={distinct}"
            )

    def _fit_bandwidth(self, base: Tensor, labels: Tensor, sizes: Tensor, overlap: float) -> None:
        """The partition of unity's bandwidth: ``overlap`` × the smaller of the median gap between
        centres and ``SPREAD_FACTOR`` × the median neighbourhood radius."""
        gaps = pairwise_distances(self.centres, self.centres).fill_diagonal_(float("inf")).min(dim=1).values
        square = (base.to(self.centres) - self.centres[labels]).pow(2).sum(1)
        radius = (
            torch.zeros(self.num_nbhds, dtype=square.dtype, device=square.device).index_add_(0, labels, square)
            / sizes.clamp_min(1)
        ).sqrt()
        width = torch.minimum(gaps.median(), self.SPREAD_FACTOR * radius[sizes > 0].median())
        self.bandwidth.fill_(float(overlap * width.clamp_min(1e-6)))

    def assign(self, base: Tensor) -> Tensor:
        """Neighbourhood of each base point (nearest centre): ``[N, d_B]`` → ``[N]``."""
        return per_query(base, self.centres, lambda d: d.argmin(dim=1))

    def nearest(self, base: Tensor, count: int) -> Tensor:
        """The ``count`` nearest neighbourhoods of each base point, nearest first: ``[N, count]``."""
        return per_query(base, self.centres, lambda d: d.topk(count, dim=1, largest=False).indices)

    def weights(self, base: Tensor) -> Tensor:
        """The partition of unity at each base point: ``[N, d_B]`` → ``[N, K]``, rows sum to 1."""
        d2 = per_query(base, self.centres, lambda d: d.pow(2))
        return torch.softmax(-d2 / (2 * self.bandwidth.to(d2) ** 2), dim=1)
