"""Models trained in scaled units take and give original units by default (spec scaling)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from bundlenet import BundleNet
from bundlenet.bundles.base import BundleSpec
from bundlenet.checkpoint import load_model
from bundlenet.errors import InputError

SPEC = BundleSpec(
    ("quality",),
    ("acid", "sugar", "alcohol"),
    0,
    base_offset=(3.0,),
    base_scale=(0.6,),
    total_offset=(4.0, 0.5, 8.0),
    total_scale=(1.2, 6.0, 0.6),
)


@pytest.fixture(scope="module")
def model() -> BundleNet:
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(300, 1, generator=gen) * 10  # scaled units, [0, 10]
    total = torch.cat([base + torch.randn(300, 1, generator=gen), torch.rand(300, 2, generator=gen) * 10], dim=1)
    m = BundleNet(
        SPEC, num_nbhds=3, num_blocks=2, hidden_features=16, depth=1, optimizer=functools.partial(torch.optim.Adam, lr=1e-3)
    )
    m.fit_data(total, base)
    return m.eval()


def test_sample_fiber_converts_base_in_and_samples_out(model: BundleNet) -> None:
    original_base = torch.tensor([[6.0], [4.2]])
    scaled_base = SPEC.to_scaled(original_base, "base")
    torch.testing.assert_close(model.check_base(original_base), scaled_base)
    torch.testing.assert_close(model.check_base(scaled_base, units="scaled"), scaled_base)
    in_original = model.sample_fiber(original_base, 40, seed=1)
    in_scaled = model.sample_fiber(scaled_base, 40, seed=1, units="scaled")
    torch.testing.assert_close(in_original, SPEC.to_original(in_scaled, "total"))
    assert not torch.allclose(in_original, in_scaled)


def test_sample_and_project_use_original_units_by_default(model: BundleNet) -> None:
    x, base = model.sample(50, seed=2, return_base=True)
    xs, bs = model.sample(50, seed=2, return_base=True, units="scaled")
    torch.testing.assert_close(x, SPEC.to_original(xs, "total"))
    torch.testing.assert_close(base, SPEC.to_original(bs, "base"))
    assert float(base.min()) >= 3.0 - 1e-4 and float(base.max()) <= 9.0 + 1e-4  # quality range, not [0, 10]
    torch.testing.assert_close(model.project(x), SPEC.to_original(model.project(xs, units="scaled"), "base"))
    t = model.trivialize(x)
    torch.testing.assert_close(t.fiber, model.trivialize(xs, units="scaled").fiber)
    with pytest.raises(InputError, match="units must be original or scaled"):
        model.sample_fiber([[6.0]], 3, units="meters")


def test_checkpoint_keeps_the_scaling(model: BundleNet, tmp_path: Path) -> None:
    import pytorch_lightning as pl

    trainer = pl.Trainer(max_epochs=0, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["spec"]["total_scale"] == [1.2, 6.0, 0.6]
    loaded = load_model(path)
    assert loaded.spec == SPEC
    torch.testing.assert_close(loaded.sample_fiber([[6.0]], 20, seed=0), model.sample_fiber([[6.0]], 20, seed=0))
