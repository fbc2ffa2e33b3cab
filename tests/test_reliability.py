"""The checkpoint on disk is the model that was trained: after resume, max_time, Ctrl-C, a
failed save or a second job in the same run directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from bundlenet.callbacks import FinalCheckpoint
from bundlenet.checkpoint import StreamingCheckpointIO, load_model
from bundlenet.errors import CheckpointError, InputError
from bundlenet.io import run_lock
from tests.conftest import make_torus_model

BASE = [[4.5, 0.0], [0.0, 4.5]]


def _trainer(root: Path, callbacks: list[pl.Callback] | None = None, **kwargs: object) -> pl.Trainer:
    options: dict[str, object] = dict(max_steps=10, enable_checkpointing=False, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                                      default_root_dir=root, plugins=[StreamingCheckpointIO()])
    options.update(kwargs)
    return pl.Trainer(callbacks=[FinalCheckpoint(root / "checkpoints"), *(callbacks or [])], **options)


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _same_samples(model, path: Path) -> None:
    torch.testing.assert_close(load_model(path).sample_fiber(BASE, 20, seed=1), model.sample_fiber(BASE, 20, seed=1), rtol=0, atol=0)


def test_resume_from_a_mid_run_checkpoint_saves_the_final_step(tmp_path: Path) -> None:
    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    every5 = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "mid", every_n_train_steps=5, save_top_k=-1, filename="{step}")
    _trainer(tmp_path, [every5], max_steps=10, enable_checkpointing=True).fit(model, datamodule=dm)
    mid = tmp_path / "mid" / "step=5.ckpt"
    assert _step(mid) == 5

    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    _trainer(tmp_path, max_steps=23).fit(model, datamodule=dm, ckpt_path=mid)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert _step(last) == 23
    _same_samples(model, last)


def test_max_time_leaves_the_final_step_on_disk(tmp_path: Path) -> None:
    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    trainer = _trainer(tmp_path, max_steps=100_000, max_time={"seconds": 2})
    trainer.fit(model, datamodule=dm)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert 0 < trainer.global_step < 100_000 and _step(last) == trainer.global_step
    _same_samples(model, last)


class _CtrlC(pl.Callback):
    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == 7:
            raise KeyboardInterrupt


def test_ctrl_c_saves_the_weights_of_the_interrupted_step(tmp_path: Path) -> None:
    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    with pytest.raises(SystemExit):  # Lightning exits after its graceful shutdown
        _trainer(tmp_path, [_CtrlC()], max_steps=50).fit(model, datamodule=dm)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert _step(last) == 7
    _same_samples(model, last)


def test_a_failed_save_keeps_the_previous_checkpoint_and_stops_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    _trainer(tmp_path, max_steps=3).fit(model, datamodule=dm)
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def full_disk(obj: object, f: object) -> None:
        Path(f).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bundlenet.checkpoint.torch.save", full_disk)
    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    with pytest.raises(CheckpointError) as info:
        _trainer(tmp_path, max_steps=6).fit(model, datamodule=dm)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and "the previous one is kept" in message
    assert last.read_bytes() == before
    assert all(p.suffix == ".ckpt" for p in last.parent.iterdir())  # no temporary file left behind


def _saved_run(tmp_path: Path) -> Path:
    model, dm = make_torus_model(num_nbhds=5, num_train=200, seed=0)
    model.fit_data(*dm.train_tensors())
    _trainer(tmp_path, max_steps=3).fit(model, datamodule=dm)
    return tmp_path / "checkpoints" / "last.ckpt"


def test_resume_refuses_other_data(tmp_path: Path) -> None:
    ckpt = _saved_run(tmp_path)
    model, dm = make_torus_model(num_nbhds=5, num_train=200, seed=1)  # other training rows
    model.fit_data(*dm.train_tensors())
    with pytest.raises(InputError, match="trained on other data"):
        _trainer(tmp_path / "again", max_steps=6).fit(model, datamodule=dm, ckpt_path=ckpt)


def test_resume_refuses_another_model_shape(tmp_path: Path) -> None:
    ckpt = _saved_run(tmp_path)
    model, dm = make_torus_model(num_nbhds=6, num_train=200, seed=0)
    model.fit_data(*dm.train_tensors())
    with pytest.raises(InputError, match=r"model.num_nbhds=5 in the checkpoint, 6 now"):
        _trainer(tmp_path / "again", max_steps=6).fit(model, datamodule=dm, ckpt_path=ckpt)


def test_a_second_job_in_a_locked_run_directory_stops_at_once(tmp_path: Path) -> None:
    with (
        run_lock(tmp_path),
        pytest.raises(InputError, match=rf"run directory {tmp_path} is in use by process {os.getpid()}"),
        run_lock(tmp_path),
    ):
        pass
    assert not (tmp_path / ".lock").exists()
    (tmp_path / ".lock").write_text("999999999 elsewhere\n")  # left by a killed job
    with run_lock(tmp_path):
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
