"""Operating bundlenet: loggers, resume after a crash, sweeps, launchers, DDP, determinism."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, fit, make_torus_model

# a small, fast configuration (seconds per run)
TINY = [
    "data.num_train=300",
    "model.num_nbhds=10",
    "model.hidden_features=32",
    "model.depth=1",
    "evaluation.iterations=1",
    "evaluation.num_fibers=3",
    "evaluation.num_global=300",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
]


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}


def run(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(train_cmd(*args), cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def test_wandb_offline_run_writes_its_run_dir_and_exits(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run(
        *TINY, "logger=wandb", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=3", f"hydra.run.dir={out}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb")), list((out / "wandb").iterdir())
    assert "checkpoint:" in [line for line in proc.stdout.splitlines() if line.strip()][-1]


@pytest.mark.parametrize("logger", ["tensorboard", "none"])
def test_other_loggers_run(tmp_path: Path, logger: str) -> None:
    out = tmp_path / "run"
    proc = run(
        *TINY,
        f"logger={logger}",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=2",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "metrics.json").exists()
    assert (out / "tensorboard").exists() == (logger == "tensorboard")


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_planned_step(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*TINY, "logger=csv", "trainer.max_epochs=300", "trainer.check_val_every_n_epoch=20", f"hydra.run.dir={out}"]
    args.append("final_model=last")  # the run reports its last step: the resumed run's end
    proc = subprocess.Popen(
        train_cmd(*args), cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and last.exists() and not (out / "metrics.json").exists()
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < killed_at < 300
    (last.parent / f".last.ckpt.{killed_at}.tmp").write_bytes(b"a save cut short by the kill")

    resumed = run(*args, "ckpt_path=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 300
    from bundlenet.checkpoint import load_model

    assert torch.load(last, weights_only=True)["global_step"] == 300  # the final weights are on disk
    assert metrics["checkpoint"] == str(last) and metrics["checkpoint_step"] == 300
    assert json.loads((out / "evaluation.json").read_text())["checkpoint_step"] == 300
    assert not list(last.parent.glob(".*.tmp"))  # the interrupted save's leftovers are gone
    with (out / "csv" / "metrics.csv").open() as f:  # the metric history before the kill survives the resume
        steps = [int(float(row["step"])) for row in csv.DictReader(f)]
    assert min(steps) < killed_at and max(steps) >= 299 and steps == sorted(steps)
    history = torch.load(last, weights_only=True)["callbacks"]["MetricHistory"]["history"]
    assert history["train/loss"][0][0] < killed_at  # curves.png is drawn from it
    model = load_model(last)
    assert model.cover.num_nbhds == 10
    assert model.sample_fiber([[4.5, 0.0]], 10, seed=0).shape == (1, 10, 3)


def test_same_seed_gives_identical_samples(tmp_path: Path) -> None:
    samples = []
    for i in range(2):
        model, dm = make_torus_model(num_nbhds=6, num_train=300, seed=3)
        fit(model, dm, steps=5, root=tmp_path / str(i))
        samples.append(model.sample_fiber([[4.5, 0.0], [0.0, 4.5]], 20, seed=1))
    torch.testing.assert_close(samples[0], samples[1], rtol=0, atol=0)


@pytest.mark.slow
def test_optuna_sweep_minimises_the_fiber_metric(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run(
        "-m",
        *TINY,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "logger=none",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in best and "model.optimizer.lr" in best


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run(
        "-m",
        "hydra/launcher=submitit_local",
        "data=torus,moebius",
        "trainer.fast_dev_run=true",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "0" / "config.yaml").exists() and (sweep / "1" / "config.yaml").exists()


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_quality(tmp_path: Path) -> None:
    """2-process DDP (gloo, ddp_spawn, CPU) vs 1 process, same data, same number of optimizer
    steps. Tolerance: the DDP fiber W2 ratio to the noise floor is within 25% (plus 0.2) of the
    single-process ratio, and both are good fibers (ratio < 3)."""
    common = [
        "data.num_train=1000",
        "trainer.max_epochs=300",
        "trainer.check_val_every_n_epoch=300",
        "logger=csv",
        "evaluation.iterations=2",
        "evaluation.num_global=500",
        "~callbacks.progress_bar",
        "trainer.enable_progress_bar=false",
    ]
    single = run(*common, f"hydra.run.dir={tmp_path / 'single'}", cwd=tmp_path, timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run(
        *common,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"hydra.run.dir={tmp_path / 'ddp'}",
        cwd=tmp_path,
        timeout=900,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    m1 = json.loads((tmp_path / "single" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m1["steps"] == m2["steps"] == 300
    r1, r2 = m1["fiber"]["w2"]["ratio"], m2["fiber"]["w2"]["ratio"]
    assert r1 < 3 and r2 < 3, (r1, r2)
    assert r2 <= 1.25 * r1 + 0.2, (r1, r2)
    from bundlenet.checkpoint import load_model

    model = load_model(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    assert model.sample_fiber([[4.5, 0.0]], 50, seed=0).shape == (1, 50, 3)
