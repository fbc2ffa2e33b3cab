"""Saved outputs: a few training steps of each model family, then its samples for fixed seeds,
compared with the numbers saved in ``tests/data/reference_samples.npz``; and a checkpoint
written by release 0.2.0 (``tests/data/bundlenet-0.2.0.ckpt``) still loads and samples the same.

A change of these numbers is a change of behaviour. After an intended one, write the samples anew
with ``pytest tests/test_reference.py --regenerate-reference`` and commit them. The release's
checkpoint and its saved outputs (the ``bundlenet-0.2.0/`` keys) are never rewritten.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from bundlenet.checkpoint import load_model
from bundlenet.models.base import BundleModel
from tests.test_baselines import build, fit

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "reference_samples.npz"
OLD_CHECKPOINT = DATA / "bundlenet-0.2.0.ckpt"
RELEASE = "bundlenet-0.2.0/"  # the saved outputs of OLD_CHECKPOINT (never regenerated)
STEPS = 8
# float32 on CPU: another CPU's kernels may round differently over 8 steps; a change of behaviour
# moves the outputs by far more
TOLERANCE = dict(rtol=1e-4, atol=1e-5)
BASE = torch.tensor([[4.5, 0.0], [0.0, -4.5]])
SMALL = {
    "bundlenet": ["model.num_nbhds=3", "model.hidden_features=16", "model.num_blocks=2", "model.num_bins=4"],
    "bundlenet_paper": ["model.num_nbhds=3", "model.hidden_features=16", "model.num_blocks=2"],
    "cflow": ["model.hidden_features=16"],
    "cfm": ["model.hidden_features=16"],
    "wgan": ["model.hidden_features=16"],
    "cgan_nbhd": ["model.hidden_features=16", "model.num_nbhds=3"],
}


def train(name: str, root: Path) -> BundleModel:
    """``model=name`` with small options, trained ``STEPS`` full-batch steps on 200 torus points
    (its last checkpoint in ``root/checkpoints``)."""
    model, dm = build(name, SMALL[name])
    pl.seed_everything(0, verbose=False)
    fit(model, dm, steps=STEPS, root=root)
    return model


def outputs(name: str, model: BundleModel) -> dict[str, np.ndarray]:
    """The model's samples (and densities, where it has one) for fixed seeds, in float64."""
    out = {"sample": model.sample(30, seed=1)}
    if model.conditional:
        out["sample_fiber"] = model.sample_fiber(BASE, 10, seed=2)
    if model.has_density:
        points = model.sample_fiber(BASE[:1], 20, seed=3)[0]
        out["log_prob"] = model.log_prob(points, BASE[:1])
    if name == "bundlenet":
        points = model.sample(20, seed=4)
        chart = model.trivialize(points)
        out["trivialize_base"], out["trivialize_fiber"] = chart.base, chart.fiber
        out["sample_frame_fixed"] = torch.tensor(model.sample_frame([4.5, 0.0], 6, fixed={"z": 0.5}, seed=5, steps=20).values)
        out["sample_frame_refine"] = torch.tensor(model.sample_frame([[4.5, 0.0]], 6, seed=6, refine=3).values)
    return {f"{name}/{key}": value.detach().double().cpu().numpy() for key, value in out.items()}


@pytest.fixture(scope="module")
def current(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The outputs of today's code; written to ``tests/data`` under ``--regenerate-reference``."""
    root = tmp_path_factory.mktemp("reference")
    result: dict[str, np.ndarray] = {}
    for name in SMALL:
        result.update(outputs(name, train(name, root / name)))
    if request.config.getoption("--regenerate-reference"):
        DATA.mkdir(exist_ok=True)
        saved = np.load(REFERENCE)  # the release's outputs are kept: its checkpoint does not change
        np.savez(REFERENCE, **result, **{k: saved[k] for k in saved.files if k.startswith(RELEASE)})
    return result


@pytest.mark.parametrize("name", list(SMALL))
def test_samples_match_the_saved_ones(current: dict[str, np.ndarray], name: str) -> None:
    saved = np.load(REFERENCE)
    keys = sorted(k for k in saved.files if k.startswith(f"{name}/") and not k.startswith(RELEASE))
    assert keys and keys == sorted(k for k in current if k.startswith(f"{name}/"))
    for key in keys:
        np.testing.assert_allclose(current[key], saved[key], err_msg=key, **TOLERANCE)


def test_a_checkpoint_of_release_0_2_0_loads_and_samples_the_same() -> None:
    model = load_model(OLD_CHECKPOINT)
    saved = np.load(REFERENCE)
    current = outputs("bundlenet", model)
    for key in ("sample", "sample_fiber", "log_prob", "trivialize_fiber"):
        np.testing.assert_allclose(current[f"bundlenet/{key}"], saved[RELEASE + key], err_msg=key, **TOLERANCE)
