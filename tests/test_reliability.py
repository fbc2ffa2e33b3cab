"""The checkpoint on disk is the model that was trained: after resume, max_time, Ctrl-C, a
failed save or a second job in the same run directory."""

from __future__ import annotations

import os
import signal
import socket
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
    from bundlenet.loggers import bare_trainer

    options: dict[str, object] = dict(
        max_steps=10, accelerator="cpu", devices=1, default_root_dir=root, plugins=[StreamingCheckpointIO()]
    )
    return bare_trainer(callbacks=[FinalCheckpoint(root / "checkpoints"), *(callbacks or [])], **{**options, **kwargs})


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _same_samples(model, path: Path) -> None:
    torch.testing.assert_close(
        load_model(path).sample_fiber(BASE, 20, seed=1), model.sample_fiber(BASE, 20, seed=1), rtol=0, atol=0
    )


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


def test_a_failed_save_keeps_the_previous_checkpoint_and_stops_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    host = socket.gethostname()
    lock = tmp_path / ".lock"
    lock.write_text(f"{os.getppid()} {host}\n")  # a live process of this host
    with pytest.raises(InputError, match=rf"run directory {tmp_path} is in use by process {os.getppid()}"), run_lock(tmp_path):
        pass
    assert lock.read_text().split()[0] == str(os.getppid())  # never stolen
    lock.write_text(f"999999999 {host}\n")  # left by a killed job of this host
    with run_lock(tmp_path):
        assert lock.read_text().split() == [str(os.getpid()), host]
        with run_lock(tmp_path):  # re-entrant in one process (train.py's Hydra callback, then train())
            pass
        assert lock.exists()
    assert not lock.exists()


def test_a_lock_of_another_host_is_refused_unless_broken(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    lock.write_text("999999999 some-other-node\n")  # its process cannot be checked from here
    with (
        pytest.raises(InputError, match=r"locked by process 999999999 on host some-other-node; .* break_lock=true"),
        run_lock(tmp_path),
    ):
        pass
    assert lock.read_text().split()[1] == "some-other-node"
    with run_lock(tmp_path, break_lock=True):
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()


def test_an_unwritable_run_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with (
        pytest.raises(InputError, match=r"cannot write the run directory .*; pass a writable hydra.run.dir"),
        run_lock(blocker / "run"),
    ):
        pass


def test_last_ckpt_is_written_once_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FinalCheckpoint and ModelCheckpoint(save_last) share last.ckpt: one write at the end."""
    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    writes: list[tuple[str, int]] = []
    save = StreamingCheckpointIO.save_checkpoint

    def counting(self: StreamingCheckpointIO, checkpoint: dict, path: object, storage_options: object = None) -> None:
        writes.append((Path(str(path)).name, checkpoint["global_step"]))
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(StreamingCheckpointIO, "save_checkpoint", counting)
    every = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "checkpoints", filename="best", save_last=True, enable_version_counter=False, every_n_epochs=100
    )
    _trainer(tmp_path, [every], max_steps=7, enable_checkpointing=True).fit(model, datamodule=dm)
    assert writes.count(("last.ckpt", 7)) == 1, writes
    assert _step(tmp_path / "checkpoints" / "last.ckpt") == 7


def test_metric_history_is_saved_in_checkpoints_and_restored() -> None:
    from bundlenet.callbacks import MetricHistory

    history = MetricHistory()
    history.history["train/loss"] += [(0, 3.0), (10, 2.5)]
    restored = MetricHistory()
    restored.load_state_dict(history.state_dict())
    assert restored.history == {"train/loss": [(0, 3.0), (10, 2.5)]}


class _Poison(pl.Callback):
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.global_step == 3:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


@pytest.mark.parametrize(
    ("poison", "max_loss", "message"),
    [
        (True, 1e8, r"non-finite loss at step 3"),
        (False, 1e-6, r"training diverged at step 1: train/loss = .* beyond callbacks.divergence.max_loss=1e-06"),
    ],
)
def test_divergence_stops_training_in_one_line_without_saving(
    tmp_path: Path, poison: bool, max_loss: float, message: str
) -> None:
    from bundlenet.callbacks import DivergenceGuard
    from bundlenet.errors import DivergenceError

    model, dm = make_torus_model(num_train=200)
    model.fit_data(*dm.train_tensors())
    guard = DivergenceGuard(max_loss=max_loss)
    with pytest.raises(DivergenceError, match=message) as info:
        _trainer(tmp_path, [*([_Poison()] if poison else []), guard], max_steps=20).fit(model, datamodule=dm)
    assert "\n" not in str(info.value) and "lower model.optimizer.lr" in str(info.value)
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


class SendSignal(pl.Callback):
    """Sends this process ``signum`` after ``step`` optimizer steps, as a scheduler preempting it would."""

    def __init__(self, signum: int = 15, step: int = 5) -> None:
        self.signum, self.step = signum, step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            if self.signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_preempted_run_saves_then_exits_non_zero_with_the_resume_command(
    tmp_path: Path, signum: int, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    from bundlenet.cli.train import train
    from tests.test_bad_input import compose_cfg

    out = tmp_path / "run"
    cfg = compose_cfg(
        "train",
        [
            "logger=csv",
            "trainer.max_steps=200",
            "data.num_train=200",
            "model.num_nbhds=5",
            "model.hidden_features=16",
            "~callbacks.progress_bar",
            "trainer.enable_progress_bar=false",
            "+callbacks.signal._target_=tests.test_reliability.SendSignal",
            f"+callbacks.signal.signum={int(signum)}",
        ],
        out,
    )
    with caplog.at_level("WARNING", logger="bundlenet"), pytest.raises(SystemExit) as info:
        train(cfg)
    assert info.value.code == code
    assert _step(out / "checkpoints" / "last.ckpt") == 5 and not (out / "metrics.json").exists()
    lines = [r.getMessage() for r in caplog.records if "interrupted by" in r.getMessage()]
    assert (
        len(lines) == 1 and f"at step 5; {out / 'checkpoints' / 'last.ckpt'} holds it: resume with `python train.py" in lines[0]
    )
    assert lines[0].endswith(f"ckpt_path=last hydra.run.dir={out}`") and not (out / ".lock").exists()
