"""Checkpoints are self-contained; the sample CLI writes the documented CSV; bad input is one line."""

from __future__ import annotations

import csv
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bundlenet import BundleNet
from bundlenet.checkpoint import load_model
from bundlenet.errors import CheckpointError, InputError
from tests.conftest import REPO


def test_loaded_model_samples_exactly_like_the_trained_one(trained) -> None:
    model, _, ckpt = trained
    base = torch.tensor([[4.5, 0.0], [0.0, -4.5]])
    expected = model.sample_fiber(base, 50, seed=3)
    for loaded in (BundleNet.load_from_checkpoint(ckpt), load_model(ckpt)):
        torch.testing.assert_close(loaded.sample_fiber(base, 50, seed=3), expected)
        torch.testing.assert_close(loaded.sample(20, seed=1), model.sample(20, seed=1))
    assert isinstance(load_model(ckpt), BundleNet)


def test_checkpoint_loads_with_weights_only(trained) -> None:
    _, _, ckpt = trained
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["bundlenet"]["model"] == "bundlenet.models.bundlenet.BundleNet"
    assert raw["hyper_parameters"]["spec"]["total_names"] == ["x", "y", "z"]


def test_sample_fiber_rejects_bad_base_points(trained) -> None:
    model, _, _ = trained
    with pytest.raises(InputError, match=r"dimension 2 \(u, v\), got dimension 3"):
        model.sample_fiber(torch.zeros(1, 3))
    with pytest.raises(InputError, match="NaN"):
        model.sample_fiber([[float("nan"), 1.0]])
    with pytest.raises(InputError, match="num_samples must be a positive integer"):
        model.sample_fiber([[4.5, 0.0]], 0)


def test_missing_or_corrupt_checkpoint_is_one_clear_error(tmp_path: Path, trained) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "nope.ckpt")
    _, _, ckpt = trained
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(Path(ckpt).read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a bundlenet checkpoint"):
        load_model(foreign)


def run_sample(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "bundlenet.sample", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_sample_cli_writes_documented_csv(tmp_path: Path, trained) -> None:
    _, _, ckpt = trained
    out = tmp_path / "f.csv"
    proc = run_sample(
        f"ckpt_path={ckpt}", "base_points=[[4.5,0.0],[0.0,4.5]]", "num_samples=30", f"output={out}", "seed=0", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["u", "v", "x", "y", "z"]
    assert len(rows) == 1 + 2 * 30
    assert [float(v) for v in rows[1][:2]] == [4.5, 0.0] and [float(v) for v in rows[-1][:2]] == [0.0, 4.5]
    assert list(tmp_path.iterdir()) == [out]  # no Hydra folders or log files left behind

    points = tmp_path / "points.csv"
    points.write_text("v,u\n0.0,4.5\n")
    out2 = tmp_path / "g.csv"
    proc = run_sample(f"ckpt_path={ckpt}", f"base_points_file={points}", "num_samples=5", f"output={out2}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(out2.open()))
    assert len(rows) == 6 and [float(v) for v in rows[1][:2]] == [4.5, 0.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["base_points=[[4.5,0.0,1.0]]"], "dimension 2 (u, v), got dimension 3"),
        (["base_points=[[nan,0.0]]"], "NaN"),
        (["base_points=[[4.5,abc]]"], "base_points must be a list of 2-number lists"),
        (["ckpt_path=/nonexistent/last.ckpt", "base_points=[[4.5,0.0]]"], "checkpoint not found"),
        (["base_points=[[4.5,0.0]]", "num_samples=0"], "num_samples must be a positive integer"),
    ],
)
def test_sample_cli_bad_input_is_one_line(tmp_path: Path, trained, args: list[str], message: str) -> None:
    _, _, ckpt = trained
    out = tmp_path / "f.csv"
    proc = run_sample(f"ckpt_path={ckpt}", *args, f"output={out}", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert not out.exists()


def test_sample_cli_refuses_to_overwrite(tmp_path: Path, trained) -> None:
    _, _, ckpt = trained
    out = tmp_path / "f.csv"
    out.write_text("precious\n")
    proc = run_sample(f"ckpt_path={ckpt}", "base_points=[[4.5,0.0]]", f"output={out}", cwd=tmp_path)
    assert proc.returncode == 2 and "overwrite=true" in proc.stderr
    assert out.read_text() == "precious\n"


def test_streaming_checkpoint_io_is_atomic(tmp_path: Path) -> None:
    """A checkpoint is streamed to a temporary file and renamed: it loads back; a save that
    fails half-way leaves the previous file as it was and no temporary file behind."""
    from bundlenet.checkpoint import StreamingCheckpointIO

    io = StreamingCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(5.0)}, "global_step": 3}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 3
    before = path.read_bytes()
    with pytest.raises((AttributeError, pickle.PicklingError)):  # a local lambda: AttributeError before Python 3.14
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "bad": lambda: None}, path)  # cannot be pickled
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    # the mode of a plainly created file, not the temporary file's 0600
    plain = path.parent / "plain"
    plain.write_bytes(b"")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
