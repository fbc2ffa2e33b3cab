"""A table of data as a bundle: rows (x, y) with x the input columns and y = π(x) the outputs.

Unlike the synthetic bundles, the fibers of a table are only known through its rows, so
:class:`TabularBundle` answers with *empirical* fibers:

* ``exact``: the fiber over y is the set of rows whose base equals y (for bases with few
  distinct values, e.g. wine quality and colour); only values with at least
  ``min_fiber_points`` rows have a fiber;
* ``nearest``: the fiber over y is the ``fiber_neighbours`` rows whose base is nearest to y
  (scaled units; ties broken at random), e.g. airfoil with K = 15.

Fiber samples are drawn uniformly with replacement from these rows, as in the authors'
evaluation. Columns are scaled per column (``minmax10``: ``10·(x − min)/(max − min)``, the
authors' preprocessing; ``standard``: ``(x − mean)/std``; ``minmax10_shared``: one min and max
for all columns, e.g. the pixels of images; ``none``) with statistics of all rows; the scaling is part of :attr:`spec`, so a trained model converts units itself. The
public methods take and return *original* units by default, like the models'.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from bundlenet.bundles.base import Bundle, BundleSamples, BundleSpec, Units, check_points, check_units
from bundlenet.data.columns import infer_supports
from bundlenet.data.judge import TableJudge
from bundlenet.errors import InputError
from bundlenet.forward import resolve_forward, torch_map
from bundlenet.geometry import nearest_neighbour_distance, pairwise_distances, per_query

log = logging.getLogger(__name__)

Scaling = Literal["minmax10", "minmax10_shared", "standard", "none"]
FiberRule = Literal["auto", "exact", "nearest"]
FiberSource = Literal["all", "test"]

_MATCH_TOL = 1e-3  # scaled units (a column spans 10): exact base values closer than this are equal


def column_scaling(values: Tensor, names: Sequence[str], method: Scaling) -> tuple[Tensor, Tensor]:
    """Per-column ``(offset, scale)`` with ``scaled = (x − offset) / scale`` for ``values [N, d]``.

    ``minmax10``: offset = min, scale = (max − min)/10 (columns span [0, 10]);
    ``minmax10_shared``: the same with the min and max over all columns (one scale: pixels);
    ``standard``: offset = mean, scale = standard deviation; ``none``: 0 and 1.

    Raises:
        InputError: a constant column (the scale would be zero), naming it.
    """
    values = values.double()
    if method == "none":
        return torch.zeros(values.shape[1], dtype=values.dtype), torch.ones(values.shape[1], dtype=values.dtype)
    if method == "minmax10_shared":
        low, high = values.min(), values.max()
        if not high > low:
            raise InputError(f"every value of every column is {float(low):g}, so {method} scaling would divide by zero")
        return low.expand(values.shape[1]).clone(), ((high - low) / 10).expand(values.shape[1]).clone()
    if method == "minmax10":
        offset = values.min(0).values
        scale = (values.max(0).values - offset) / 10
    elif method == "standard":
        offset = values.mean(0)
        scale = values.std(0, unbiased=False)
    else:
        raise InputError(f"data.scaling must be one of minmax10, minmax10_shared, standard, none; got {method!r}")
    constant = (scale <= 0).nonzero().squeeze(1).tolist()
    if constant:
        j = constant[0]
        raise InputError(
            f"column {names[j]!r} is constant (every row is {float(values[0, j]):g}), so {method} scaling would "
            f"divide by zero; leave it out of the columns or set data.scaling=none"
        )
    return offset, scale


def split_rows(num_rows: int, train_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded random split of row indices: ``⌊train_fraction·N⌋`` training rows, the rest test.

    Both index tensors are sorted (row order of the file).
    """
    if not 0 < train_fraction <= 1:
        raise InputError(f"data.train_fraction must be in (0, 1], got {train_fraction}")
    perm = torch.randperm(num_rows, generator=torch.Generator().manual_seed(int(seed)))
    num_train = math.floor(train_fraction * num_rows + 1e-9)
    return perm[:num_train].sort().values, perm[num_train:].sort().values


