"""Lightning callbacks of bundlenet."""

from __future__ import annotations

from collections import defaultdict

import pytorch_lightning as pl


class MetricHistory(pl.Callback):
    """Keeps the logged ``train/*`` and ``val/*`` scalars after every epoch, for the loss-curve
    figure (independent of which logger is configured).

    Attributes:
        history: metric name → list of ``(step, value)``.
    """

    def __init__(self, every_n_epochs: int = 10) -> None:
        self.every_n_epochs = every_n_epochs
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._seen_val: set[tuple[str, int]] = set()

    def _record(self, trainer: pl.Trainer, prefix: str) -> None:
        for name, value in trainer.callback_metrics.items():
            if name.startswith(prefix) and value.numel() == 1:
                self.history[name].append((trainer.global_step, float(value)))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch % self.every_n_epochs == 0:
            self._record(trainer, "train/")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "val/")
