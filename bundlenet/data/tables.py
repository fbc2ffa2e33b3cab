"""The datamodule of tables (wine, airfoil, any CSV): the fixed training split, empirical fibers.

:class:`TabularDataModule` shares the loaders of :class:`~bundlenet.data.datamodule.BundleDataModule`;
only where the points come from differs: training points are the rows of the table's seeded
training split (scaled units), validation fibers are the table's empirical fibers. The
functions :func:`wine_data`, :func:`airfoil_data` and :func:`csv_data` are the Hydra targets of
``conf/data/{wine,airfoil,csv}.yaml``; their keys are the datamodule's options plus the
table's (``root``/``path``, columns, scaling, split, fiber rule). :func:`digits_data` is that of
``conf/data/digits.yaml`` (images, :mod:`bundlenet.data.images`).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch

from bundlenet.data.csv_table import ExtremePolicy, NanPolicy, csv_bundle
from bundlenet.data.datamodule import BundleDataModule
from bundlenet.data.images import DigitsBase, DigitsBundle
from bundlenet.data.tabular import TabularBundle
from bundlenet.data.uci import airfoil, wine
from bundlenet.errors import InputError
from bundlenet.geometry import wasserstein

log = logging.getLogger(__name__)


class TabularDataModule(BundleDataModule):
    """Training rows and validation fibers of a :class:`TabularBundle`.

    Args:
        bundle: the table.
        num_train: ``None`` for every row of the training split, or a seeded subset of that many.
        batch_size: rows per step: ``None`` for the whole split, ``"auto"`` (as
            :class:`~bundlenet.data.datamodule.BundleDataModule`), or a number.
        steps_per_epoch: batches per epoch, or ``"auto"`` (one pass over the training rows).
        num_val_fibers: validation fibers.
        val_fiber_points: points per validation fiber.
        seed: seed of the training subset and of the validation fibers.
        num_workers: DataLoader workers.
        fiber_circles: the fiber's circle count: ``None`` (the table's), ``"auto"`` (found from
            the training rows, :func:`~bundlenet.data.topology.estimate_fiber_topology`) or a number.
        fiber_span: the directions a fiber spreads in: ``None``, ``"auto"`` or a number, as
            ``fiber_circles``.

    Everything handed to the model is in scaled units.
    """

    bundle: TabularBundle

    def __init__(
        self,
        bundle: TabularBundle,
        num_train: int | None = None,
        batch_size: int | str | None = "auto",
        steps_per_epoch: int | str = "auto",
        num_val_fibers: int = 4,
        val_fiber_points: int = 200,
        seed: int = 0,
        num_workers: int = 0,
        fiber_circles: int | str | None = None,
        fiber_span: int | str | None = None,
    ) -> None:
        available = bundle.train_index.numel()
        if num_train is not None and not 2 <= int(num_train) <= available:
            raise InputError(
                f"data.num_train={num_train} must be between 2 and the {available} rows of the "
                f"training split (or null for all of them)"
            )
        super().__init__(
            bundle,
            available if num_train is None else int(num_train),
            batch_size,
            steps_per_epoch,
            num_val_fibers,
            val_fiber_points,
            seed,
            num_workers,
            fiber_circles,
            fiber_span,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        gen = torch.Generator().manual_seed(self.seed)
        total, base = self.bundle.train_tensors()
        if self.num_train < total.shape[0]:
            keep = torch.randperm(total.shape[0], generator=gen)[: self.num_train].sort().values
            total, base = total[keep], base[keep]
        self.train = (total, base)
        val_base = self.bundle.sample_total(self.num_val_fibers, gen, units="scaled").base
        fibers = self.bundle.sample_fiber(val_base, self.val_fiber_points, gen, units="scaled")
        other = self.bundle.sample_fiber_floor(val_base, self.val_fiber_points, gen, units="scaled")
        floor = wasserstein(fibers, other)
        # each validation row over its own base value (a "nearest" fiber holds rows of nearby values)
        own = self.bundle.project(fibers.reshape(-1, fibers.shape[-1]), units="scaled").reshape(*fibers.shape[:2], -1)
        self.val = (val_base, fibers, floor, own)
        scaling = getattr(self.bundle, "scaling", "none")
        units = "" if scaling == "none" else f" (columns scaled by data.scaling={scaling}, as val/fiber_w2)"
        log.info("data: %d training rows; validation W2 noise floor %.4f%s", self.num_train, float(floor.mean()), units)


_MODULE_OPTIONS = set(inspect.signature(TabularDataModule.__init__).parameters) - {"self", "bundle"}


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options of the table vs options of the datamodule."""
    module = {k: v for k, v in options.items() if k in _MODULE_OPTIONS}
    table = {k: v for k, v in options.items() if k not in _MODULE_OPTIONS}
    return table, module


def wine_data(root: str | Path | None = None, download: bool = True, **options: Any) -> TabularDataModule:
    """``data=wine``: :func:`bundlenet.data.uci.wine` in a :class:`TabularDataModule`."""
    table, module = _split(options)
    return TabularDataModule(wine(root, download, **table), **module)


def airfoil_data(root: str | Path | None = None, download: bool = True, **options: Any) -> TabularDataModule:
    """``data=airfoil``: :func:`bundlenet.data.uci.airfoil` in a :class:`TabularDataModule`."""
    table, module = _split(options)
    return TabularDataModule(airfoil(root, download, **table), **module)


def csv_data(
    path: str | Path,
    base_columns: Any,
    total_columns: Any = None,
    nan_policy: NanPolicy = "error",
    extreme_values: ExtremePolicy = "error",
    **options: Any,
) -> TabularDataModule:
    """``data=csv``: :func:`bundlenet.data.csv_table.csv_bundle` in a :class:`TabularDataModule`."""
    table, module = _split(options)
    return TabularDataModule(csv_bundle(path, base_columns, total_columns, nan_policy, extreme_values, **table), **module)


def digits_data(base: DigitsBase = "label", **options: Any) -> TabularDataModule:
    """``data=digits``: :class:`bundlenet.data.images.DigitsBundle` in a :class:`TabularDataModule`."""
    table, module = _split(options)
    return TabularDataModule(DigitsBundle(base, **table), **module)
