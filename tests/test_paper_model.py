"""The authors' objective (``model=bundlenet_paper``): a short torus run lowers the
commutativity error tenfold, keeps its latent statistics, every parameter learns, and a
non-finite term stops training with its name."""

from __future__ import annotations

import pytest
import torch

from bundlenet.bundles import Torus
from tests.conftest import fit, make_paper_model


@pytest.fixture(scope="module")
def paper_trained(tmp_path_factory: pytest.TempPathFactory):
    model, dm = make_paper_model(num_nbhds=20, num_train=600)
    fit(model, dm, steps=150, root=tmp_path_factory.mktemp("paper"))
    return model, dm


def test_commutativity_falls_tenfold_and_fibers_land_near_the_torus(paper_trained) -> None:
    model, dm = paper_trained
    total, base = dm.train_tensors()
    fresh, _ = make_paper_model(num_nbhds=20, num_train=600)
    fresh.fit_data(total, base)
    with torch.no_grad():
        before = float(fresh.loss_terms(total, base).commutativity)
        after = float(model.loss_terms(total, base).commutativity)
    assert after <= before / 10, f"commutativity {before:.3f} -> {after:.3f}"
    torus = Torus()
    points = torus.sample_total(4, torch.Generator().manual_seed(7)).base
    dist = torus.distance_to_fiber(model.sample_fiber(points, 100, seed=0), points)
    assert float(dist.mean()) < 1.0, f"mean distance to the true fiber circle {float(dist.mean()):.3f}"


def test_latent_statistics_are_stored_in_the_model(paper_trained) -> None:
    model, _ = paper_trained
    assert bool(model.prior.initialized.all())
    assert float(model.prior.radius_mean.min()) > 0


def test_every_parameter_gets_a_gradient_from_the_total_loss() -> None:
    from tests.test_trivialization import _nudge

    model, dm = make_paper_model(num_nbhds=4, context="both")
    model.fit_data(*dm.train_tensors())
    _nudge(model.phi)
    total, base = dm.train_tensors()
    loss = model.loss_terms(total, base).total(model.loss_weights)
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not missing, f"parameters without a finite, non-zero gradient: {missing}"


def test_nan_loss_stops_training_with_the_step_and_term() -> None:
    from bundlenet.nn.losses import LossTerms

    model, dm = make_paper_model()
    model.fit_data(*dm.train_tensors())
    one = torch.tensor(1.0)
    model.loss_terms = lambda *a, **k: LossTerms(one, torch.tensor(float("inf")), one, one)  # type: ignore[method-assign]
    with pytest.raises(FloatingPointError, match=r"step 0 \(terms \['kl_fwd'\]\)"):
        model.training_step(dm.train_tensors(), 0)
