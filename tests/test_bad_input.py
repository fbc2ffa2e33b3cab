"""Bad input costs one clear line that names the fix, and changes no existing file.

Most cases run the CLI code in-process (fast); a few run the real command lines to check that
the error reaches the user as a single ``error:`` line with exit code 2.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from bundlenet.checkpoint import load_model
from bundlenet.cli.common import check_group_choices
from bundlenet.errors import BundleNetError, CheckpointError, InputError
from tests.conftest import REPO, make_torus_model

CONF = REPO / "conf"


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text.strip(), text
    return text


def compose_cfg(name: str, overrides: list[str], out: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    if name == "train":
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
    return cfg


# ----------------------------------------------------------------------------- train.py
TRAIN_CASES = [
    (["model.num_nbhds=0"], "model.num_nbhds must be at least 1"),
    (["data.num_train=50", "model.num_nbhds=80"], "model.num_nbhds=80 exceeds the 50 distinct base points"),
    (["model.fiber_context=index"], "model.fiber_context must be chart, none or base"),
    (["model.num_circles=-1"], "model.num_circles must be >= 0"),
    (["data.fiber_circles=two"], "data.fiber_circles must be auto, null"),
    (["model=bundlenet_paper", "model.num_circles=2", "model.total_dim=4"], "model.num_circles=2 needs 2*num_circles <= model.total_dim - d_B"),
    (["model=bundlenet_paper", "model.total_dim=2"], "model.total_dim=2 is too small"),
    (["model=bundlenet_paper", "model.overlap=0"], "model.overlap must be between 1 and model.num_nbhds"),
    (["model=bundlenet_paper", "model.coupling=glow"], "model.coupling must be 'rq_spline' or 'affine'"),
    (["model=bundlenet_paper", "model.context=index"], "model.context must be one of centre, embedding, both"),
    (["model=bundlenet_paper", "+model.loss_weights.kl=1.0"], "unknown model.loss_weights keys ['kl']"),
    (["data.num_train=1"], "data.num_train must be at least 2"),
    (["data.batch_size=1"], "data.batch_size must be an integer >= 2"),
    (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path=/nonexistent/last.ckpt not found"),
]


@pytest.mark.parametrize(("overrides", "message"), TRAIN_CASES, ids=[c[1][:40] for c in TRAIN_CASES])
def test_train_rejects_bad_options(tmp_path: Path, overrides: list[str], message: str) -> None:
    from bundlenet.cli.train import train
    from bundlenet.errors import user_error

    cfg = compose_cfg("train", [*overrides, "logger=none", "trainer.max_epochs=1"], tmp_path / "run")
    with pytest.raises(Exception) as info:
        train(cfg)
    err = user_error(info.value)
    assert err is not None, f"not a user error: {info.value!r}"
    assert message in one_line(err)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(("arg", "message"), [
    ("data=wine2", "unknown data 'wine2'; choose one of:"),
    ("model=bundlenet,gan", "unknown model 'gan'; choose one of: bundlenet"),
])
def test_unknown_config_names_list_the_choices(arg: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        check_group_choices(CONF, [arg])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (err.count("\n") == 0 and message in err and "torus" in err) or "bundlenet" in err


def test_train_cli_error_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "data=nope"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: unknown data 'nope'")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- sample CLI
def sample_cfg(tmp_path: Path, ckpt: Path, *overrides: str):
    return compose_cfg("sample", [f"ckpt_path={ckpt}", f"output={tmp_path / 'out.csv'}", *overrides], tmp_path)


def write_checkpoint_variants(tmp_path: Path, ckpt: Path) -> dict[str, Path]:
    raw = Path(ckpt).read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(raw[: len(raw) // 3])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    old = tmp_path / "old.ckpt"
    data = torch.load(ckpt, weights_only=True)
    data["bundlenet"]["version"] = "7.0.0"
    torch.save(data, old)
    return {"truncated": truncated, "garbage": garbage, "foreign": foreign, "old": old}


SAMPLE_CASES = [
    (["base_points=[[4.5,0.0,1.0]]"], "base points must have dimension 2 (u, v), got dimension 3"),
    (["base_points=[4.5]"], "base points must have dimension 2 (u, v), got dimension 1"),
    (["base_points=[[nan,0.0]]"], "base point 0 contains NaN or inf"),
    (["base_points=[[4.5,inf]]"], "base point 0 contains NaN or inf"),
    (["base_points=[[4.5,abc]]"], "base_points must be a list of 2-number lists (u,v)"),
    (["base_points=[[4.5,0.0]]", "num_samples=0"], "num_samples must be a positive integer, got 0"),
    (["base_points=[[4.5,0.0]]", "num_samples=-5"], "num_samples must be a positive integer, got -5"),
    ([], "give exactly one of base_points"),
    (["base_points=[[4.5,0.0]]", "base_points_file=points.csv"], "give exactly one of base_points"),
    (["base_points_file=/nonexistent/points.csv"], "base_points_file not found"),
    (["ckpt_path=/nonexistent/last.ckpt", "base_points=[[4.5,0.0]]"], "checkpoint not found: /nonexistent/last.ckpt"),
]


@pytest.mark.parametrize(("overrides", "message"), SAMPLE_CASES, ids=[c[1][:40] for c in SAMPLE_CASES])
def test_sample_rejects_bad_input(tmp_path: Path, trained, overrides: list[str], message: str) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    (tmp_path / "keep.txt").write_text("existing\n")
    before = snapshot(tmp_path)
    cfg = sample_cfg(tmp_path, ckpt, *overrides)
    with pytest.raises(BundleNetError) as info:
        sample(cfg)
    assert message in one_line(info.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("a,b\n1,2\n", "lacks column(s) ['u', 'v']; its header is ['a', 'b']"),
    ("u,v\n1,x\n", "non-numeric or short row"),
])
def test_sample_rejects_bad_base_points_file(tmp_path: Path, trained, content: str, message: str) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    points = tmp_path / "points.csv"
    points.write_text(content)
    with pytest.raises(InputError) as info:
        sample(sample_cfg(tmp_path, ckpt, f"base_points_file={points}"))
    assert message in one_line(info.value)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(("variant", "message"), [
    ("truncated", "cannot read checkpoint"),
    ("garbage", "cannot read checkpoint"),
    ("foreign", "is not a bundlenet checkpoint"),
    ("old", "was written by bundlenet 7.0.0, incompatible"),
])
def test_bad_checkpoints_are_one_clear_error(tmp_path: Path, trained, variant: str, message: str) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    path = write_checkpoint_variants(tmp_path, ckpt)[variant]
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError) as info:
        sample(sample_cfg(tmp_path, path, "base_points=[[4.5,0.0]]"))
    assert message in one_line(info.value)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert snapshot(tmp_path) == before


def test_existing_output_is_never_replaced(tmp_path: Path, trained) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    with pytest.raises(InputError, match="exists; choose another output= or pass overwrite=true"):
        sample(sample_cfg(tmp_path, ckpt, "base_points=[[4.5,0.0]]"))
    assert out.read_text() == "precious\n"
    sample(sample_cfg(tmp_path, ckpt, "base_points=[[4.5,0.0]]", "overwrite=true", "num_samples=3"))
    assert len(out.read_text().splitlines()) == 4


# ----------------------------------------------------------------------------- Python API
def test_training_data_with_nan_or_inf_is_refused() -> None:
    model, dm = make_torus_model()
    total, base = dm.train_tensors()
    for bad in (float("nan"), float("inf")):
        broken = total.clone()
        broken[7, 1] = bad
        with pytest.raises(InputError, match="training point 7 contains NaN or inf"):
            model.fit_data(broken, base)


def test_far_base_point_warns_with_its_values_and_still_samples(trained, caplog: pytest.LogCaptureFixture) -> None:
    model, _, _ = trained
    with caplog.at_level(logging.WARNING, logger="bundlenet"):
        x = model.sample_fiber([[40.0, 0.0], [4.5, 0.0]], 5, seed=0)
    assert x.shape == (2, 5, 3) and torch.isfinite(x).all()
    far = [r.getMessage() for r in caplog.records if "extrapolated" in r.getMessage()]
    assert len(far) == 1 and "base point 0 (u=40, v=0)" in far[0] and "training range: u " in far[0]


def test_tiny_neighbourhoods_after_kmeans_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    from bundlenet.nn.cover import Cover

    base = torch.cat([torch.randn(200, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([[50.0, 50.0]])])
    with caplog.at_level(logging.WARNING, logger="bundlenet"):
        sizes = Cover(4, 2).fit(base)
    assert int(sizes.min()) == 1
    assert any("fewer than 2 training points; lower model.num_nbhds" in r.getMessage() for r in caplog.records)
