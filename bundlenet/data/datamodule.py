"""The LightningDataModule: training points of a bundle, and true fibers for validation."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from bundlenet.bundles.base import Bundle, BundleSpec
from bundlenet.errors import InputError
from bundlenet.metrics import wasserstein

log = logging.getLogger(__name__)
rank_zero_info = rank_zero_only(log.info)


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

    Training batches are ``(total [b, d_E], base [b, d_B])``; ``batch_size=None`` uses the
    whole training set each step (the default for the small synthetic sets). An epoch is
    ``steps_per_epoch`` shuffled batches. The validation batch holds ``num_val_fibers`` base
    points, ``val_fiber_points`` exact fiber points over each, and the W2 noise floor (W2
    between two independent exact samples) of each fiber.

    Args:
        bundle: the bundle to sample.
        num_train: training points (the authors used 1000).
        batch_size: points per step, ``None`` for full batch.
        steps_per_epoch: batches per epoch.
        num_val_fibers, val_fiber_points: validation fibers.
        seed: seed of the data (training points and validation fibers).
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        bundle: Bundle,
        num_train: int = 1000,
        batch_size: int | None = None,
        steps_per_epoch: int = 1,
        num_val_fibers: int = 4,
        val_fiber_points: int = 200,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if num_train < 2:
            raise InputError(f"data.num_train must be at least 2, got {num_train}")
        if batch_size is not None and batch_size < 2:
            raise InputError(f"data.batch_size must be at least 2 (or null for full batch), got {batch_size}")
        self.bundle = bundle
        self.num_train = int(num_train)
        self.batch_size = batch_size
        self.steps_per_epoch = int(steps_per_epoch)
        self.num_val_fibers = int(num_val_fibers)
        self.val_fiber_points = int(val_fiber_points)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.train: tuple[Tensor, Tensor] | None = None
        self.val: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def spec(self) -> BundleSpec:
        return self.bundle.spec

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        gen = torch.Generator().manual_seed(self.seed)
        samples = self.bundle.sample_total(self.num_train, gen)
        self.train = (samples.total, samples.base)
        val_base = self.bundle.sample_total(self.num_val_fibers, gen).base
        fibers = self.bundle.sample_fiber(val_base, self.val_fiber_points, gen)
        floor = wasserstein(fibers, self.bundle.sample_fiber(val_base, self.val_fiber_points, gen))
        self.val = (val_base, fibers, floor)
        rank_zero_info("data: %d training points; validation W2 noise floor %.4f", self.num_train, float(floor.mean()))

    def train_tensors(self) -> tuple[Tensor, Tensor]:
        """The training ``(total, base)`` tensors (used by models to fit their cover and scalers)."""
        self.setup("fit")
        assert self.train is not None
        return self.train

    def train_dataloader(self) -> DataLoader[Any]:
        total, base = self.train_tensors()
        size = total.shape[0] if self.batch_size is None else min(self.batch_size, total.shape[0])
        gen = torch.Generator().manual_seed(self.seed + 1)
        sampler = RandomSampler(range(total.shape[0]), num_samples=size * self.steps_per_epoch, generator=gen)
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
