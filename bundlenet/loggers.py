"""Loggers of bundlenet: Lightning's, without the noise a user cannot act on."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import WandbLogger as _WandbLogger


class WandbLogger(_WandbLogger):
    """Lightning's :class:`~pytorch_lightning.loggers.WandbLogger` (offline by default in
    ``conf/logger/wandb.yaml``). Lightning hands wandb an ``anonymous`` setting that wandb
    ignores and warns about on every run; it is left out here."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
