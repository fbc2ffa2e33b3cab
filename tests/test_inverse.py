"""Inverse design on the models: sample_frame, fixed inputs, refinement, re-simulation, log_prob."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor

from bundlenet.bundles.base import BundleSpec, ColumnSupport
from bundlenet.errors import InputError
from bundlenet.models.base import BundleModel
from tests.conftest import REPO


class GaussianFibers(BundleModel):
    """A model with a closed-form density: u | y ~ N(y·slope, Σ) in the standardised space."""

    has_density = True

    def __init__(self, spec: BundleSpec, slope: Tensor, cov: Tensor) -> None:
        super().__init__(spec)
        self.slope, self.cov = slope, cov

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        raise NotImplementedError

    def _law(self, y: Tensor) -> torch.distributions.MultivariateNormal:
        return torch.distributions.MultivariateNormal(y @ self.slope.to(y), self.cov.to(y))

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        y = self.base_scaler(base)
        noise = torch.randn(base.shape[0], self.cov.shape[0], generator=generator, dtype=base.dtype)
        return self.unstandardize(y @ self.slope.to(y) + noise @ torch.linalg.cholesky(self.cov).T.to(y))

    def density_std(self, u: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self._law(y).log_prob(u)


def gaussian_model(spec: BundleSpec | None = None) -> GaussianFibers:
    spec = spec or BundleSpec(("y",), ("a", "b", "c"))
    d = spec.total_dim
    cov = torch.full((d, d), 0.5) + 0.5 * torch.eye(d)
    model = GaussianFibers(spec, torch.ones(1, d), cov)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(2000, 1, generator=gen)
    total = base + torch.randn(2000, d, generator=gen)  # only for the scalers and ranges
    model.fit_data(total, base)
    return model


def test_fixed_inputs_follow_the_exact_conditional_of_a_gaussian_model() -> None:
    model = gaussian_model()
    y, a = 0.5, 1.2
    frame = model.sample_frame([y], 400, fixed={"a": a}, seed=0, steps=200)
    assert list(frame.columns) == ["y", "a", "b", "c"] and (frame["a"] == a).all() and (frame["y"] == y).all()
    # exact conditional in the data's units: x = scale·u + mean, u | y Gaussian, conditioned on x_a = a
    mean_u, cov_u = torch.ones(3) * (y - float(model.base_scaler.mean)) / float(model.base_scaler.scale), model.cov
    shift, scale = model.total_scaler.mean.double(), float(model.total_scaler.scale)
    mean_x, cov_x = shift + scale * mean_u.double(), scale**2 * cov_u.double()
    cond_mean = mean_x[1:] + cov_x[1:, :1] @ torch.linalg.solve(cov_x[:1, :1], torch.tensor([a]).double() - mean_x[:1])
    cond_cov = cov_x[1:, 1:] - cov_x[1:, :1] @ torch.linalg.solve(cov_x[:1, :1], cov_x[:1, 1:])
    draws = torch.tensor(frame[["b", "c"]].to_numpy())
    standard_error = (cond_cov.diagonal() / 400).sqrt()
    assert ((draws.mean(0) - cond_mean).abs() < 4 * standard_error).all()
    assert torch.allclose(torch.cov(draws.T), cond_cov, rtol=0.25, atol=0.05 * float(cond_cov.diagonal().mean()))


def test_log_prob_is_a_density_in_the_data_units() -> None:
    """One bounded column in scaled units: exp(log_prob) integrates to 1 over the data's units
    (support map, standardisation and file scaling included)."""
    spec = BundleSpec(("y",), ("dose",), total_offset=(3.0,), total_scale=(2.0,), total_support=(ColumnSupport(lower=0.0),))
    model = gaussian_model(spec)
    t = torch.linspace(-40.0, math.log(60.0), 200001, dtype=torch.float64)  # dose = e^t >= 0: mass piles up near 0
    grid = t.exp().unsqueeze(1)
    density = model.log_prob(grid, torch.tensor([[3.0]])).double().exp()  # most mass well above the bound
    mass = float(torch.trapezoid(density * t.exp(), t))
    assert mass == pytest.approx(1.0, abs=0.01)
    scaled = model.log_prob(model.spec.to_scaled(grid, "total"), torch.tensor([[3.0]]), units="scaled").double()
    away = grid.squeeze(1) > 1e-3  # float32 arithmetic resolves the bound's neighbourhood only so far
    torch.testing.assert_close((scaled - math.log(2.0))[away], density.log()[away], rtol=1e-4, atol=1e-4)


def test_log_prob_of_a_point_mass_is_its_cell_not_a_zero_jacobian() -> None:
    """A column with a point mass at its bound (exact zeros): the map is flat there, so the
    value counts as a cell (the model's density at its image, no Jacobian), as a discrete value
    does; values above the bound keep the Jacobian of every map."""
    spec = BundleSpec(("y",), ("dose",), total_support=(ColumnSupport(lower=0.0, atoms=(0.0,)),))
    model = gaussian_model(spec)
    points = torch.tensor([[0.0], [0.5], [2.0]])
    base = torch.tensor([[0.3]])
    got = model.log_prob(points, base)
    u = model.standardize(points, dequantize=False)
    y = model.base_scaler(base).expand(3, -1)
    expected = model.density_std(u, y)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[0], expected[0])  # the point mass: the cell's density
    jacobian = torch.autograd.functional.jacobian(lambda v: model.standardize(v, dequantize=False), points[1:])
    diag = torch.stack([jacobian[i, 0, i, 0] for i in range(2)])
    torch.testing.assert_close(got[1:], expected[1:] + diag.abs().log())


@pytest.mark.parametrize("name", ["cflow", "cfm"])
def test_baseline_log_prob_integrates_to_one(name: str) -> None:
    from bundlenet.models.baselines.cflow import ConditionalFlow
    from bundlenet.models.baselines.cfm import ConditionalFlowMatching

    torch.manual_seed(0)
    spec = BundleSpec(("y",), ("p", "q"), total_offset=(1.0, -2.0), total_scale=(0.5, 3.0))
    model = (
        ConditionalFlow(spec, num_blocks=2, hidden_features=16)
        if name == "cflow"
        else ConditionalFlowMatching(spec, hidden_features=16, depth=2, ode_steps=8)
    )
    total = torch.randn(500, 2) * torch.tensor([0.5, 3.0]) + torch.tensor([1.0, -2.0])
    model.fit_data(model.spec.to_scaled(total, "total"), torch.randn(500, 1))
    p, q = torch.meshgrid(torch.linspace(-4, 6, 121), torch.linspace(-26, 22, 121), indexing="ij")
    points = torch.stack([p.reshape(-1), q.reshape(-1)], 1)
    density = model.log_prob(points, torch.tensor([[0.2]])).double().exp().reshape(121, 121)
    mass = float(torch.trapezoid(torch.trapezoid(density, q[0].double(), dim=1), p[:, 0].double()))
    assert mass == pytest.approx(1.0, abs=0.03)


def test_models_without_a_density_refuse_log_prob_and_fixed() -> None:
    from bundlenet.models.baselines.cgan import CGAN

    spec = BundleSpec(("y",), ("p", "q"))
    model = CGAN(spec)
    model.fit_data(torch.randn(100, 2), torch.randn(100, 1))
    with pytest.raises(InputError, match="has no density"):
        model.log_prob(torch.zeros(1, 2), torch.zeros(1, 1))
    with pytest.raises(InputError, match="fixed= needs a model with a density"):
        model.sample_frame([0.0], 5, fixed={"p": 0.0})
    assert model.sample_frame([0.0], 5).shape == (5, 3)


BAD_FIXED = [
    ({"z": 1.0}, "fixed names 'z', which is not a total column"),
    ({"a": "x"}, "fixed a='x' must be a number"),
    ({"a": 1.0, "b": 1.0, "c": 1.0}, "fixed= fixes every total column"),
]


@pytest.mark.parametrize(("fixed", "message"), BAD_FIXED, ids=[m[:25] for _, m in BAD_FIXED])
def test_bad_fixed_inputs(fixed: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        gaussian_model().sample_frame([0.0], 5, fixed=fixed)  # type: ignore[arg-type]


def test_fixed_value_outside_the_data_warns_naming_the_column(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bundlenet"):
        gaussian_model().sample_frame([0.0], 5, fixed={"b": 50.0}, steps=4)
    assert any("fixed b=50 is outside the training data's b" in r.getMessage() for r in caplog.records)


def test_sample_frame_base_forms(trained: tuple[object, object, Path]) -> None:
    model = trained[0]
    one = model.sample_frame([4.5, 0.0], 7, seed=3)
    assert list(one.columns) == ["u", "v", "x", "y", "z"] and len(one) == 7 and (one[["u", "v"]] == [4.5, 0.0]).all().all()
    # the sample CLI's rows: the same samples as sample_fiber with the same seed
    expected = model.sample_fiber([[4.5, 0.0]], 7, seed=3)[0]
    np.testing.assert_allclose(one[["x", "y", "z"]].to_numpy(), expected.numpy(), rtol=1e-6)
    many = model.sample_frame(pd.DataFrame({"v": [0.0, 4.5], "u": [4.5, 0.0]}), 3, seed=0)
    assert len(many) == 6 and many["u"].tolist() == [4.5] * 3 + [0.0] * 3
    assert len(model.sample_frame([[4.5, 0.0], [0.0, 4.5]], 2)) == 4
    ranged = model.sample_frame({"u": (2.0, 4.5), "v": (0.0, None)}, 50, seed=0)
    assert len(ranged) == 50 and ranged["u"].between(2.0, 4.5).all() and (ranged["v"] >= 0).all()
    assert ranged["u"].nunique() > 10  # base points drawn from the data, one sample each
    with pytest.raises(InputError, match="no training base point has u in"):
        model.sample_frame({"u": (10.0, 11.0)}, 5)


def test_refine_with_the_true_map_reaches_the_fiber_and_keeps_its_spread(trained: tuple[object, object, Path]) -> None:
    from bundlenet import Torus
    from bundlenet.evaluation.metrics import wasserstein

    model, torus = trained[0], Torus()
    base = torch.tensor([[4.5, 0.0], [0.0, -4.5], [-3.182, 3.182]])
    raw = model.sample_frame(base, 200, seed=0)
    refined = model.sample_frame(base, 200, seed=0, refine=True, forward=torus.project)
    before, after = ((torch.tensor(f[["x", "y", "z"]].to_numpy()), f) for f in (raw, refined))
    target = torch.tensor(raw[["u", "v"]].to_numpy())
    error = [(torus.project(x.float()).double() - target).norm(dim=1).mean() for x, _ in (before, after)]
    assert error[0] > 1e-3 and error[1] < 1e-4
    true = torus.sample_fiber(base, 200, torch.Generator().manual_seed(1))
    w2 = [wasserstein(x.reshape(3, 200, 3).float(), true).mean() for x, _ in (before, after)]
    assert w2[1] <= w2[0] * 1.02
    # refinement without a map uses the model's own projection: onto its fiber
    learned = model.sample_frame(base, 50, seed=0, refine=5)
    resim = model.resimulate(torch.tensor(learned[["x", "y", "z"]].to_numpy()))
    assert float((resim - torch.tensor(learned[["u", "v"]].to_numpy())).norm(dim=1).max()) < 1e-3


def test_refine_with_a_numpy_map_by_finite_differences() -> None:
    model = gaussian_model()
    frame = model.sample_frame([1.0], 20, seed=0, refine=10, forward=lambda x: np.asarray(x).sum(axis=1, keepdims=True))
    assert float((frame[["a", "b", "c"]].sum(axis=1) - frame["y"]).abs().max()) < 1e-6


def test_baselines_store_a_resimulation_regressor() -> None:
    from bundlenet import Torus
    from bundlenet.models.baselines.cflow import ConditionalFlow

    torus = Torus()
    data = torus.sample_total(2000, torch.Generator().manual_seed(0))
    model = ConditionalFlow(torus.spec, num_blocks=2, hidden_features=16)
    model.fit_data(data.total, data.base)
    error = (model.resimulate(data.total[:500]) - data.base[:500]).norm(dim=1).mean()
    assert float(error) < 0.1  # base circle of radius 4.5
    again = ConditionalFlow(torus.spec, num_blocks=2, hidden_features=16)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.resimulate(data.total[:5]), model.resimulate(data.total[:5]))
    old = {k: v for k, v in model.state_dict().items() if not k.startswith(("resimulator.", "total_range."))}
    older = ConditionalFlow(torus.spec, num_blocks=2, hidden_features=16)
    older.load_state_dict(old)  # a checkpoint from before the regressor loads
    with pytest.raises(InputError, match="has no re-simulation regressor"):
        older.resimulate(data.total[:5])


@pytest.mark.slow
def test_sample_cli_fixed(trained: tuple[object, object, Path], tmp_path: Path) -> None:
    out = tmp_path / "fixed.csv"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bundlenet.sample",
            f"ckpt_path={trained[2]}",
            "base_points=[[4.5,0.0]]",
            "num_samples=20",
            f"output={out}",
            "fixed={z:0.5}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["u", "v", "x", "y", "z"] and len(frame) == 20 and (frame["z"] == 0.5).all()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bundlenet.sample",
            f"ckpt_path={trained[2]}",
            "base_points=[[4.5,0.0]]",
            f"output={tmp_path / 'bad.csv'}",
            "fixed={w:0.5}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: fixed names 'w'")


@pytest.mark.slow
def test_fixed_inputs_on_a_closed_form_table(tmp_path: Path) -> None:
    """x1, x2 ~ N(0, 1), y = x1 + x2 through a CSV table: fixing x1 = a leaves x2 = y − a."""
    from bundlenet import fit

    x = np.random.default_rng(0).normal(size=(1000, 2))
    path = tmp_path / "sum.csv"
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": x.sum(1)}).to_csv(path, index=False)
    model = fit(path, base="y", run_dir=tmp_path / "run", evaluate=False, max_steps=300, logger="none")
    scale = model.spec.total_scale[1]
    for a, y in ((0.5, 1.0), (-1.0, 0.0)):
        frame = model.sample_frame([y], 200, fixed={"x1": a}, seed=0)
        assert (frame["x1"] == a).all()
        assert float((frame["x2"] - (y - a)).abs().mean()) / scale < 0.02  # scaled units
