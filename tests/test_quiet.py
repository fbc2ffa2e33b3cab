"""A first run is quiet: no warning about a default, warnings in the table's units, no
third-party noise (Python warnings, wandb lines under another logger, alembic's plugin lines)."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from bundlenet import BundleNet
from bundlenet.bundles import RobotArm
from bundlenet.data.tables import TabularDataModule
from bundlenet.data.tabular import TabularBundle
from tests.test_configs import compose_train, data_overrides, options, run_train

FAST_RUN = [
    "trainer.max_steps=5",
    "trainer.val_check_interval=5",
    "data.num_train=200",
    "evaluation.iterations=1",
    "evaluation.num_fibers=2",
    "evaluation.num_global=200",
    "evaluation.global_ot_points=null",
    "evaluation.coverage_points=200",
    "evaluation.plot_fibers=2",
    "~callbacks.progress_bar",
]
PYTHON_WARNING = re.compile(r"\.py:\d+: |Warning: ")  # a warnings.warn line (Lightning's format omits the category)


def setup_cases() -> list[list[str]]:
    cases = [[f"data={name}"] for name in options("data")]
    return [*cases, ["data=digits", "data.base=ink"]]


@pytest.mark.parametrize("overrides", setup_cases(), ids=lambda o: " ".join(o))
def test_data_and_cover_setup_at_default_settings_warn_about_nothing(
    overrides: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = overrides[0].split("=")[1]
    if name == "csv":  # a 2000-row table of a continuous bundle, as a user would bring
        table = tmp_path / "arm.csv"
        RobotArm().table(2000, seed=7).to_csv(table, index=False)
        extra = [f"data.path={table}", "data.base_columns=[hand_x,hand_y]"]
    else:
        extra = data_overrides(name, tmp_path)
    cfg = compose_train([*overrides, *extra], tmp_path)
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm = instantiate(cfg.data)
        dm.setup("fit")
        model = instantiate(cfg.model, spec=dm.spec)
        model.fit_data(*dm.train_tensors())
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, loud
    ours = [str(w.message) for w in caught if "bundlenet" in w.filename or issubclass(w.category, UserWarning)]
    assert not ours, ours
    assert any(r.getMessage().startswith("cover:") for r in caplog.records)  # the setup did run


def test_the_extrapolation_warning_speaks_the_tables_units(caplog: pytest.LogCaptureFixture) -> None:
    gen = torch.Generator().manual_seed(0)
    pressure = 110 + 20 * torch.rand(400, 1, generator=gen, dtype=torch.float64)  # dB, scaled to [0, 10] inside
    total = torch.cat(
        [
            pressure * 30 + torch.randn(400, 1, generator=gen, dtype=torch.float64),
            torch.rand(400, 1, generator=gen, dtype=torch.float64),
        ],
        dim=1,
    )
    bundle = TabularBundle(total, pressure, ["frequency", "angle"], ["sound pressure"], fibers="nearest")
    dm = TabularDataModule(bundle, num_val_fibers=2, val_fiber_points=20, fiber_circles=0, fiber_span=2)
    dm.setup("fit")
    model = BundleNet(dm.spec, num_nbhds=4, hidden_features=16, num_blocks=1, depth=1)
    model.fit_data(*dm.train_tensors())
    with caplog.at_level(logging.WARNING, logger="bundlenet"):
        model.sample_fiber([[100.0], [120.0]], 3, seed=0)
    far = [r.getMessage() for r in caplog.records if "extrapolated" in r.getMessage()]
    assert len(far) == 1, far  # 120 dB lies inside the data
    message = far[0]
    assert "base point 0 (sound pressure=100)" in message
    low, high = (f"{float(v):.4g}" for v in pressure.aminmax())
    assert f"training range: sound pressure {low} to {high}" in message
    assert re.search(r"nearest: sound pressure=1[12]\d", message), message


def test_a_fast_run_and_its_rerun_emit_no_warnings(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = run_train(*FAST_RUN, "logger=csv", f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_train(
        *FAST_RUN, "overwrite=true", f"hydra.run.dir={run}", cwd=tmp_path
    )  # the default logger (wandb, offline), same dir
    assert again.returncode == 0, again.stderr[-3000:]
    for proc in (first, again):
        lines = (proc.stdout + proc.stderr).splitlines()
        noisy = [line for line in lines if PYTHON_WARNING.search(line) or "weights_only" in line or "WARNING" in line]
        assert not noisy, noisy
    assert "wandb" not in first.stdout + first.stderr
    assert sum("wandb sync" in line for line in (again.stdout + again.stderr).splitlines()) == 1


def test_an_optuna_sweep_logs_no_alembic_plugin_lines(tmp_path: Path) -> None:
    proc = run_train(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        "logger=none",
        *FAST_RUN,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "Best value" in output and "setup plugin" not in output


def test_the_final_and_budget_checkpoints_state_what_they_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning logs "`weights_only` was not set" (once per rank under ddp) for a save that leaves it open."""
    import pytorch_lightning as pl

    from bundlenet.callbacks import BudgetCheckpoints, FinalCheckpoint
    from tests.conftest import make_torus_model

    model, dm = make_torus_model(num_train=100, hidden_features=16, num_blocks=1)
    budgets = BudgetCheckpoints(tmp_path, budgets=[1.5])
    budgets.clock = iter(range(100)).__next__  # a step takes 1 s
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=[FinalCheckpoint(tmp_path), budgets],
    )
    for name in ("pytorch_lightning", "lightning.pytorch"):  # Lightning's own handler may stop records short of caplog
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    with caplog.at_level(logging.INFO):
        trainer.fit(model, datamodule=dm)
    assert (tmp_path / "last.ckpt").is_file() and (tmp_path / "budget_1.5s.ckpt").is_file()
    assert not [r.getMessage() for r in caplog.records if "weights_only" in r.getMessage()]


def test_a_budget_passed_inside_one_longer_step_gets_no_checkpoint(tmp_path: Path) -> None:
    """Forest-Flow fits in one step: no model of 30 s existed, whatever the step's end says."""
    from bundlenet.callbacks import BudgetCheckpoints

    class Trainer:
        global_step = 1

        def __init__(self) -> None:
            self.saved: list[str] = []

        def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
            self.saved.append(Path(path).name)

    times = iter([0.0, 0.5, 100.0, 100.5, 130.0])  # start; a step of 0.5 s; one of 99.5 s; 0.5 s; 29.5 s
    budgets = BudgetCheckpoints(tmp_path, budgets=[0.25, 30, 60, 120, 300])
    budgets.clock = times.__next__
    trainer = Trainer()
    budgets.on_train_start(trainer, None)  # type: ignore[arg-type]
    for _ in range(4):
        budgets.on_train_batch_end(trainer, None)  # type: ignore[arg-type]
    # 0.25 s: after a 0.5 s step (longer than 0.25 s: skipped); 30 and 60 s inside the 99.5 s step;
    # 120 s reached by a 29.5 s step
    assert trainer.saved == ["budget_120s.ckpt"]
