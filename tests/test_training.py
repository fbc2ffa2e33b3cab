"""Short torus training runs of the default BundleNet: the projection learns π, generated fibers
lie on the true fibers and go all around them; failures stop training with the step."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from bundlenet.bundles import Torus
from tests.conftest import make_torus_model


def _projection_error(model, total, base) -> float:
    with torch.no_grad():
        return float((model.project(total, units="scaled") - base).norm(dim=1).mean())


def test_commutativity_falls_tenfold_and_fibers_land_on_the_torus(trained) -> None:
    model, dm, _ = trained
    total, base = dm.train_tensors()
    fresh, _ = make_torus_model(num_nbhds=None, num_train=1000, hidden_features=96)
    fresh.fit_data(total, base)
    before, after = _projection_error(fresh, total, base), _projection_error(model, total, base)
    assert after <= before / 10, f"commutativity {before:.3f} -> {after:.3f}"

    torus = Torus()
    points = torus.sample_total(8, torch.Generator().manual_seed(7)).base
    fibers = model.sample_fiber(points, 200, seed=0)
    dist = torus.distance_to_fiber(fibers, points)
    assert float(dist.mean()) < 0.3, f"mean distance to the true fiber circle {float(dist.mean()):.3f}"
    # the fiber is a circle, not a blob: every generated fiber goes all around its circle
    dense = torus.sample_fiber(points, 400, torch.Generator().manual_seed(1))
    coverage = torch.cdist(dense, fibers).min(dim=2).values.mean()
    assert float(coverage) < 0.5, f"mean distance from the true circle to the nearest sample {float(coverage):.3f}"


def test_project_and_trivialize_have_the_documented_shapes(trained) -> None:
    model, dm, _ = trained
    total, base = dm.train_tensors()
    original_total, original_base = dm.spec.to_original(total[:200], "total"), dm.spec.to_original(base[:200], "base")
    err = (model.project(original_total) - original_base).norm(dim=1)
    assert float(err.median()) < 0.2
    t = model.trivialize(original_total[:10])
    assert t.base.shape == (10, 2) and t.fiber.shape == (10, model.dim) and t.neighbourhood.shape == (10,)
    assert int(t.neighbourhood.max()) < model.cover.num_nbhds


def test_global_samples_lie_on_the_torus(trained) -> None:
    model, _, _ = trained
    x, base = model.sample(500, seed=1, return_base=True)
    assert x.shape == (500, 3) and base.shape == (500, 2)
    rho = x[:, :2].norm(dim=1)
    torus_residual = ((rho - 8) ** 2 + x[:, 2] ** 2).sqrt() - 2
    assert float(torus_residual.abs().median()) < 0.3


def test_log_prob_is_higher_on_the_fiber_than_off_it(trained) -> None:
    model, _, _ = trained
    torus = Torus()
    y = torus.sample_total(4, torch.Generator().manual_seed(3)).base
    on = torus.sample_fiber(y, 50, torch.Generator().manual_seed(4))
    off = on.clone()
    off[..., 2] += 1.0  # one unit above the circle
    base = y.repeat_interleave(50, dim=0)
    lp_on, lp_off = model.log_prob(on.reshape(-1, 3), base), model.log_prob(off.reshape(-1, 3), base)
    assert lp_on.shape == (200,) and bool(torch.isfinite(lp_on).all())
    assert float(lp_on.mean()) > float(lp_off.mean()) + 5


def test_the_cover_adapts_to_the_data() -> None:
    model, dm = make_torus_model(num_nbhds=None, num_train=400)
    model.fit_data(*dm.train_tensors())
    assert model.cover.num_nbhds == 400 // model.hparams.points_per_nbhd
    assert model.hparams.num_nbhds == model.cover.num_nbhds  # written back: a checkpoint rebuilds it


def test_nan_loss_stops_training_with_the_step() -> None:
    model, dm = make_torus_model()
    model.fit_data(*dm.train_tensors())
    model.flow.objective = lambda r, context, latent, generator=None: torch.tensor(float("nan"))  # type: ignore[method-assign]
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 0 \(fiber flow nan"):
        model.training_step(dm.train_tensors(), 0)


def test_bf16_mixed_precision_trains_on_cpu(tmp_path) -> None:
    """``trainer.precision=bf16-mixed`` on a CPU: the model trains, its parameters stay float32,
    and its fibers come out float32."""
    model, dm = make_torus_model(num_nbhds=5)
    total, base = dm.train_tensors()
    model.fit_data(total, base)
    before = _projection_error(model, total, base)
    from bundlenet.loggers import bare_trainer

    trainer = bare_trainer(
        max_steps=150, accelerator="cpu", devices=1, precision="bf16-mixed", gradient_clip_val=1.0, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    after = _projection_error(model, total, base)
    assert after <= before / 5, f"commutativity {before:.3f} -> {after:.3f}"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    fibers = model.sample_fiber(base[:3], 50, seed=0)
    assert fibers.dtype == torch.float32 and bool(torch.isfinite(fibers).all())


def test_validation_logs_fiber_precision_and_coverage(tmp_path) -> None:
    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    metrics = trainer.validate(model, datamodule=dm, verbose=False)[0]
    for key in ("val/fiber_w2", "val/fiber_precision", "val/fiber_coverage"):
        assert key in metrics and 0 < metrics[key] < 100, key
    # best.ckpt's criterion: the validation fibers' negative log-likelihood (it can be negative)
    base, fibers = dm.val[0], dm.val[1]
    with torch.no_grad():
        nll = -model.log_likelihood(
            model.standardize(fibers.reshape(-1, 3), dequantize=False),
            model.base_scaler(base.repeat_interleave(fibers.shape[1], 0)),
            torch.Generator().manual_seed(0),
        ).mean()
    assert metrics["val/selection"] == pytest.approx(float(nll), rel=1e-4, abs=1e-4)
