"""The LightningDataModule: training points of a bundle, and true fibers for validation."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from bundlenet.bundles.base import Bundle, BundleSpec
from bundlenet.data.topology import MIN_TOPOLOGY_ROWS, estimate_fiber_topology
from bundlenet.errors import InputError
from bundlenet.geometry import wasserstein
from bundlenet.ranks import FirstRankLog

log = logging.getLogger(__name__)
first_rank = FirstRankLog(__name__)


class _Rows(Dataset):
    """Tensors indexed by a list of rows at once (one ``__getitem__`` per batch, no collation)."""

    def __init__(self, *tensors: Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, rows: list[int]) -> tuple[Tensor, ...]:
        index = torch.as_tensor(rows)
        return tuple(t[index] for t in self.tensors)


class _Single(Dataset):
    """A dataset of one ready-made batch."""

    def __init__(self, batch: tuple[Tensor, ...]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        return self.batch


class BundleDataModule(pl.LightningDataModule):
    """Points of a :class:`Bundle` for training, and true fibers for validation.

    Training batches are ``(total [b, d_E], base [b, d_B])``. ``batch_size="auto"`` takes the
    whole training set each step up to ``MAX_FULL_BATCH`` points and batches of that size beyond,
    and at most ``MAX_BATCH_VALUES`` numbers per batch (``MAX_BATCH_VALUES / d_E`` points, at
    least ``MIN_AUTO_BATCH``): a step of 64-pixel images costs what a step of a small table does;
    an epoch is ``steps_per_epoch`` shuffled batches (``"auto"``: one pass over the data). The
    validation batch holds ``num_val_fibers`` base points, ``val_fiber_points`` exact fiber points
    over each, and the W2 noise floor (W2 between two independent exact samples) of each fiber.

    The fiber's shape the models are told (:attr:`spec`) is the bundle's own unless
    ``fiber_circles`` or ``fiber_span`` is given: an integer, or ``"auto"`` to find it from the
    training points (:func:`bundlenet.data.topology.estimate_fiber_topology`, logged).

    Args:
        bundle: the bundle to sample.
        num_train: training points (the authors used 1000).
        batch_size: points per step, ``None`` for full batch, ``"auto"`` (see above).
        steps_per_epoch: batches per epoch, or ``"auto"``.
        num_val_fibers, val_fiber_points: validation fibers.
        seed: seed of the data (training points and validation fibers).
        num_workers: DataLoader workers.
        fiber_circles, fiber_span: the fiber's circle count and span (``None``: the bundle's).
    """

    MAX_FULL_BATCH = 2048
    MAX_BATCH_VALUES = 32768
    MIN_AUTO_BATCH = 256

    def __init__(
        self,
        bundle: Bundle,
        num_train: int = 1000,
        batch_size: int | str | None = "auto",
        steps_per_epoch: int | str = "auto",
        num_val_fibers: int = 4,
        val_fiber_points: int = 200,
        seed: int = 0,
        num_workers: int = 0,
        fiber_circles: int | str | None = None,
        fiber_span: int | str | None = None,
    ) -> None:
        super().__init__()
        if num_train < 2:
            raise InputError(f"data.num_train must be at least 2, got {num_train}")
        if batch_size not in (None, "auto") and (not isinstance(batch_size, int) or batch_size < 2):
            raise InputError(f"data.batch_size must be an integer >= 2, null (full batch) or auto; got {batch_size!r}")
        if steps_per_epoch != "auto" and (not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
            raise InputError(f"data.steps_per_epoch must be a positive integer or auto, got {steps_per_epoch!r}")
        for name, value in (("fiber_circles", fiber_circles), ("fiber_span", fiber_span)):
            if value not in (None, "auto") and (not isinstance(value, int) or value < (0 if name == "fiber_circles" else 1)):
                raise InputError(
                    f"data.{name} must be auto, null (the data set's own) or a "
                    f"{'non-negative' if name == 'fiber_circles' else 'positive'} integer; got {value!r}"
                )
        self.bundle = bundle
        self.num_train = int(num_train)
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.num_val_fibers = int(num_val_fibers)
        self.val_fiber_points = int(val_fiber_points)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.fiber_circles = fiber_circles
        self.fiber_span = fiber_span
        self.train: tuple[Tensor, Tensor] | None = None
        self.val: tuple[Tensor, Tensor, Tensor, Tensor] | None = None  # base, fibers, W2 floor, each point's own base
        self._spec: BundleSpec | None = None

    @property
    def spec(self) -> BundleSpec:
        """The bundle's spec, with the fiber's circle count and span as configured (found from
        the training points for ``auto``)."""
        if self._spec is None:
            spec = self.bundle.spec
            circles, span = self.fiber_circles, self.fiber_span
            # stated values the data cannot hold are refused, never capped
            dim = spec.total_dim
            if self.fiber_span not in (None, "auto") and int(self.fiber_span) > dim:
                raise InputError(
                    f"data.fiber_span={self.fiber_span} exceeds the {dim} total column(s) "
                    f"({', '.join(spec.total_names[:6])}): a fiber spreads in at most {dim} direction(s)"
                )
            if self.fiber_circles not in (None, "auto") and 2 * int(self.fiber_circles) > dim:
                raise InputError(
                    f"data.fiber_circles={self.fiber_circles} needs {2 * int(self.fiber_circles)} total columns "
                    f"(2 per circle), the data has {dim}; use data.fiber_circles <= {dim // 2} (or auto)"
                )
            if isinstance(circles, int) and isinstance(span, int) and 2 * circles > span:
                raise InputError(
                    f"data.fiber_circles={circles} needs data.fiber_span >= {2 * circles} (2 directions per circle), got {span}"
                )
            if "auto" in (circles, span):
                total, base = self.train_tensors()
                if total.shape[0] < MIN_TOPOLOGY_ROWS:
                    log.warning(
                        "%d training rows are too few to find the fiber's topology: assuming no circles and "
                        "a fiber in all %d directions (state data.fiber_circles and data.fiber_span to change it)",
                        total.shape[0],
                        total.shape[1],
                    )
                    found_circles, found_span = 0, total.shape[1]
                else:
                    found = estimate_fiber_topology(total, base, seed=self.seed)
                    first_rank.info(
                        "fiber topology found from the data: spans %d direction(s), %d circle(s) (median over %d neighbourhoods)",
                        found.span,
                        found.circles,
                        found.groups,
                    )
                    found_circles, found_span = found.circles, found.span
                circles = found_circles if circles == "auto" else circles
                span = found_span if span == "auto" else span
            self._spec = replace(
                spec,
                fiber_circles=spec.fiber_circles if circles is None else int(circles),
                fiber_span=spec.fiber_span if span is None else int(span),
            )
        return self._spec

    def spec_with_topology(self, span: int, circles: int) -> BundleSpec:
        """:attr:`spec` with another fiber span and circle count."""
        return replace(self.spec, fiber_span=int(span), fiber_circles=int(circles))

    def set_fiber_topology(self, span: int, circles: int) -> None:
        """Tell the models this fiber span and circle count from now on (the choice of
        :func:`bundlenet.selection.choose_topology`, or a resumed checkpoint's)."""
        self._spec = self.spec_with_topology(span, circles)

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        gen = torch.Generator().manual_seed(self.seed)
        samples = self.bundle.sample_total(self.num_train, gen)
        self.train = (samples.total, samples.base)
        val_base = self.bundle.sample_total(self.num_val_fibers, gen).base
        fibers = self.bundle.sample_fiber(val_base, self.val_fiber_points, gen)
        floor = wasserstein(fibers, self.bundle.sample_fiber(val_base, self.val_fiber_points, gen))
        self.val = (val_base, fibers, floor, val_base.unsqueeze(1).expand(-1, fibers.shape[1], -1))
        first_rank.info("data: %d training points; validation W2 noise floor %.4f", self.num_train, float(floor.mean()))

    def batching(self) -> tuple[int, int]:
        """``(batch size, steps per epoch)`` with ``auto`` resolved for the training set."""
        n = self.train_tensors()[0].shape[0]
        if self.batch_size is None:
            size = n
        elif self.batch_size == "auto":
            wide = max(self.MIN_AUTO_BATCH, self.MAX_BATCH_VALUES // self.bundle.total_dim)
            size = min(n, self.MAX_FULL_BATCH, wide)
        else:
            size = min(int(self.batch_size), n)
        steps = math.ceil(n / size) if self.steps_per_epoch == "auto" else int(self.steps_per_epoch)
        return size, steps

    def train_tensors(self) -> tuple[Tensor, Tensor]:
        """The training ``(total, base)`` tensors (used by models to fit their cover and scalers)."""
        self.setup("fit")
        assert self.train is not None
        return self.train

    def train_dataloader(self) -> DataLoader[Any]:
        total, base = self.train_tensors()
        size, steps = self.batching()
        gen = torch.Generator().manual_seed(self.seed + 1)
        sampler = RandomSampler(range(total.shape[0]), num_samples=size * steps, generator=gen)
        return DataLoader(
            _Rows(total, base),
            sampler=BatchSampler(sampler, size, drop_last=False),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader[Any]:
        self.setup("fit")
        assert self.val is not None
        return DataLoader(_Single(self.val), batch_size=None)
