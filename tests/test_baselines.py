"""The baselines train a few steps from their configs, sample the right shapes and round-trip
through checkpoints; train.py + the report command turn a tiny multirun into a table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from bundlenet.bundles import Torus
from bundlenet.checkpoint import load_model
from bundlenet.data.datamodule import BundleDataModule
from bundlenet.errors import InputError
from bundlenet.models.base import BundleModel
from tests.conftest import REPO

BASELINES = ["wgan", "cgan", "cgan_nbhd", "cgan_triv", "cflow", "cfm"]
SMALL = {
    "cflow": ["model.num_blocks=2", "model.hidden_features=32", "model.depth=1"],
    "cfm": ["model.hidden_features=32", "model.depth=2", "model.ode_steps=4"],
    "forestflow": ["model.n_t=4", "model.duplicate_K=3", "model.n_estimators=5", "model.max_depth=3"],  # tests/test_forestflow.py
}
SMALL_GAN = ["model.hidden_features=32", "model.depth=2"]


def build(name: str, extra: list[str] | None = None) -> tuple[BundleModel, BundleDataModule]:
    GlobalHydra.instance().clear()
    overrides = [f"model={name}", *SMALL.get(name, SMALL_GAN), *(extra or [])]
    if "nbhd" in name or "triv" in name:
        overrides.append("model.num_nbhds=4")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    pl.seed_everything(0, verbose=False)
    dm = BundleDataModule(Torus(), num_train=200, num_val_fibers=2, val_fiber_points=50, seed=0)
    dm.setup("fit")
    return instantiate(cfg.model, spec=dm.spec), dm


def fit(model: BundleModel, dm: BundleDataModule, steps: int, root: Path) -> Path:
    trainer = pl.Trainer(
        max_epochs=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        check_val_every_n_epoch=steps,
        num_sanity_val_steps=0,
        default_root_dir=root,
        callbacks=[
            pl.callbacks.ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, monitor="val/fiber_w2", mode="min")
        ],
    )
    trainer.fit(model, datamodule=dm)
    return root / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_samples_and_round_trips(name: str, tmp_path: Path) -> None:
    model, dm = build(name)
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    ckpt = fit(model, dm, steps=6, root=tmp_path)
    changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(before[k], v)]
    # every network is optimised: generator and critic (GANs), the flow (cflow)
    parts = {"cflow": ("flow.",), "cfm": ("velocity.",)}.get(name, ("generator.", "critic."))
    for part in parts:
        assert any(k.startswith(part) and "weight" in k for k in changed), f"{part} never updated"

    x = model.sample(40, seed=1)
    assert x.shape == (40, 3) and torch.isfinite(x).all()
    base = torch.tensor([[4.5, 0.0], [0.0, -4.5]])
    if model.conditional:
        fibers = model.sample_fiber(base, 25, seed=2)
        assert fibers.shape == (2, 25, 3) and torch.isfinite(fibers).all()
    else:
        with pytest.raises(InputError, match="unconditional"):
            model.sample_fiber(base, 25)

    loaded = load_model(ckpt)  # weights_only=True inside
    assert type(loaded) is type(model)
    torch.testing.assert_close(loaded.sample(30, seed=3), model.sample(30, seed=3))  # self-contained checkpoint
    if model.conditional:
        torch.testing.assert_close(loaded.sample_fiber(base, 10, seed=4), model.sample_fiber(base, 10, seed=4))


def test_cflow_likelihood_rises_with_training(tmp_path: Path) -> None:
    model, dm = build("cflow")
    total, base = dm.train_tensors()
    model.fit_data(total, base)
    with torch.no_grad():
        before = float(model.log_prob(total, base).mean())
    fit(model, dm, steps=60, root=tmp_path)
    with torch.no_grad():
        after = float(model.log_prob(total, base).mean())
    assert after > before + 0.5, f"mean log-likelihood {before:.3f} -> {after:.3f}"


def test_gan_rejects_bad_options() -> None:
    from bundlenet.models.baselines import CGAN, TrivializedCGAN

    spec = Torus().spec
    with pytest.raises(InputError, match="model.loss"):
        CGAN(spec, loss="hinge")
    with pytest.raises(InputError, match="model.n_critic"):
        CGAN(spec, n_critic=0)
    with pytest.raises(InputError, match="model.nbhds_per_step"):
        TrivializedCGAN(spec, nbhds_per_step=0)


def test_cgan_triv_updates_once_per_chosen_neighbourhood() -> None:
    model, dm = build("cgan_triv")
    total, base = dm.train_tensors()
    model.fit_data(total, base)
    groups = list(model.training_groups(total, base))
    assert len(groups) == min(model.nbhds_per_step, model.num_nbhds)
    for _, b in groups:
        nbhd = model.cover.assign(b)
        assert bool((nbhd == nbhd[0]).all()), "a group mixes neighbourhoods"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tiny_multirun_becomes_a_report_and_its_checkpoints_evaluate(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run(
        [
            str(REPO / "train.py"),
            "-m",
            "model=cgan,wgan",
            "data=torus",
            "trainer.max_epochs=4",
            "trainer.check_val_every_n_epoch=4",
            "data.num_train=100",
            "model.hidden_features=16",
            "evaluation.iterations=2",
            "evaluation.num_global=150",
            "evaluation.global_ot_points=null",
            "evaluation.num_fibers=2",
            "evaluation.num_points=30",
            "logger=none",
            "~callbacks.progress_bar",
            "trainer.enable_progress_bar=false",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "0" / "evaluation.json").exists() and (sweep / "1" / "evaluation.json").exists()

    proc = run(["-m", "bundlenet.report", str(sweep)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert "| data | model | MMD | MSMD | KL-fwd | KL-bwd | W1 | W2 | W2 / floor | train s |" in table
    assert "| torus | *noise floor* |" in table and "| torus | cgan |" in table
    assert "| torus | wgan | n/a (unconditional) |" in table  # fiber table
    assert table.count("| torus | wgan |") == 2  # fiber and global tables
    assert (sweep / "report.md").read_text().strip() == table.strip()
    proc = run(["-m", "bundlenet.report", str(sweep)], cwd=tmp_path)  # the report exists: replaced only when asked
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "pass --overwrite" in proc.stderr
    assert run(["-m", "bundlenet.report", str(sweep), "--overwrite"], cwd=tmp_path).returncode == 0

    # the checkpoint records its data: evaluate needs nothing else
    proc = run(
        [
            "-m",
            "bundlenet.evaluate",
            f"ckpt_path={sweep / '0' / 'checkpoints' / 'last.ckpt'}",
            "evaluation.iterations=2",
            "evaluation.num_global=150",
            "evaluation.num_fibers=2",
            "evaluation.num_points=30",
            "output=ev.json",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ev.json").exists() and "evaluated in" in proc.stdout

    proc = run(["-m", "bundlenet.report", str(tmp_path / "nowhere")], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: multirun directory not found")


def test_cfm_samples_approach_the_torus(tmp_path: Path) -> None:
    """Conditional flow matching: after a short run the ODE samples of a fiber lie clearly
    nearer the true circle than those of the untrained velocity field."""
    model, dm = build("cfm", ["model.ode_steps=10"])
    total, base = dm.train_tensors()
    model.fit_data(total, base)
    torus = Torus()
    y = torus.sample_total(3, torch.Generator().manual_seed(5)).base
    before = float(torus.distance_to_fiber(model.sample_fiber(y, 50, seed=0), y).mean())
    fit(model, dm, steps=150, root=tmp_path)
    after = float(torus.distance_to_fiber(model.sample_fiber(y, 50, seed=0), y).mean())
    assert after < 0.75 * before, f"mean distance to the true fiber {before:.3f} -> {after:.3f}"


def test_report_names_each_swept_override_and_the_run_dir(tmp_path: Path) -> None:
    """Two runs that differ only by a swept option are told apart in the report."""
    import json

    from bundlenet.evaluation.report import build_report

    estimate = {"mean": 1.0, "low": 0.9, "high": 1.1}
    scope = {
        name: {"model": estimate, "noise_floor": estimate, "ratio": 1.0}
        for name in ("mmd", "msmd", "kl_fwd", "kl_bwd", "w1", "w2", "precision", "coverage")
    }
    for i, k in enumerate((5, 10)):
        run = tmp_path / str(i)
        (run / ".hydra").mkdir(parents=True)
        (run / "config.yaml").write_text("data: {bundle: {_target_: bundlenet.bundles.Torus}}\nmodel: {_target_: x.BundleNet}\n")
        (run / ".hydra" / "hydra.yaml").write_text("hydra: {runtime: {choices: {data: torus, model: bundlenet}}}\n")
        (run / ".hydra" / "overrides.yaml").write_text(f"- data=torus\n- model.num_nbhds={k}\n- seed=0\n")
        (run / "evaluation.json").write_text(json.dumps({"fiber": scope, "global": scope, "protocol": {}}))
    report = build_report(tmp_path)
    assert "| data | model | model.num_nbhds |" in report
    assert "| torus | bundlenet | 5 |" in report and "| torus | bundlenet | 10 |" in report
    assert "| 0 |" in report and "| 1 |" in report  # run directories
    assert "precision" in report and "coverage / floor" in report


def test_compare_experiment_evaluates_each_time_budget_and_the_report_draws_them(tmp_path: Path) -> None:
    """``experiment=compare``: checkpoints at each training-time budget are evaluated into
    budgets.json, and the report turns them into the quality-against-time table and figure."""
    import json

    from bundlenet.cli.train import train
    from bundlenet.evaluation.report import build_report
    from tests.test_configs import LIGHT_EVALUATION, compose_train

    for seed in (0, 1):
        run = tmp_path / str(seed)
        cfg = compose_train(
            [
                "experiment=compare",
                f"seed={seed}",
                "data.num_train=200",
                "model.hidden_features=16",
                "callbacks.budgets.budgets=[0.5,1.5,1000]",
                "trainer.max_time=00:00:00:05",
                "callbacks.fit_to_time.seconds=3",
                "callbacks.fit_to_time.check_every=10",
                "trainer.val_check_interval=10",
                *LIGHT_EVALUATION,
            ],
            run,
        )
        train(cfg)
        budgets = json.loads((run / "budgets.json").read_text())
        assert [b["budget_s"] for b in budgets] == [0.5, 1.5, 1000]
        # each budget's model is the one a run that short reports: the lower held-out NLL of the
        # current weights and best.ckpt (so a later budget may keep an earlier step)
        assert budgets[0]["step"] <= budgets[1]["step"] <= budgets[2]["step"]
        assert budgets[2]["checkpoint"].endswith("best.ckpt")  # the run ended first: its reported model
        assert set(budgets[0]["fiber"]) >= {"w2", "precision", "coverage"}
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n")
    report = build_report(tmp_path)
    assert "Quality against training time" in report and "| Torus | BundleNet | 0.5 |" in report  # names from the config
    assert (tmp_path / "quality_vs_time.png").stat().st_size > 0
