"""The parameter average (:class:`bundlenet.callbacks.WeightAverage`) against the recursion it
implements, on a quadratic whose gradient-descent path is known in closed form."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from bundlenet.callbacks import WeightAverage, averaged_weights
from bundlenet.errors import InputError
from bundlenet.loggers import bare_trainer

TARGET, LR = 5.0, 0.1


class Quadratic(pl.LightningModule):
    """loss (w − 5)²: gradient descent from 0 gives w_t = 5 (1 − 0.8^t); validation records w."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.register_buffer("fitted", torch.tensor(True))  # buffers are not averaged (a bool would not average)
        self.validated: list[float] = []

    def training_step(self, batch: object, batch_idx: int) -> torch.Tensor:
        return ((self.w - TARGET) ** 2).sum()

    def validation_step(self, batch: object, batch_idx: int) -> None:
        self.validated.append(float(self.w[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.zeros(1000, 1), batch_size=1)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.zeros(1, 1), batch_size=1)


def _weights(steps: int, start: float = 0.0) -> list[float]:
    """w_0 … w_steps of gradient descent on (w − 5)² from ``start``."""
    return [TARGET + (start - TARGET) * (1 - 2 * LR) ** t for t in range(steps + 1)]


def _average(weights: list[float], decay: float, first_step: int = 0, start: float | None = None) -> float:
    """The documented recursion θ̄_t = β_t θ̄_{t−1} + (1 − β_t) θ_t, β_t = min(decay, (1 + t)/(10 + t))."""
    average = weights[0] if start is None else start
    for t, w in enumerate(weights[1:], start=first_step + 1):
        beta = min(decay, (1 + t) / (10 + t))
        average = beta * average + (1 - beta) * w
    return average


def _trainer(steps: int, callback: WeightAverage, every: int | None = None) -> pl.Trainer:
    """A quiet trainer, validating every ``every`` steps when given."""
    validation = {"limit_val_batches": 1.0, "val_check_interval": every} if every else {}
    return bare_trainer(max_steps=steps, callbacks=[callback], accelerator="cpu", **validation)


def test_the_module_ends_with_the_average_and_validation_scores_it() -> None:
    model, callback = Quadratic(), WeightAverage(decay=0.9)
    _trainer(40, callback, every=20).fit(model)
    weights = _weights(40)
    assert float(model.w[0].detach()) == pytest.approx(_average(weights, 0.9), rel=1e-12)
    assert model.validated == pytest.approx([_average(weights[:21], 0.9), _average(weights, 0.9)], rel=1e-12)
    assert bool(model.fitted)
    with averaged_weights(_trainer(1, WeightAverage()), model):  # a trainer without a started average: no change
        assert float(model.w[0].detach()) == pytest.approx(_average(weights, 0.9), rel=1e-12)


def test_a_checkpoint_holds_the_average_and_a_resumed_run_goes_on_from_the_training_weights(tmp_path: Path) -> None:
    model, callback = Quadratic(), WeightAverage(decay=0.9)
    trainer = _trainer(30, callback)
    trainer.fit(model)
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)
    weights = _weights(30)
    assert float(saved["state_dict"]["w"][0]) == pytest.approx(_average(weights, 0.9), rel=1e-12)
    assert float(saved[WeightAverage.KEY]["w"][0]) == pytest.approx(weights[-1], rel=1e-12)

    resumed, again = Quadratic(), WeightAverage(decay=0.9)
    _trainer(35, again).fit(resumed, ckpt_path=str(path))
    more = _weights(5, start=weights[-1])  # five more steps from the training weights, not from the average
    expected = _average(more, 0.9, first_step=30, start=_average(weights, 0.9))
    assert float(resumed.w[0].detach()) == pytest.approx(expected, rel=1e-12)
    assert float(again._other[0][0]) == pytest.approx(more[-1], rel=1e-12)  # type: ignore[index]


def test_decay_zero_keeps_the_current_weights_and_a_decay_of_one_is_refused() -> None:
    model = Quadratic()
    _trainer(10, WeightAverage(decay=0.0)).fit(model)
    assert float(model.w[0].detach()) == pytest.approx(_weights(10)[-1], rel=1e-12)
    with pytest.raises(InputError, match="decay"):
        WeightAverage(decay=1.0)


def test_a_bundlenet_run_with_the_average_reports_and_resumes(tmp_path: Path) -> None:
    """``callbacks=weight_average`` end to end: best.ckpt and last.ckpt hold averages, last.ckpt
    the training weights too, and the reported model is a loadable checkpoint."""
    from bundlenet.checkpoint import load_model
    from tests.test_final_model import _run

    out, metrics = _run(tmp_path, ["callbacks=weight_average"])
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert WeightAverage.KEY in last
    name = next(iter(last[WeightAverage.KEY]))
    assert not torch.equal(last["state_dict"][name], last[WeightAverage.KEY][name])  # the average is not the last step
    model = load_model(out / "checkpoints" / Path(metrics["checkpoint"]).name)
    assert model.sample(10).isfinite().all()
