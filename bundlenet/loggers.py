"""Loggers of bundlenet: Lightning's, without the noise a user cannot act on; and a Lightning
trainer without any of them, for short fits."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger as _WandbLogger


class WandbLogger(_WandbLogger):
    """Lightning's :class:`~pytorch_lightning.loggers.WandbLogger` (offline by default in
    ``conf/logger/wandb.yaml``). Lightning hands wandb an ``anonymous`` setting that wandb
    ignores and warns about on every run; it is left out here."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


_LIGHTNING_NOISE = (
    "💡 Tip",
    "GPU available: False",
    "TPU available: False",
    "HPU available: False",
    "`weights_only` was not set",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_LIGHTNING_NOISE)


def quiet_lightning() -> None:
    """Drop Lightning's lines a user cannot act on (the litlogger tips; "GPU/TPU/HPU available:
    False" on a CPU machine; the default of ``weights_only`` when it reloads the best weights).
    Its warnings and real information stay."""
    for name in (
        "pytorch_lightning.utilities.rank_zero",
        "lightning.pytorch.utilities.rank_zero",
        "lightning_fabric.utilities.rank_zero",
        "pytorch_lightning.trainer.connectors.checkpoint_connector",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


def bare_trainer(**options: Any) -> pl.Trainer:
    """A Lightning :class:`~pytorch_lightning.Trainer` that only optimises: no logger, checkpoints,
    progress bar, model summary or validation (short fits: the topology check of
    :mod:`bundlenet.selection`, the benchmark's timed steps). ``options`` are the Trainer's, and
    override those defaults."""
    bare: dict[str, Any] = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**bare, **options})
