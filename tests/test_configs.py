"""The real configs compose and instantiate; train.py runs (fast_dev_run, a two-run sweep)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import open_dict

from tests.conftest import REPO, SHARED_DATA

CONF = REPO / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_train(overrides: list[str], out: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def data_overrides(name: str, tmp_path: Path) -> list[str]:
    """What a data config needs besides its defaults: the UCI copies, or a table for data=csv."""
    if name in ("wine", "airfoil"):
        if not (SHARED_DATA / "uci").is_dir():
            pytest.skip("../shared/data/uci not present")
        return [f"data.root={SHARED_DATA / 'uci'}", "data.download=false"]
    if name == "csv":
        table = tmp_path / "table.csv"
        table.write_text("y,a,b\n" + "".join(f"{i % 5},{i},{(i * 7) % 11}\n" for i in range(300)))
        return [f"data.path={table}", "data.base_columns=[y]"]
    return []


@pytest.mark.parametrize("name", options("data"))
def test_data_configs_instantiate(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"data={name}", "data.num_train=200", *data_overrides(name, tmp_path)], tmp_path)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    total, base = dm.train_tensors()
    assert total.shape[0] == 200 and base.shape[1] == dm.spec.base_dim


@pytest.mark.parametrize("name", options("model"))
def test_model_configs_instantiate(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"model={name}"], tmp_path)
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model, spec=dm.spec)
    assert model.spec == dm.spec


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_configs_instantiate(name: str, tmp_path: Path) -> None:
    data = {"paper_wine": "wine", "paper_airfoil": "airfoil"}.get(name, "")
    cfg = compose_train([f"experiment={name}", *data_overrides(data, tmp_path)], tmp_path)
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model, spec=dm.spec)
    instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    # the optimizer and schedule build as configure_optimizers builds them
    optimizer = model.optimizer_factory(params=model.parameters())
    if model.scheduler_factory is not None:
        model.scheduler_factory(optimizer, total_steps=10)


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_configs_instantiate(name: str, tmp_path: Path) -> None:
    import torch

    cfg = compose_train([f"trainer={name}"], tmp_path)
    # without a GPU, build the same trainer on the CPU: every other key is still checked
    extra = {} if torch.cuda.is_available() or cfg.trainer.accelerator != "gpu" else {"accelerator": "cpu"}
    if cfg.trainer.get("strategy") == "ddp_spawn" and not torch.cuda.is_available():
        extra["accelerator"] = "cpu"
    trainer = instantiate(cfg.trainer, logger=False, **extra)
    assert trainer.max_epochs is not None
    assert type(trainer.strategy.checkpoint_io).__name__ == "StreamingCheckpointIO"


@pytest.mark.parametrize("name", options("logger"))
def test_logger_configs_instantiate(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"logger={name}"], tmp_path)
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
    assert all(hasattr(lg, "log_metrics") for lg in loggers)


@pytest.mark.parametrize("name", options("callbacks"))
def test_callbacks_config_instantiates(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"callbacks={name}"], tmp_path)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    assert {type(c).__name__ for c in callbacks} >= {"ModelCheckpoint", "RichProgressBar"}


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("extra", [[], ["trainer.enable_progress_bar=false"]], ids=["default", "no-progress-bar"])
def test_train_fast_dev_run(tmp_path: Path, extra: list[str]) -> None:
    proc = run_train("trainer.fast_dev_run=true", *extra, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "config.yaml").exists()


def test_train_writes_run_outputs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_train(
        "trainer.max_epochs=3",
        "trainer.check_val_every_n_epoch=3",
        "data.num_train=200",
        "model.num_nbhds=4",
        "evaluation.iterations=1",
        "evaluation.num_fibers=3",
        "evaluation.num_global=200",
        "~callbacks.progress_bar",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("checkpoints/last.ckpt", "checkpoints/best.ckpt", "fibers.png", "metrics.json", "config.yaml"):
        assert (run / name).exists(), name
    last_line = [line for line in proc.stdout.strip().splitlines() if line.strip()][-1]
    assert "checkpoint:" in last_line and "best.ckpt" in last_line  # the reported model: the last step is its best


def test_multirun_sweep_runs_each_job_in_its_own_dir(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_train("-m", "data=torus,moebius", "trainer.fast_dev_run=true", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "0" / "config.yaml").exists() and (sweep / "1" / "config.yaml").exists()
    assert "MoebiusBand" in (sweep / "1" / "config.yaml").read_text()


def test_impossible_model_settings_fail_at_startup(tmp_path: Path) -> None:
    proc = run_train(
        "model=bundlenet_paper", "model.num_circles=2", "model.total_dim=4", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: model.num_circles=2 needs")


LIGHT_EVALUATION = [
    "evaluation.iterations=1",
    "evaluation.num_fibers=2",
    "evaluation.num_points=30",
    "evaluation.num_global=200",
    "evaluation.global_ot_points=null",
    "logger=none",
]


@pytest.mark.parametrize("name", options("data"))
def test_every_data_config_trains_with_the_default_model(name: str, tmp_path: Path) -> None:
    """``python train.py data=X`` needs nothing else: the default model adapts to the data
    (neighbourhoods, fiber topology, supports); only the run length is shortened here."""
    from bundlenet.cli.train import train

    cfg = compose_train(
        [f"data={name}", *data_overrides(name, tmp_path), "trainer.max_steps=3", *LIGHT_EVALUATION], tmp_path / "run"
    )
    metrics = train(cfg)
    assert metrics["steps"] == 3 and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


TRAINER_OVERRIDES = [
    "trainer.max_steps=4",
    "trainer.max_time=00:00:10:00",
    "trainer.val_check_interval=2",
    "trainer.limit_train_batches=1.0",
    "trainer.accumulate_grad_batches=2",
    "trainer.precision=bf16-mixed",
    "trainer.devices=1",
    "trainer.num_nodes=1",
    "trainer.strategy=auto",
    "trainer.max_epochs=-1",
    "trainer.limit_val_batches=1",
    "trainer.gradient_clip_val=0.5",
    "trainer.log_every_n_steps=1",
]


@pytest.mark.parametrize("trainer", options("trainer"))
def test_everyday_trainer_arguments_are_plain_overrides(trainer: str, tmp_path: Path) -> None:
    cfg = compose_train([f"trainer={trainer}", *TRAINER_OVERRIDES], tmp_path)
    for item in TRAINER_OVERRIDES:
        key, value = item.split("=", 1)
        assert str(cfg.trainer[key.split(".", 1)[1]]) == value


def test_a_log_file_gets_plain_progress_lines_and_no_lightning_noise(tmp_path: Path) -> None:
    """stdout redirected to a file (as under SLURM): no progress-bar frames, no litlogger tip,
    no "GPU available: False" lines; a few plain progress lines instead."""
    run = tmp_path / "run"
    proc = run_train(
        "trainer.max_steps=60",
        "data.num_train=200",
        "model.hidden_features=16",
        *LIGHT_EVALUATION,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    for noise in ("💡", "litlogger", "GPU available: False", "TPU available", "\r", "━"):
        assert noise not in output, noise
    assert len(output.splitlines()) < 80
    assert "step 60/60" in output  # the last progress line


def test_every_config_group_ships_in_the_package() -> None:
    """conf/ ships as bundlenet.conf: each group folder is a package of its own with its YAML
    files (a folder setuptools is not told of is left out of the wheel, with a warning)."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    groups = {f"bundlenet.conf.{p.name}" for p in (REPO / "conf").iterdir() if p.is_dir() and any(p.glob("*.yaml"))}
    assert groups, "no config groups found"
    assert groups <= set(setuptools["packages"]), sorted(groups - set(setuptools["packages"]))
    assert all(setuptools["package-data"].get(g) == ["*.yaml"] for g in groups)
