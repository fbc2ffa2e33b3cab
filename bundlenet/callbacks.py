"""Lightning callbacks of bundlenet."""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import Tensor

from bundlenet.errors import DivergenceError, InputError
from bundlenet.io import copy_file

log = logging.getLogger(__name__)


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

    def state_dict(self) -> dict[str, Any]:
        """The history so far, saved in every checkpoint: a resumed run's curves start at step 0."""
        return {"history": {name: [list(p) for p in points] for name, points in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = defaultdict(
            list, {name: [(int(s), float(v)) for s, v in points] for name, points in state_dict.get("history", {}).items()}
        )


class DivergenceGuard(pl.Callback):
    """Stops training at the first step whose loss is non-finite or larger than ``max_loss`` in
    magnitude (a diverged run: its samples are garbage, and every later step only spreads the
    NaN or inf), with a one-line :class:`~bundlenet.errors.DivergenceError` naming the step, the
    value and the options to change. The loss is the training step's (``train/*loss*`` scalars
    for models that optimise manually, e.g. the GANs). No checkpoint of the diverged weights is
    written."""

    def __init__(self, max_loss: float = 1e8) -> None:
        if not (isinstance(max_loss, (int, float)) and max_loss > 0):
            raise InputError(f"callbacks.divergence.max_loss must be a positive number, got {max_loss!r}")
        self.max_loss = float(max_loss)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: object) -> None:
        losses: dict[str, float] = {}
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            losses["train/loss"] = float(loss.detach())
        else:
            losses.update(
                {
                    k: float(v)
                    for k, v in trainer.callback_metrics.items()
                    if k.startswith("train/") and "loss" in k and v.numel() == 1
                }
            )
        for name, value in losses.items():
            if not math.isfinite(value) or abs(value) > self.max_loss:
                raise DivergenceError(
                    f"training diverged at step {trainer.global_step}: {name} = {value:.3g} (non-finite or beyond "
                    f"callbacks.divergence.max_loss={self.max_loss:g}); lower model.optimizer.lr or set "
                    f"trainer.gradient_clip_val, then train again"
                )


class FinalCheckpoint(pl.Callback):
    """Writes ``dirpath/filename.ckpt`` with the final weights whenever training ends: at
    ``max_steps``/``max_epochs``, at ``max_time``, on early stopping, on Ctrl-C
    (``KeyboardInterrupt``) and on SIGTERM (a batch scheduler's preemption). Lightning's :class:`~pytorch_lightning.callbacks.ModelCheckpoint`
    saves ``last.ckpt`` only at validation or epoch ends, so a run that stops between them (or a
    resumed one) would leave an older step on disk.

    The write goes through the trainer's checkpoint writer (atomic: a failed save keeps the
    previous file), once per run: a :class:`~pytorch_lightning.callbacks.ModelCheckpoint` whose
    ``last.ckpt`` is this file is told that it is saved, so it does not write it again.

    Attributes:
        interrupted: ``"SIGTERM"`` or ``"SIGINT"`` when training stopped on that signal, else ``None``.
        saved_step: the step of the last save by this callback (``None`` before one).
    """

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.interrupted: str | None = None
        self.saved_step: int | None = None

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:  # type: ignore[attr-defined]  # Lightning sets fast_dev_run at run time
            return
        for cb in trainer.checkpoint_callbacks:  # already saved at this step by ModelCheckpoint
            last = getattr(cb, "last_model_path", "")
            if last and Path(last) == self.path and getattr(cb, "_last_global_step_saved", -1) == trainer.global_step:
                return
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole state: a run resumes from it
        self.saved_step = trainer.global_step
        for cb in trainer.checkpoint_callbacks:  # the same file: ModelCheckpoint's end-of-training save is done
            if getattr(cb, "save_last", False) and Path(getattr(cb, "dirpath", "") or "", "last.ckpt") == self.path:
                cb._last_checkpoint_saved = str(self.path)  # type: ignore[attr-defined]  # ModelCheckpoint: its last save
                cb._last_global_step_saved = trainer.global_step  # type: ignore[attr-defined]
                cb.last_model_path = str(self.path)  # type: ignore[attr-defined]
        log.info("final checkpoint (step %d): %s", trainer.global_step, self.path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.interrupted = "SIGTERM" if isinstance(exception, SIGTERMException) else "SIGINT"
            if trainer.global_step > 0:
                log.info("interrupted at step %d (%s): saving the weights", trainer.global_step, self.interrupted)
                self._save(trainer)


class BudgetCheckpoints(pl.Callback):
    """Saves ``dirpath/budget_{s}s.ckpt`` the first time the training time (wall clock since the
    first batch, validation included) reaches each of ``budgets`` seconds: one run yields the
    model a shorter ``trainer.max_time`` would have stopped at, for quality-against-time curves.
    A budget the run never reaches gets no file (the final checkpoint is the model at that
    budget then), and neither does a budget passed by one step that alone took longer than the
    budget (Forest-Flow's single fitting step): no model of that training time existed.

    With ``keep_best`` (set by the training job where the run reports its best held-out model,
    ``final_model``), a budget's file is the model such a shorter run would report: the current
    weights, or ``best.ckpt`` where its ``val/selection`` is lower than the current weights'
    (scored on the validation points at that moment).
    """

    def __init__(self, dirpath: str | Path, budgets: list[float] | tuple[float, ...] = (30, 60, 120, 300)) -> None:
        self.dirpath = Path(dirpath)
        self.budgets = sorted(float(b) for b in budgets)
        self.keep_best = False
        self._start: float | None = None
        self._last = 0.0
        self._next = 0
        self.clock = time.monotonic  # seconds; replaceable in tests

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._last, self._next = self.clock(), 0.0, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if self._start is None or self._next >= len(self.budgets):
            return
        elapsed = self.clock() - self._start
        step, self._last = elapsed - self._last, elapsed
        while self._next < len(self.budgets) and elapsed >= self.budgets[self._next]:
            budget = self.budgets[self._next]
            self._next += 1
            if step > budget:
                log.info("budget %gs passed inside one step of %.0f s: no checkpoint for it", budget, step)
                continue
            path = self.dirpath / f"budget_{budget:g}s.ckpt"
            best = self._better_best(trainer, pl_module) if self.keep_best else None
            if best is None:
                trainer.save_checkpoint(path, weights_only=False)
                log.info("budget %gs reached at step %d", budget, trainer.global_step)
            else:
                if trainer.is_global_zero:
                    copy_file(best, path)
                log.info("budget %gs reached at step %d: its model is best.ckpt", budget, trainer.global_step)

    @staticmethod
    def _better_best(trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        """``best.ckpt`` where its held-out ``val/selection`` is lower than the current weights',
        else ``None``."""
        path = best_checkpoint(trainer)
        score = getattr(trainer.checkpoint_callback, "best_model_score", None)
        if path is None or score is None:
            return None
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not getattr(pl_module, "selects_by_likelihood", False):
            return path  # no criterion to score the current weights with: the validated best
        with averaged_weights(trainer, pl_module):  # the weights this step's checkpoint holds
            current = pl_module.held_out_selection(datamodule.val_dataloader())  # type: ignore[operator]  # a BundleModel
        return path if float(score) < current else None


class WeightAverage(pl.Callback):
    r"""An exponential moving average of the parameters: the weights a run validates, saves in
    its checkpoints and ends with.

    After optimizer step t (θ̄ starts at the weights training starts from),

    .. math::
        \bar θ_t = β_t\, \bar θ_{t-1} + (1 - β_t)\, θ_t, \qquad β_t = \min\big(\text{decay},\ (1 + t) / (10 + t)\big),

    so the average spans about the last tenth of the steps early on and about 1 / (1 − decay)
    steps at most (Polyak & Juditsky, *Acceleration of stochastic approximation by averaging*,
    1992; the warm-up of β is that of TensorFlow's ``ExponentialMovingAverage(num_updates=t)``).
    The average is what validation scores (``val/selection``, hence ``best.ckpt``), what every
    checkpoint's ``state_dict`` holds (a model loaded from a checkpoint is the average), what the
    budget checkpoints compare, and the module's weights when training ends. The optimizer's own
    weights travel in the checkpoint under ``training_weights``, so a resumed run goes on from
    them. Buffers (the cover, frames and scalers fitted from the data) are not averaged.

    Args:
        decay: the largest β (0 ≤ decay < 1; 0 keeps the current weights).
    """

    KEY = "training_weights"

    def __init__(self, decay: float = 0.999) -> None:
        if not (math.isfinite(decay) and 0.0 <= decay < 1.0):
            raise InputError(f"callbacks.weight_average.decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self._other: list[Tensor] | None = None  # the weights not in the module: the average, or while swapped the training ones
        self._swapped = False
        self._resumed: dict[str, Tensor] | None = None
        self._updated = -1
        self._ended = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed module holds the saved average (its state_dict); the training weights come from the checkpoint
        self._other = [p.detach().clone() for p in pl_module.parameters()]
        self._swapped = self._ended = False
        if self._resumed is not None:
            named = dict(pl_module.named_parameters())
            with torch.no_grad():
                for name, value in self._resumed.items():
                    named[name].copy_(value)
            self._resumed = None
        self._updated = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        t = trainer.global_step
        if self._other is None or self._swapped or t == self._updated:
            return
        self._updated = t
        beta = min(self.decay, (1.0 + t) / (10.0 + t))
        with torch.no_grad():
            for average, weight in zip(self._other, pl_module.parameters()):
                average.lerp_(weight.detach(), 1.0 - beta)

    def _swap(self, pl_module: pl.LightningModule) -> None:
        assert self._other is not None
        with torch.no_grad():
            for other, weight in zip(self._other, pl_module.parameters()):
                held = weight.detach().clone()
                weight.copy_(other)
                other.copy_(held)
        self._swapped = not self._swapped

    @contextmanager
    def averaged(self, pl_module: pl.LightningModule) -> Iterator[None]:
        """The average in the module's parameters while the block runs (nothing before training)."""
        if self._other is None or self._swapped:
            yield
            return
        self._swap(pl_module)
        try:
            yield
        finally:
            self._swap(pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._other is not None and not self._swapped and not trainer.sanity_checking:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._other is not None and self._swapped and not self._ended:
            self._swap(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._other is not None and not self._swapped:
            self._swap(pl_module)  # the module ends with the average; the training weights stay here for last.ckpt
        self._ended = True

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._other is None:
            return
        names = [name for name, _ in pl_module.named_parameters()]
        weights = [p.detach() for p in pl_module.parameters()]
        average, training = (weights, self._other) if self._swapped else (self._other, weights)
        state = checkpoint["state_dict"]
        for name, value in zip(names, average):
            state[name] = value.clone()
        checkpoint[self.KEY] = {name: value.clone() for name, value in zip(names, training)}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._resumed = checkpoint.get(self.KEY)


def averaged_weights(trainer: pl.Trainer, pl_module: pl.LightningModule) -> AbstractContextManager[None]:
    """The trainer's :class:`WeightAverage` in the module while the block runs (no change without one)."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # the trainer's callback list
        if isinstance(callback, WeightAverage):
            return callback.averaged(pl_module)
    return nullcontext()


def best_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The file of the trainer's :class:`~pytorch_lightning.callbacks.ModelCheckpoint` with the
    lowest monitored value so far (``best.ckpt``), or ``None`` before its first save."""
    path = Path(str(getattr(trainer.checkpoint_callback, "best_model_path", "") or ""))
    return path if path.name and path.is_file() else None


class PlainProgress(pl.Callback):
    """Progress for a log file (stdout not a terminal: SLURM logs, ``> run.log``): one plain
    line at most every ``every_s`` seconds, and one per validation, instead of progress-bar
    frames."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = float(every_s)
        self._start = self._last = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.monotonic()

    def _line(self, trainer: pl.Trainer, prefix: str) -> None:
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        shown = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix) and v.numel() == 1}
        values = " ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items()))
        steps = f"step {trainer.global_step}" + (f"/{total}" if total else "")
        log.info("%s (%.0f s) %s", steps, time.monotonic() - self._start, values)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line(trainer, "train/")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._line(trainer, "val/")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._line(trainer, "train/")


class FitToTime(pl.Callback):
    """Fits the run's length to a time budget: training ends after about ``seconds`` of wall
    clock (validation included), with its learning-rate schedule annealed over exactly that span.

    Every ``check_every`` steps, the steps still to go are re-estimated from the pace so far,

    .. math::
        T = t + \\max\\Bigl(1, \\Bigl\\lfloor \\frac{m\\,s - e}{e / (t - t_0)} \\Bigr\\rfloor\\Bigr),

    at step t (t₀ where this process started, e seconds since then, s = ``seconds``,
    m = ``margin``), and set as the trainer's ``max_steps`` and as the ``total_steps`` of every
    schedule that has one (:class:`~bundlenet.optim.WarmupCosine`), keeping each schedule's
    ratio to ``max_steps``. A model that takes twice as long per step so trains half as many
    steps, each to the end of its own schedule, instead of stopping at a fixed step count (or at
    ``trainer.max_time`` with its rate not yet decayed). Keep ``trainer.max_time`` as a hard stop.
    """

    def __init__(self, seconds: float, check_every: int = 100, margin: float = 0.98) -> None:
        if not seconds > 0 or check_every < 1 or not 0 < margin <= 1:
            raise ValueError("FitToTime needs seconds > 0, check_every >= 1 and 0 < margin <= 1")
        self.seconds, self.check_every, self.margin = float(seconds), int(check_every), float(margin)
        self._start = 0.0
        self._first_step = 0
        self._ratios: list[tuple[object, float]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._first_step = time.monotonic(), trainer.global_step
        max_steps = max(1, trainer.max_steps)
        self._ratios = [
            (fn, fn.total_steps / max_steps)
            for config in trainer.lr_scheduler_configs
            for fn in getattr(config.scheduler, "lr_lambdas", [])
            if hasattr(fn, "total_steps")
        ]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        done = trainer.global_step - self._first_step
        if done <= 0 or done % self.check_every:
            return
        elapsed = time.monotonic() - self._start
        total = trainer.global_step + max(1, int((self.margin * self.seconds - elapsed) / (elapsed / done)))
        trainer.fit_loop.epoch_loop.max_steps = total
        for fn, ratio in self._ratios:
            fn.total_steps = max(1, round(total * ratio))  # type: ignore[attr-defined]  # checked in on_train_start
        log.debug("step %d after %.1f s: training to step %d", trainer.global_step, elapsed, total)
