"""A short torus training run: commutativity falls ≥ 10×, generated fibers lie near the true ones."""

from __future__ import annotations

import torch

from bundlenet.bundles import Torus


def test_commutativity_falls_tenfold_and_fibers_land_on_the_torus(trained) -> None:
    from tests.conftest import make_torus_model

    model, dm, _ = trained
    total, base = dm.train_tensors()
    fresh, _ = make_torus_model(num_nbhds=model.cover.num_nbhds)
    fresh.fit_data(total, base)
    with torch.no_grad():
        before = float(fresh.loss_terms(total, base).commutativity)
        after = float(model.loss_terms(total, base).commutativity)
    assert after <= before / 10, f"commutativity {before:.3f} -> {after:.3f}"

    torus = Torus()
    points = torus.sample_total(8, torch.Generator().manual_seed(7)).base
    fibers = model.sample_fiber(points, 200, seed=0)
    dist = torus.distance_to_fiber_circle(fibers, points.unsqueeze(1))
    assert float(dist.mean()) < 0.5, f"mean distance to the true fiber circle {float(dist.mean()):.3f}"
    # the fiber is a circle, not a blob: generated points spread around it
    assert float(fibers.std(dim=1).mean()) > 0.5


def test_latent_statistics_are_stored_in_the_model(trained) -> None:
    model, _, _ = trained
    assert bool(model.prior.initialized.all())
    assert float(model.prior.radius_mean.min()) > 0


def test_project_recovers_base_points(trained) -> None:
    model, dm, _ = trained
    total, base = dm.train_tensors()
    err = (model.project(total[:200]) - base[:200]).norm(dim=1)
    assert float(err.median()) < 0.2
    t = model.trivialize(total[:10])
    assert t.base.shape == (10, 2) and t.fiber.shape == (10, model.total_dim - 2) and t.neighbourhood.shape == (10,)


def test_global_samples_lie_on_the_torus(trained) -> None:
    model, _, _ = trained
    x, base = model.sample(500, seed=1, return_base=True)
    assert x.shape == (500, 3) and base.shape == (500, 2)
    rho = x[:, :2].norm(dim=1)
    torus_residual = ((rho - 8) ** 2 + x[:, 2] ** 2).sqrt() - 2
    assert float(torus_residual.abs().median()) < 0.5


def test_nan_loss_stops_training_with_the_step_and_term() -> None:
    import pytest

    from tests.conftest import make_torus_model

    from bundlenet.losses import LossTerms

    model, dm = make_torus_model()
    model.fit_data(*dm.train_tensors())
    one = torch.tensor(1.0)
    model.loss_terms = lambda *a, **k: LossTerms(one, torch.tensor(float("inf")), one, one)  # type: ignore[method-assign]
    with pytest.raises(FloatingPointError, match=r"step 0 \(terms \['kl_fwd'\]\)"):
        model.training_step(dm.train_tensors(), 0)


def test_bf16_mixed_precision_trains_on_cpu(tmp_path) -> None:
    """``trainer.precision=bf16-mixed`` on a CPU: the default (spline) model trains, its
    parameters and latent statistics stay float32, and its fibers come out float32."""
    import pytorch_lightning as pl

    from tests.conftest import make_torus_model

    model, dm = make_torus_model(num_nbhds=5)
    total, base = dm.train_tensors()
    model.fit_data(total, base)
    with torch.no_grad():
        before = float(model.loss_terms(total, base).commutativity)
    trainer = pl.Trainer(max_epochs=150, accelerator="cpu", devices=1, precision="bf16-mixed", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, gradient_clip_val=1.0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    with torch.no_grad():
        after = float(model.loss_terms(total, base).commutativity)
    assert after <= before / 5, f"commutativity {before:.3f} -> {after:.3f}"
    assert {p.dtype for p in model.parameters()} == {torch.float32} and model.prior.mean.dtype == torch.float32
    fibers = model.sample_fiber(base[:3], 50, seed=0)
    assert fibers.dtype == torch.float32 and bool(torch.isfinite(fibers).all())
