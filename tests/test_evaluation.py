"""The evaluation protocol: an exact sampler scores at the noise floor, a shifted one clearly worse;
unconditional models get global metrics only; CIs, validation and the evaluate CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from bundlenet.bundles import GrowingArc, MoebiusBand, RobotArm, Torus
from bundlenet.bundles.base import Bundle
from bundlenet.errors import InputError
from bundlenet.evaluation.protocol import METRICS, Estimate, Evaluation, Protocol, evaluate_model
from bundlenet.models.base import BundleModel
from tests.conftest import REPO

SMALL = Protocol(iterations=3, num_global=800, global_ot_points=300, num_fibers=5, num_points=100, seed=3)

FIBER_METRICS = (*METRICS, "precision", "coverage", "resimulation")  # resimulation where the bundle knows its map


class OracleModel(BundleModel):
    """Samples the true fiber exactly (plus an optional constant shift)."""

    def __init__(self, bundle: Bundle, shift: float = 0.0) -> None:
        super().__init__(bundle.spec)
        self.bundle = bundle
        self.shift = shift
        data = bundle.sample_total(2000, torch.Generator().manual_seed(0))
        self.fit_data(data.total, data.base)

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.bundle.sample_fiber(base, 1, generator).squeeze(1) + self.shift

    def training_step(self, batch: object, batch_idx: int) -> None:
        raise NotImplementedError("an oracle is not trained")


class UnconditionalOracle(OracleModel):
    """Exact global samples that ignore the base point."""

    conditional = False

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.bundle.sample_total(base.shape[0], generator).total


def test_oracle_model_fits_its_data_like_a_trained_one() -> None:
    model = OracleModel(Torus())
    assert model.base_bank.points.shape == (2000, 2)


@pytest.mark.parametrize("bundle", [Torus(), MoebiusBand(), RobotArm(), GrowingArc()], ids=["torus", "moebius", "arm", "arc"])
def test_exact_sampler_scores_at_the_noise_floor_and_a_shifted_one_does_not(bundle: Bundle) -> None:
    exact = evaluate_model(OracleModel(bundle), bundle, SMALL)
    shifted = evaluate_model(OracleModel(bundle, shift=1.0), bundle, SMALL)
    for scope in ("global_metrics", "fiber_metrics"):
        good, bad = getattr(exact, scope), getattr(shifted, scope)
        for name in METRICS:
            floor = good[name].noise_floor.mean
            gap_exact = abs(good[name].model.mean - floor)
            gap_shifted = abs(bad[name].model.mean - floor)
            assert gap_exact < 0.25 * gap_shifted, f"{scope} {name}: exact {gap_exact:.4g} vs shifted {gap_shifted:.4g}"
        for name in ("w1", "w2"):
            assert 0.8 < good[name].ratio < 1.25, f"{scope} {name} ratio {good[name].ratio}"
            assert bad[name].ratio > 1.4, f"{scope} {name} ratio {bad[name].ratio}"


class DiscSampler(OracleModel):
    """Fills the disc inside each torus fiber circle (uniform in the disc): the failure a W2 of
    200 points reads as mild."""

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        torus = self.bundle
        phi = torch.atan2(base[:, 1], base[:, 0])
        angle = 2 * math.pi * torch.rand(base.shape[0], generator=generator)
        radius = torus.minor_radius * torch.rand(base.shape[0], generator=generator).sqrt()
        ring = torus.major_radius + radius * angle.cos()
        return torch.stack([ring * phi.cos(), ring * phi.sin(), radius * angle.sin()], dim=1)


class HalfSegmentSampler(OracleModel):
    """Draws only the half t > 0 of each Möbius fiber segment: every sample is on the fiber."""

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        band = self.bundle
        s = torch.atan2(base[:, 1], base[:, 0])
        t = band.half_width * torch.rand(base.shape[0], generator=generator)
        return band.embed(s, t)


def test_exact_sampler_has_zero_precision_error_and_floor_coverage() -> None:
    for bundle in (Torus(), MoebiusBand(), RobotArm(), GrowingArc()):
        fiber = evaluate_model(OracleModel(bundle), bundle, SMALL).fiber_metrics
        assert fiber["precision"].model.mean < 1e-4
        assert fiber["resimulation"].model.mean < 1e-4 and fiber["resimulation"].ratio is None
        assert 0.8 < fiber["coverage"].ratio < 1.25


def test_precision_and_coverage_see_a_filled_disc_and_a_half_segment() -> None:
    torus = Torus()
    disc = evaluate_model(DiscSampler(torus), torus, SMALL).fiber_metrics
    assert disc["precision"].model.mean > 0.5  # mean distance to the circle of radius 2: 2/3
    assert disc["coverage"].ratio > 1.5
    band = MoebiusBand()
    half = evaluate_model(HalfSegmentSampler(band), band, SMALL).fiber_metrics
    assert half["precision"].model.mean < 1e-4  # every point is on the fiber ...
    assert half["coverage"].ratio > 5  # ... but half of it is never drawn


def test_unconditional_model_gets_global_metrics_only() -> None:
    bundle = Torus()
    model = UnconditionalOracle(bundle)
    with pytest.raises(InputError, match="unconditional"):
        model.sample_fiber([[4.5, 0.0]], 10)
    result = evaluate_model(model, bundle, SMALL)
    assert result.fiber_metrics is None
    assert 0.85 < result.global_metrics["w2"].ratio < 1.2
    payload = result.to_dict()
    assert isinstance(payload["fiber"], str) and "not applicable" in payload["fiber"]
    assert "n/a (unconditional model)" in result.table()
    json.dumps(payload, allow_nan=False)  # standard JSON: no NaN


def test_evaluation_is_reproducible_and_reports_every_metric() -> None:
    bundle = Torus()
    a = evaluate_model(OracleModel(bundle), bundle, SMALL)
    b = evaluate_model(OracleModel(bundle), bundle, SMALL)
    assert a.to_dict()["iterations"] == b.to_dict()["iterations"]
    assert isinstance(a, Evaluation) and set(a.fiber_metrics) == set(FIBER_METRICS)
    assert set(a.global_metrics) == set(METRICS)
    for values in a.iterations["fiber"]["model"].values():
        assert len(values) == SMALL.iterations
    table = a.table()
    for name in METRICS:
        assert f"fiber   {name}" in table and f"global  {name}" in table
    assert "fiber   precision" in table and "fiber   coverage" in table


def test_evaluation_rejects_a_model_of_other_data() -> None:
    with pytest.raises(InputError, match="pass the data= the model was trained on"):
        evaluate_model(OracleModel(Torus()), MoebiusBand(), SMALL)


def test_bootstrap_interval_brackets_the_mean() -> None:
    values = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.0, 1.3, 0.8, 1.0]
    est = Estimate.of(values, 0.95, seed=0)
    assert est.low < est.mean < est.high
    assert est.mean == pytest.approx(sum(values) / len(values))
    assert est.high - est.low < 0.4
    assert Estimate.of([2.0]).low is None and Estimate.of([2.0, 2.0]).low == 2.0
    assert math.isnan(Estimate.of([float("nan")]).mean)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"iterations": 0}, "evaluation.iterations"),
        ({"num_points": 1}, "evaluation.num_points"),
        ({"global_ot_points": 1}, "evaluation.global_ot_points"),
        ({"confidence": 1.5}, "evaluation.confidence"),
    ],
)
def test_protocol_rejects_bad_sizes(values: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Protocol(**values)  # type: ignore[arg-type]


def test_protocol_defaults_are_the_authors() -> None:
    from omegaconf import OmegaConf

    p = Protocol.from_config(OmegaConf.load(REPO / "conf" / "evaluation" / "default.yaml"))
    assert (p.iterations, p.num_global, p.num_fibers, p.num_points) == (10, 4000, 15, 200)
    assert p == Protocol()


def run_evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "bundlenet.evaluate", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


SMALL_ARGS = (
    "evaluation.iterations=2",
    "evaluation.num_global=300",
    "evaluation.global_ot_points=100",
    "evaluation.num_fibers=3",
    "evaluation.num_points=50",
)


def test_evaluate_cli_needs_the_data_of_a_bare_checkpoint(tmp_path: Path, trained) -> None:
    _, _, ckpt = trained  # written by a plain Trainer: no data config recorded
    proc = run_evaluate(f"ckpt_path={ckpt}", *SMALL_ARGS, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not record its data; pass data=" in lines[0], proc.stderr

    out = tmp_path / "evaluation.json"
    proc = run_evaluate(f"ckpt_path={ckpt}", "data=torus", f"output={out}", *SMALL_ARGS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "noise floor mean [95% CI]" in proc.stdout and "evaluated in" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["bundle"] == "Torus" and payload["protocol"]["iterations"] == 2
    assert set(payload["fiber"]) == set(FIBER_METRICS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation.json"]  # no Hydra folders


def test_evaluate_cli_rejects_other_data_in_one_line(tmp_path: Path, trained) -> None:
    _, _, ckpt = trained
    proc = run_evaluate(f"ckpt_path={ckpt}", "data=moebius", *SMALL_ARGS, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "data=" in lines[0], proc.stderr


def test_report_gives_a_swept_data_option_its_own_floor_row(tmp_path: Path) -> None:
    """``data=digits data.base=label,ink``: two data sets with different floors, not one."""
    from bundlenet.evaluation.metrics import CloudMetrics
    from bundlenet.evaluation.report import Run, scope_table

    def evaluation(floor: float) -> dict[str, object]:
        result = {
            "model": {"mean": 2 * floor, "low": None, "high": None},
            "noise_floor": {"mean": floor, "low": None, "high": None},
        }
        return {"fiber": dict.fromkeys(CloudMetrics.names(), result)}

    runs = [
        Run(tmp_path / f"{base}{model}", "digits", model, evaluation(floor), {}, {"data.base": base})
        for base, floor in (("label", 1.0), ("ink", 7.0))
        for model in ("bundlenet", "cflow")
    ]
    floors = [line for line in scope_table(runs, "fiber").splitlines() if "*noise floor*" in line]
    assert len(floors) == 2
    assert floors[0].startswith("| digits data.base=ink |") and "| 7.00 |" in floors[0]
    assert floors[1].startswith("| digits data.base=label |") and "| 1.00 |" in floors[1]


class TableOracle(BundleModel):
    """Samples a synthetic bundle's exact fibers but knows only a table of its samples (the spec
    of ``data=csv``: minmax10 scaling), as a model trained on that CSV does."""

    def __init__(self, bundle: Bundle, path: Path, shift: float = 0.0) -> None:
        from bundlenet.data.csv_table import csv_bundle

        table = csv_bundle(path, list(bundle.base_names))
        super().__init__(table.spec)
        self.bundle, self.shift = bundle, shift
        self.fit_data(*table.train_tensors())

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        true = self.bundle.sample_fiber(self.spec.to_original(base, "base"), 1, generator).squeeze(1) + self.shift
        return self.spec.to_scaled(true, "total")

    def training_step(self, batch: object, batch_idx: int) -> None:
        raise NotImplementedError("an oracle is not trained")


def test_a_model_of_a_bundles_table_is_evaluated_against_the_exact_bundle(tmp_path: Path) -> None:
    """``data=csv`` on a table of a synthetic bundle's samples, evaluated with that bundle: in the
    bundle's own units, with its exact fibers and map."""
    bundle = RobotArm()
    sample = bundle.sample_total(1500, torch.Generator().manual_seed(0))
    rows = torch.cat([sample.total, sample.base], 1).tolist()
    path = tmp_path / "arm.csv"
    path.write_text(
        ",".join([*bundle.total_names, *bundle.base_names]) + "\n" + "".join(",".join(f"{v:.9g}" for v in r) + "\n" for r in rows)
    )
    exact = evaluate_model(TableOracle(bundle, path), bundle, SMALL).fiber_metrics
    shifted = evaluate_model(TableOracle(bundle, path, shift=0.1), bundle, SMALL).fiber_metrics
    assert exact is not None and shifted is not None
    assert exact["precision"].model.mean < 1e-4 and exact["resimulation"].model.mean < 1e-4
    assert 0.85 < exact["w2"].ratio < 1.2 < shifted["w2"].ratio
    assert shifted["precision"].model.mean > 0.05


class DivergedModel(OracleModel):
    """A model whose samples hold NaN and inf, as a diverged one's do."""

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = super().generate(base, generator)
        x[::7, 0] = float("nan")
        x[1::7, 1] = float("inf")
        return x


def test_non_finite_samples_are_never_scored() -> None:
    from bundlenet.errors import BundleNetError

    with pytest.raises(
        BundleNetError, match=r"global samples contain non-finite values \(\d+ of 800 points\), so they are not scored"
    ):
        evaluate_model(DivergedModel(Torus()), Torus(), SMALL)