class TabularBundle(Bundle):
    """A table as a bundle with empirical fibers (see the module docstring).

    ``image_shape`` is ``(height, width)`` for tables whose columns are the pixels of images
    (:class:`~bundlenet.data.images.DigitsBundle`), else ``None``.

    Args:
        total: ``[N, d_E]`` input columns, original units.
        base: ``[N, d_B]`` output columns, original units.
        total_names: names of the input columns (written by the sample CLI).
        base_names: names of the output columns.
        scaling: ``minmax10`` (the authors'), ``minmax10_shared``, ``standard`` or ``none``.
        train_fraction: share of the rows in the training split.
        split_seed: seed of the train/test split.
        fibers: ``exact``, ``nearest``, or ``auto`` (exact when the base takes at most
            ``max_exact_values`` distinct values, else nearest).
        fiber_neighbours: K of the ``nearest`` rule.
        min_fiber_points: the least rows an exact fiber needs (3: "more than 2 points").
        max_exact_values: threshold of ``auto``.
        fiber_source: rows that make the fibers and the global samples: ``all`` (train ∪ test,
            the authors' protocol) or ``test`` (held-out rows only; the noise floor then draws
            each fiber from the training rows, :meth:`sample_fiber_floor`).
        fiber_circles: circle factors expected in a fiber (default of ``model.num_circles``).
        forward: the true map π of the table as ``module:function`` (arrays ``[N, d_E]`` → ``[N, d_B]``
            in the table's units), when the rows come from a known simulator or formula: the
            evaluation then reports the re-simulation error ‖π(x̂) − y‖ with it (``resimulation``).
        bounds: ``{column: [lower, upper]}`` stated bounds of input columns, either side
            ``None`` (the columns' supports: :func:`bundlenet.data.columns.infer_supports`).
        discrete: ``auto`` (columns with at most ``max_discrete_values`` distinct values), or
            the list of discrete input columns (``[]``: none).
        max_discrete_values: threshold of ``discrete="auto"``.
        min_atom_share: a bound value that holds this share of a column's rows is a point mass.
        nonnegative: a column whose values are all ≥ 0 gets the lower bound 0.
    """

    exact_map = False  # project() is the base of the nearest row: π is known only on the rows

    image_shape: tuple[int, int] | None = None

    def __init__(
        self,
        total: Tensor,
        base: Tensor,
        total_names: Sequence[str],
        base_names: Sequence[str],
        scaling: Scaling = "minmax10",
        train_fraction: float = 0.8,
        split_seed: int = 0,
        fibers: FiberRule = "auto",
        fiber_neighbours: int = 15,
        min_fiber_points: int = 3,
        max_exact_values: int = 50,
        fiber_source: FiberSource = "all",
        fiber_circles: int = 0,
        forward: str | None = None,
        bounds: Mapping[str, Any] | None = None,
        discrete: str | Sequence[str] = "auto",
        max_discrete_values: int = 20,
        min_atom_share: float = 0.05,
        nonnegative: bool = True,
    ) -> None:
        self._floor_twin: TabularBundle | None = None
        self._judge: TableJudge | None = None
        self.total_names = tuple(str(n) for n in total_names)
        self.base_names = tuple(str(n) for n in base_names)
        self.fiber_circles = int(fiber_circles)
        self.forward = None if forward is None else str(forward)
        if self.forward is not None:
            resolve_forward(self.forward, "data.forward")  # a bad name costs one line now, not after training
        total, base = torch.as_tensor(total), torch.as_tensor(base)
        self._check_shapes(total, base)
        self.total_support = infer_supports(
            total, self.total_names, bounds, discrete, max_discrete_values, min_atom_share, nonnegative
        )
        self._set_columns(total, base, scaling)
        self._set_split(total.shape[0], train_fraction, split_seed, fiber_source)
        self._set_fibers(fibers, fiber_neighbours, min_fiber_points, max_exact_values)
        log.info(
            "table: %d rows (%d train, %d test), %s fibers from %s rows",
            total.shape[0],
            self.train_index.numel(),
            self.test_index.numel(),
            self.fiber_rule,
            fiber_source,
        )

    def _check_shapes(self, total: Tensor, base: Tensor) -> None:
        if total.shape[0] != base.shape[0] or total.shape[1] != self.total_dim or base.shape[1] != self.base_dim:
            raise InputError(
                f"table shapes {tuple(total.shape)} and {tuple(base.shape)} do not match the columns "
                f"{list(self.total_names)} and {list(self.base_names)}"
            )
        if total.shape[0] < 2:
            raise InputError(f"the table has {total.shape[0]} row(s); a bundle needs at least 2 rows of data")

    def _set_columns(self, total: Tensor, base: Tensor, scaling: Scaling) -> None:
        """The columns' scalings and the table in original and scaled units (default dtype)."""
        dtype = torch.get_default_dtype()
        self.total_offset, self.total_scale = column_scaling(total, self.total_names, scaling)
        self.base_offset, self.base_scale = column_scaling(base, self.base_names, scaling)
        self.scaling = scaling
        self.total = total.to(dtype)
        self.base = base.to(dtype)
        self.scaled_total = ((total.double() - self.total_offset) / self.total_scale).to(dtype)
        self.scaled_base = ((base.double() - self.base_offset) / self.base_scale).to(dtype)

    def _set_split(self, rows: int, train_fraction: float, split_seed: int, fiber_source: FiberSource) -> None:
        """The train/test split of the ``rows`` and the rows the fibers are drawn from."""
        self.split_seed = int(split_seed)
        self.train_index, self.test_index = split_rows(rows, train_fraction, split_seed)
        if self.train_index.numel() < 2:
            raise InputError(
                f"data.train_fraction={train_fraction} leaves {self.train_index.numel()} training row(s) "
                f"of {rows}; at least 2 are needed"
            )
        if fiber_source not in ("all", "test"):
            raise InputError(f"data.fiber_source must be all or test, got {fiber_source!r}")
        self.fiber_source: str = fiber_source  # "train" in the floor twin (sample_fiber_floor)
        self.source_index = torch.arange(rows) if fiber_source == "all" else self.test_index
        if self.source_index.numel() == 0:
            raise InputError("data.fiber_source=test but the test split is empty; lower data.train_fraction")

    def _set_fibers(self, fibers: FiberRule, fiber_neighbours: int, min_fiber_points: int, max_exact_values: int) -> None:
        """The fiber rule (``exact`` or ``nearest``) and the rows whose fibers can be drawn."""
        self.fiber_rule = self._choose_rule(fibers, max_exact_values)
        self.fiber_neighbours = int(fiber_neighbours)
        self.min_fiber_points = int(min_fiber_points)
        if self.fiber_rule == "exact":
            self._index_exact_fibers()
        else:
            if not 1 <= self.fiber_neighbours <= self.source_index.numel():
                raise InputError(
                    f"data.fiber_neighbours={fiber_neighbours} must be between 1 and the "
                    f"{self.source_index.numel()} rows of data.fiber_source={self.fiber_source}"
                )
            self.eligible_rows = self.source_index

    @classmethod
    def from_frame(cls, frame: Any, total_names: Sequence[str], base_names: Sequence[str], **options: Any) -> TabularBundle:
        """A bundle of the named columns of a pandas DataFrame of numbers (original units)."""

        def columns(names: Sequence[str]) -> Tensor:
            return torch.from_numpy(frame[list(names)].to_numpy(dtype="float64", copy=True))

        return cls(columns(total_names), columns(base_names), total_names, base_names, **options)

    # ----------------------------------------------------------------- structure
    @property
    def spec(self) -> BundleSpec:
        return BundleSpec(
            self.base_names,
            self.total_names,
            self.fiber_circles,
            base_offset=tuple(self.base_offset.tolist()),
            base_scale=tuple(self.base_scale.tolist()),
            total_offset=tuple(self.total_offset.tolist()),
            total_scale=tuple(self.total_scale.tolist()),
            total_support=self.total_support,
            image_shape=self.image_shape,
            fiber_span=self.fiber_span,
        )

    @property
    def num_rows(self) -> int:
        return self.total.shape[0]

    def train_tensors(self) -> tuple[Tensor, Tensor]:
        """The training split ``(total [n, d_E], base [n, d_B])`` in scaled units."""
        return self.scaled_total[self.train_index], self.scaled_base[self.train_index]

    def _choose_rule(self, fibers: str, max_exact_values: int) -> str:
        if fibers not in ("auto", "exact", "nearest"):
            raise InputError(f"data.fibers must be auto, exact or nearest; got {fibers!r}")
        if fibers != "auto":
            return fibers
        distinct = torch.unique(self._value_keys(self.scaled_base[self.source_index]), dim=0).shape[0]
        return "exact" if distinct <= max_exact_values else "nearest"

    @staticmethod
    def _value_keys(scaled_base: Tensor) -> Tensor:
        """Integer keys of base values, equal for values within the matching tolerance."""
        return torch.round(scaled_base.double() / _MATCH_TOL).long()

    def _index_exact_fibers(self) -> None:
        """Group the source rows by base value: values ``[V, d_B]``, members sorted by value."""
        keys = self._value_keys(self.scaled_base[self.source_index])
        _, value_of_row, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
        eligible = counts >= self.min_fiber_points
        if not bool(eligible.any()):
            raise InputError(
                f"no base value has {self.min_fiber_points} or more rows, so exact fibers are empty; "
                f"set data.fibers=nearest or lower data.min_fiber_points"
            )
        order = torch.argsort(value_of_row, stable=True)
        self._members = self.source_index[order]  # source rows grouped by value
        self._starts = torch.cumsum(counts, 0) - counts
        self._counts = counts
        first = self._members[self._starts]
        self.fiber_values = self.scaled_base[first]  # [V, d_B] scaled
        self._eligible = eligible
        self.eligible_rows = self.source_index[eligible[value_of_row]]
        dropped = int((~eligible).sum())
        if dropped:
            log.info(
                "exact fibers: %d of %d base values have fewer than %d rows and are left out",
                dropped,
                counts.numel(),
                self.min_fiber_points,
            )

    @property
    def fiber_base_points(self) -> Tensor:
        """The base values that have an exact fiber ``[V, d_B]`` (original units); exact rule only."""
        if self.fiber_rule != "exact":
            raise InputError("fiber_base_points exists only for data.fibers=exact")
        return self._to_original(self.fiber_values[self._eligible], "base")

    # ----------------------------------------------------------------- units
    def _to_original(self, points: Tensor, part: str) -> Tensor:
        offset, scale = (self.base_offset, self.base_scale) if part == "base" else (self.total_offset, self.total_scale)
        return (points.double() * scale + offset).to(points.dtype)

    def _to_scaled(self, points: Tensor, part: str) -> Tensor:
        offset, scale = (self.base_offset, self.base_scale) if part == "base" else (self.total_offset, self.total_scale)
        return ((points.double() - offset) / scale).to(points.dtype)

    # ----------------------------------------------------------------- Bundle API
    def sample_total(
        self, num_samples: int, generator: torch.Generator | None = None, units: Units = "original"
    ) -> BundleSamples:
        """Rows drawn uniformly with replacement from the rows that have a fiber (``fiber_source``)."""
        check_units(units)
        pick = torch.randint(self.eligible_rows.numel(), (int(num_samples),), generator=generator)
        rows = self.eligible_rows[pick]
        if units == "scaled":
            return BundleSamples(self.scaled_total[rows], self.scaled_base[rows])
        return BundleSamples(self.total[rows], self.base[rows])

    def sample_fiber(
        self, base: Tensor, num_samples: int, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """Empirical fiber points ``[B, num_samples, d_E]`` over ``base [B, d_B]`` (see the module docstring).

        Raises:
            InputError: with the exact rule, a base point that is not a value of the data with
                at least ``min_fiber_points`` rows.
        """
        check_units(units)
        base = self.check_base(base).to(torch.get_default_dtype())
        scaled = self._to_scaled(base, "base") if units == "original" else base
        if self.fiber_rule == "exact":
            rows = self._exact_fiber_rows(scaled, int(num_samples), generator)
        else:
            rows = self._nearest_fiber_rows(scaled, int(num_samples), generator)
        return self.total[rows] if units == "original" else self.scaled_total[rows]

    def sample_fiber_floor(
        self, base: Tensor, num_samples: int, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """With held-out fibers (``fiber_source=test``): the same fibers drawn from the training
        rows, real data independent of the held-out rows; base values with fewer than
        ``min_fiber_points`` training rows fall back to the held-out rows. Otherwise
        :meth:`sample_fiber` again."""
        if self.fiber_source != "test":
            return self.sample_fiber(base, num_samples, generator, units)
        if self._floor_twin is None:
            twin = copy.copy(self)
            twin.fiber_source, twin.source_index = "train", self.train_index
            if twin.fiber_rule == "exact":
                twin._index_exact_fibers()
            else:
                twin.eligible_rows = twin.source_index
            self._floor_twin = twin
        try:
            return self._floor_twin.sample_fiber(base, num_samples, generator, units)
        except InputError:
            log.debug("a base value has too few training rows for a floor fiber: drawing it from held-out rows")
            return self.sample_fiber(base, num_samples, generator, units)

    def fiber_rows(self, base: Tensor, units: Units = "original") -> list[Tensor]:
        """The rows that make up the empirical fiber over each of ``base [B, d_B]``: B index tensors
        (exact rule: every source row with that base value; nearest rule: the ``fiber_neighbours``
        nearest source rows, ties broken by row order)."""
        check_units(units)
        base = self.check_base(base).to(torch.get_default_dtype())
        scaled = self._to_scaled(base, "base") if units == "original" else base
        if self.fiber_rule == "exact":
            value = self._exact_values(scaled)
            return [self._members[self._starts[v] : self._starts[v] + self._counts[v]] for v in value.tolist()]
        dist = pairwise_distances(scaled, self.scaled_base[self.source_index])
        nearest = torch.sort(dist, dim=1, stable=True).indices[:, : self.fiber_neighbours]
        return list(self.source_index[nearest])

    def distance_to_fiber(
        self, total: Tensor, base: Tensor, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """Distance of ``total [B, n, d_E]`` to the nearest row of the empirical fiber over each of
        ``base [B, d_B]`` (:meth:`fiber_rows`): ``[B, n]``, both in ``units``."""
        table = self.total if check_units(units) == "original" else self.scaled_total
        rows = self.fiber_rows(base, units)
        return torch.stack([nearest_neighbour_distance(points, table[r].to(points)) for points, r in zip(total, rows)])

    def _exact_values(self, scaled_base: Tensor) -> Tensor:
        """Index of the exact fiber value of each scaled base point ``[B]``; raises for other points."""
        dist = pairwise_distances(scaled_base, self.fiber_values)  # [B, V]
        dist[:, ~self._eligible] = float("inf")
        nearest, value = dist.min(dim=1)
        bad = (nearest > _MATCH_TOL * math.sqrt(self.base_dim)).nonzero().squeeze(1)
        if bad.numel():
            i = int(bad[0])
            known = ", ".join(str([round(v, 6) for v in p]) for p in self.fiber_base_points.tolist()[:20])
            raise InputError(
                f"base point {self._to_original(scaled_base[i : i + 1], 'base')[0].tolist()} is not a value of "
                f"({', '.join(self.base_names)}) with at least {self.min_fiber_points} rows; exact fibers exist over {known}"
            )
        return value

    def _exact_fiber_rows(self, scaled_base: Tensor, num_samples: int, generator: torch.Generator | None) -> Tensor:
        value = self._exact_values(scaled_base)
        u = torch.rand(scaled_base.shape[0], num_samples, generator=generator)
        offset = (u * self._counts[value].unsqueeze(1)).long().clamp_max(self._counts[value].unsqueeze(1) - 1)
        return self._members[self._starts[value].unsqueeze(1) + offset]

    def _nearest_fiber_rows(self, scaled_base: Tensor, num_samples: int, generator: torch.Generator | None) -> Tensor:
        k = self.fiber_neighbours
        perm = torch.randperm(self.source_index.numel(), generator=generator)  # random tie-breaking
        candidates = self.source_index[perm]
        dist = pairwise_distances(scaled_base, self.scaled_base[candidates])  # [B, S]
        nearest = torch.sort(dist, dim=1, stable=True).indices[:, :k]  # [B, K]
        pick = torch.randint(k, (scaled_base.shape[0], num_samples), generator=generator)
        return candidates[nearest.gather(1, pick)]

    def fiber_scores(
        self, total: Tensor, base: Tensor, units: Units = "original", reference: Tensor | None = None
    ) -> dict[str, Tensor]:
        """How far generated rows ``total [B, n, d_E]`` over ``base [B, d_B]`` are from real ones,
        in scaled units, ``[B]`` each (:class:`~bundlenet.data.judge.TableJudge`, fitted on the
        held-out rows): ``forest_resimulation``, the re-simulation error ‖f(x̂) − y‖ judged by a
        random forest f, and ``nearest_row``, the median distance to the nearest row of the
        table. Real rows are judged as held-out ones, so a sample of real fibers scores the
        noise floors. ``resimulation``: with the table's true map π (``forward``), the mean
        ‖π(x̂) − y‖, also in scaled units. The forest's scores are left out when the test split
        holds fewer than 10 rows."""
        x = self._to_scaled(total, "total") if check_units(units) == "original" else total
        y = self._to_scaled(base, "base") if units == "original" else base
        scores: dict[str, Tensor] = {}
        if self._judge is None and TableJudge.usable(self.test_index.numel()):
            self._judge = TableJudge(
                self.scaled_total, self.scaled_total[self.test_index], self.scaled_base[self.test_index], seed=self.split_seed
            )
        if self._judge is not None:
            scores.update(forest_resimulation=self._judge.resimulation(x, y), nearest_row=self._judge.nearest_row(x))
        if self.forward is not None:  # the true map, resolved here: a bundle with a function in it would not pickle
            forward = torch_map(resolve_forward(self.forward, "data.forward"))
            flat = self._to_original(x.reshape(-1, self.total_dim).double(), "total")
            mapped = self._to_scaled(forward(flat).reshape(-1, self.base_dim).double(), "base").reshape(*x.shape[:-1], -1)
            scores["resimulation"] = (mapped - y.double().unsqueeze(1)).norm(dim=-1).mean(-1)
        return scores

    def project(self, total: Tensor, units: Units = "original") -> Tensor:
        """π on data: the base of the nearest row in scaled total space (the map is known only on rows)."""
        check_units(units)
        x = check_points(total, self.total_dim, "total-space point", self.total_names).to(torch.get_default_dtype())
        scaled = self._to_scaled(x, "total") if units == "original" else x
        rows = per_query(scaled, self.scaled_total, lambda d: d.argmin(dim=1), block=4096)
        return self.base[rows] if units == "original" else self.scaled_base[rows]
