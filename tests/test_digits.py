"""data=digits: images over their class or their ink, image figures, format=png, image metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from bundlenet.data.datamodule import BundleDataModule
from bundlenet.data.images import DigitsBundle
from bundlenet.errors import InputError
from tests.test_checkpoint import run_sample
from tests.test_configs import run_train

SMALL = [
    "model.num_blocks=1",
    "model.hidden_features=16",
    "model.depth=1",
    "trainer.max_steps=6",
    "trainer.val_check_interval=null",
    "trainer.check_val_every_n_epoch=2",
    "evaluation.iterations=1",
    "evaluation.num_fibers=2",
    "evaluation.num_points=20",
    "evaluation.coverage_points=40",
    "evaluation.num_global=50",
    "evaluation.plot_fibers=2",
    "~callbacks.progress_bar",
]


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    return torch.tensor(digits.data, dtype=torch.float64), torch.tensor(digits.target, dtype=torch.float64)


@pytest.fixture(scope="module", params=["label", "ink"])
def bundle(request: pytest.FixtureRequest) -> DigitsBundle:
    return DigitsBundle(request.param)


def test_ink_map_is_exact_in_both_units(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pixels, _ = images
    ink = DigitsBundle("ink")
    x = pixels[:50].float()
    assert torch.allclose(ink.project(x)[:, 0], x.sum(1))
    scaled = ink.spec.to_scaled(x, "total")
    assert torch.allclose(ink.spec.to_original(ink.project(scaled, units="scaled"), "base")[:, 0], x.sum(1), rtol=1e-5)
    # a point on its own fiber is at distance 0; one pixel 8 too bright is 8 / √64 = 1 from it
    y = x.sum(1, keepdim=True)
    assert torch.allclose(ink.distance_to_fiber(x.unsqueeze(1), y), torch.zeros(50, 1))
    brighter = x.clone()
    brighter[:, 10] += 8
    assert torch.allclose(ink.distance_to_fiber(brighter.unsqueeze(1), y), torch.ones(50, 1))
    assert torch.allclose(
        ink.distance_to_fiber(ink.spec.to_scaled(brighter, "total").unsqueeze(1), ink.spec.to_scaled(y, "base"), units="scaled"),
        torch.ones(50, 1) / 1.6,
    )


def test_label_fibers_are_held_out_images_of_their_digit(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pixels, target = images
    bundle = DigitsBundle("label")
    fibers = bundle.sample_fiber(torch.tensor([[3.0], [7.0]]), 40, torch.Generator().manual_seed(0))
    assert fibers.shape == (2, 40, 64)
    held_out = torch.zeros(pixels.shape[0], dtype=torch.bool)
    held_out[bundle.test_index] = True
    for fiber, digit in zip(fibers, (3, 7)):
        matches = (fiber.double().unsqueeze(1) == pixels.unsqueeze(0)).all(-1)  # [40, 1797]
        assert (matches & held_out & (target == digit)).any(1).all()
    floor = bundle.sample_fiber_floor(torch.tensor([[3.0]]), 40, torch.Generator().manual_seed(0))[0]
    train = pixels[bundle.train_index]
    assert all((train == image.double()).all(1).any() for image in floor)  # the floor draws training images


def test_spec_is_an_image_of_integer_pixels(bundle: DigitsBundle) -> None:
    spec = bundle.spec
    assert spec.image_shape == (8, 8) and spec.total_dim == 64 and spec.total_names[9] == "pixel_1_1"
    assert spec.fiber_span == 60  # 61 pixels vary; one direction is the base's
    assert len(set(spec.total_scale or ())) == 1  # one scale for every pixel
    for support in spec.total_support or ():
        assert support.lower == 0.0 and support.upper == 16.0 and support.values is not None
    assert spec.total_support is not None and spec.total_support[0].values == (0.0,)  # a corner pixel: always 0
    assert type(spec).coerce(spec.to_dict()) == spec  # stored in checkpoints


def test_real_images_score_as_digits_and_noise_does_not(bundle: DigitsBundle) -> None:
    gen = torch.Generator().manual_seed(1)
    base = bundle.sample_total(4, gen).base
    real = bundle.sample_fiber(base, 50, gen)
    noise = torch.randint(0, 17, real.shape, generator=gen).float()
    good, bad = bundle.fiber_scores(real, base), bundle.fiber_scores(noise, base)
    assert good["confidence"].mean() > 0.8 > bad["confidence"].mean()
    if bundle.base_kind == "label":
        assert good["accuracy"].mean() > 0.9 and bad["accuracy"].mean() < 0.5
    else:
        assert good["ink_error"].mean() < 0.05 and bad["ink_error"].mean() > 0.3


def test_bad_base_names_the_choices() -> None:
    with pytest.raises(InputError, match="data.base must be one of label, ink"):
        DigitsBundle("colour")


def test_auto_batches_of_wide_rows_hold_at_most_32768_numbers() -> None:
    dm = BundleDataModule(DigitsBundle("label"), num_train=1000)
    assert dm.batching() == (512, 2)


@pytest.mark.slow
@pytest.mark.parametrize("base", ["ink"])  # label trains in test_configs' every-data-config test
def test_train_draws_image_figures_and_sample_writes_png_grids(tmp_path: Path, base: str) -> None:
    run = tmp_path / "run"
    proc = run_train("data=digits", f"data.base={base}", *SMALL, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("fibers.png", "latent.png", "metrics.json"):
        assert (run / name).exists(), name
    fiber = json.loads((run / "metrics.json").read_text())["fiber"]
    assert "confidence" in fiber and ("accuracy" if base == "label" else "ink_error") in fiber
    out = tmp_path / "fibers.csv"
    point = "[[3],[8]]" if base == "label" else "[[250],[350]]"
    proc = run_sample(
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"base_points={point}",
        "num_samples=9",
        "format=png",
        f"output={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fibers_0.png").stat().st_size > 0 and (tmp_path / "fibers_1.png").exists()
    values = np.loadtxt(out, delimiter=",", skiprows=1)
    assert values.shape == (18, 65) and values[:, 1:].min() >= 0 and values[:, 1:].max() <= 16
    assert np.allclose(values[:, 1:], np.round(values[:, 1:]))  # pixels keep integer values
    out.unlink()  # the CSV is gone, its image grids are not: they are never overwritten
    before = (tmp_path / "fibers_0.png").read_bytes()
    again = run_sample(
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"base_points={point}", "format=png", f"output={out}", cwd=tmp_path
    )
    assert again.returncode != 0 and "fibers_0.png exists" in again.stderr.strip().splitlines()[-1]
    assert (tmp_path / "fibers_0.png").read_bytes() == before and not out.exists()


def test_png_format_needs_an_image_model(trained: tuple[object, object, Path], tmp_path: Path) -> None:
    _, _, ckpt = trained
    proc = run_sample(f"ckpt_path={ckpt}", "base_points=[[0.5,0.5]]", "format=png", f"output={tmp_path / 'f.csv'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "format=png needs a model trained on images" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "f.csv").exists()


def test_benchmark_row_times_a_step_and_sampling_over_the_ink() -> None:
    from bundlenet.cli.benchmark import row_digits

    row = row_digits("bundlenet", "ink", timed_steps=1)
    assert row["batch"] == 512 and "ink" in row["row"]
    assert row["s_per_step"] > 0 and row["sample_1000_images_s"] > 0
