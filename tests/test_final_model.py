"""The model a run reports (``final_model``): at the default ``auto``, a model with a held-out
likelihood reports the lower held-out ``val/selection`` of ``best.ckpt`` and the last step, and
``best.ckpt`` holds it; the others report the last step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bundlenet.checkpoint import checkpoint_step, load_model, read_checkpoint
from tests.test_configs import LIGHT_EVALUATION, compose_train

SHORT = ["data.num_train=300", "model.hidden_features=16", "trainer.max_steps=60", "trainer.val_check_interval=20"]


def _run(tmp_path: Path, overrides: list[str]) -> tuple[Path, dict]:
    from bundlenet.cli.train import train

    out = tmp_path / "run"
    metrics = train(compose_train([*SHORT, *LIGHT_EVALUATION, *overrides], out))
    return out, metrics


def _held_out(path: Path, out: Path) -> float:
    """``val/selection`` of a checkpoint on the run's validation points, rebuilt from its config."""
    import hydra
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(out / "config.yaml")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    return load_model(path).held_out_selection(datamodule.val_dataloader())


def test_the_reported_bundlenet_is_the_best_held_out_of_the_validated_and_last_steps(tmp_path: Path) -> None:
    out, metrics = _run(tmp_path, ["trainer.max_steps=50"])  # the last step (50) is not a validation step
    best, last = out / "checkpoints" / "best.ckpt", out / "checkpoints" / "last.ckpt"
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert metrics["checkpoint"] == str(best) == evaluation["checkpoint"]
    assert metrics["checkpoint_step"] == checkpoint_step(best) == evaluation["checkpoint_step"]
    assert metrics["steps"] == checkpoint_step(last) == 50
    # best.ckpt is at least as good on the held-out points as the last step, whichever step it is
    assert _held_out(best, out) <= _held_out(last, out) + 1e-6
    if checkpoint_step(best) == 50:  # the last step won: best.ckpt is its copy
        assert best.read_bytes() == last.read_bytes()


def test_held_out_selection_is_the_logged_validation_criterion(tmp_path: Path) -> None:
    """Scored again after training, the best checkpoint's criterion is the value Lightning logged
    for it (the same points, the same fixed padding noise)."""
    out, _ = _run(tmp_path, [])
    best = out / "checkpoints" / "best.ckpt"
    state = read_checkpoint(best)["callbacks"]
    logged = next(float(v["best_model_score"]) for k, v in state.items() if k.startswith("ModelCheckpoint"))
    assert checkpoint_step(best) % 20 == 0  # 60 steps, a validation every 20: the last step is validated too
    assert _held_out(best, out) == pytest.approx(logged, abs=1e-4)


def test_the_returned_model_holds_the_reported_weights(tmp_path: Path) -> None:
    from bundlenet.training import run_training

    model, metrics = run_training(compose_train([*SHORT, *LIGHT_EVALUATION, "trainer.max_steps=50"], tmp_path / "run"))
    saved = read_checkpoint(metrics["checkpoint"])["state_dict"]
    for name, value in model.state_dict().items():
        assert torch.equal(value.cpu(), saved[name].cpu()), name


@pytest.mark.parametrize(
    ("overrides", "name"),
    [(["final_model=last"], "last.ckpt"), (["model=cfm"], "last.ckpt"), (["model=cflow"], "best.ckpt")],
)
def test_final_model_last_and_models_without_a_likelihood_report_the_last_step(
    tmp_path: Path, overrides: list[str], name: str
) -> None:
    out, metrics = _run(tmp_path, ["trainer.max_steps=50", *overrides])
    assert Path(metrics["checkpoint"]) == out / "checkpoints" / name
    if name == "last.ckpt":
        assert metrics["checkpoint_step"] == metrics["steps"] == 50


def test_restore_best_keeps_the_weights_that_score_lower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Routing of :func:`~bundlenet.training.restore_best` with the scores fixed: a better last
    step is copied over best.ckpt; a worse one gives way to best.ckpt's weights."""
    from bundlenet.models.base import BundleModel
    from bundlenet.training import restore_best

    out, _ = _run(tmp_path, ["trainer.max_steps=50", "final_model=last"])
    best, last = out / "checkpoints" / "best.ckpt", out / "checkpoints" / "last.ckpt"
    assert checkpoint_step(best) != checkpoint_step(last)

    class Trainer:
        checkpoint_callback = type("CB", (), {"best_model_path": str(best)})()

    class Data:
        def val_dataloader(self) -> list:
            return []

    for last_wins in (False, True):
        model = load_model(last)
        scores = iter([0.0, 1.0] if last_wins else [1.0, 0.0])  # the last step is scored first
        monkeypatch.setattr(BundleModel, "held_out_selection", lambda self, batches, scores=scores: next(scores))
        before = best.read_bytes()
        assert restore_best(Trainer(), model, Data(), last) == best  # type: ignore[arg-type]
        expected = read_checkpoint(last if last_wins else best)["state_dict"]
        assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
        assert best.read_bytes() == (last.read_bytes() if last_wins else before)


def test_early_stopping_ends_the_run_once_the_held_out_likelihood_stops_improving(tmp_path: Path) -> None:
    """``callbacks=early_stopping``: with an improvement of 10⁶ nats required, the second
    validation (step 40) cannot improve on the first, and with a patience of 1 training stops
    there; the run still reports the best held-out model."""
    out, metrics = _run(
        tmp_path,
        ["callbacks=early_stopping", "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1e6"],
    )
    assert metrics["steps"] == 40 and checkpoint_step(out / "checkpoints" / "last.ckpt") == 40
    assert metrics["checkpoint"] == str(out / "checkpoints" / "best.ckpt")
