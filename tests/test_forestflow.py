"""Forest-Flow (``model=forestflow``): its sampler integrates the forests exactly as
``ForestDiffusion`` generates, it trains in one step, samples inside the training ranges, keeps
its forests in a ``weights_only`` checkpoint, and without the optional package fails in one line."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bundlenet.checkpoint import load_model
from bundlenet.errors import InputError
from bundlenet.models.baselines import forestflow
from tests.conftest import REPO
from tests.test_baselines import build, fit


def test_sampler_integrates_the_forests_as_forestdiffusion_generates() -> None:
    package = pytest.importorskip("ForestDiffusion", reason="the optional extra: pip install -e '.[forest]'")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)) * [1.0, 5.0, 0.1] + [0.0, 2.0, -1.0]
    covs = rng.normal(size=(80, 1))
    fitted = package.ForestDiffusionModel(x, X_covs=covs, n_t=5, duplicate_K=4, n_estimators=8, max_depth=3, n_jobs=1)
    velocity = forestflow.ForestVelocity(3, 5)
    velocity.take(fitted)
    condition = rng.normal(size=(30, 1))
    np.random.seed(11)
    theirs = fitted.generate(batch_size=30, X_covs=condition)
    np.random.seed(11)  # generate's first draw is the prior noise
    x0 = torch.from_numpy(np.random.normal(size=(30, 3)))
    ours = velocity.sample(x0, torch.from_numpy(condition))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-6, atol=1e-9)
    assert bool((ours >= torch.from_numpy(x.min(0))).all() and (ours <= torch.from_numpy(x.max(0))).all())


def test_forestflow_trains_in_one_step_and_round_trips(tmp_path: Path) -> None:
    pytest.importorskip("ForestDiffusion", reason="the optional extra: pip install -e '.[forest]'")
    model, dm = build("forestflow")
    ckpt = fit(model, dm, steps=5, root=tmp_path)
    assert model.forest.fitted and model.trainer.current_epoch == 1  # of 5 (one batch each): it stopped after fitting
    total, _ = dm.train_tensors()
    base = torch.tensor([[4.5, 0.0], [0.0, -4.5]])
    fibers = model.sample_fiber(base, 200, seed=2)
    assert fibers.shape == (2, 200, 3) and torch.isfinite(fibers).all()
    assert bool((fibers >= total.min(0).values).all() and (fibers <= total.max(0).values).all())
    # conditioned on y: each fiber's samples sit nearer their own base point than the other's
    own = (dm.bundle.project(fibers.reshape(-1, 3)).reshape(2, 200, 2) - base[:, None]).norm(dim=-1).mean(1)
    other = (dm.bundle.project(fibers.reshape(-1, 3)).reshape(2, 200, 2) - base.flip(0)[:, None]).norm(dim=-1).mean(1)
    assert bool((own < other).all()), (own, other)

    saved = torch.load(ckpt, weights_only=True)
    assert saved["state_dict"]["forest.booster_0"].dtype == torch.uint8
    loaded = load_model(ckpt)
    assert type(loaded) is forestflow.ForestFlow and loaded.forest.fitted
    torch.testing.assert_close(loaded.sample_fiber(base, 20, seed=4), model.sample_fiber(base, 20, seed=4))


def test_options_are_checked() -> None:
    from bundlenet.bundles import Torus

    with pytest.raises(InputError, match="model.n_t must be an integer of at least 2"):
        forestflow.ForestFlow(Torus().spec, n_t=1)
    with pytest.raises(InputError, match="not been fitted"):
        forestflow.ForestFlow(Torus().spec).generate(torch.zeros(2, 2))


def test_without_the_package_fitting_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    model, dm = build("forestflow")
    real = importlib.import_module

    def missing(name: str, *args: object) -> object:
        if name in ("ForestDiffusion", "xgboost"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(forestflow.importlib, "import_module", missing)
    with pytest.raises(InputError, match=r"pip install 'bundlenet\[forest\]'"):
        model.fit_data(*dm.train_tensors())


def test_train_py_without_the_package_says_so_before_writing(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked" / "ForestDiffusion"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('blocked for this test')\n")
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "model=forestflow", "logger=none", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{blocked.parent}:{REPO}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == f"error: {forestflow.INSTALL}" and not any("Traceback" in line for line in lines)
    assert not (run / "checkpoints").exists()
