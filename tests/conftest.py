"""Shared fixtures: one thread per test process, a small trained torus model and its checkpoint."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def make_torus_model(num_nbhds: int = 5, seed: int = 0, num_train: int = 500, **kwargs: object) -> tuple[object, object]:
    """A small BundleNet and a torus datamodule (full batch)."""
    from bundlenet import BundleNet, Torus
    from bundlenet.datamodule import BundleDataModule
    from bundlenet.optim import cosine_with_warmup

    pl.seed_everything(seed, verbose=False)
    dm = BundleDataModule(Torus(), num_train=num_train, num_val_fibers=2, val_fiber_points=100, seed=seed)
    dm.setup("fit")
    options = dict(num_nbhds=num_nbhds, optimizer=functools.partial(torch.optim.Adam, lr=2e-3),
                   scheduler=functools.partial(cosine_with_warmup, warmup_steps=20))
    options.update(kwargs)
    model = BundleNet(dm.spec, **options)
    return model, dm


def fit(model: pl.LightningModule, dm: pl.LightningDataModule, steps: int, root: Path) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=steps, accelerator="cpu", devices=1, logger=pl.loggers.CSVLogger(root, name="csv"),
        enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=steps,
        num_sanity_val_steps=0, gradient_clip_val=1.0, default_root_dir=root,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=root / "checkpoints", save_last=True)],
    )
    trainer.fit(model, datamodule=dm)
    return trainer


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, Path]:
    """A torus BundleNet (default architecture, 100 neighbourhoods, 1000 points) trained for
    300 full-batch steps, its datamodule and its last checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    model, dm = make_torus_model(num_nbhds=100, num_train=1000)
    fit(model, dm, steps=300, root=root)
    return model, dm, root / "checkpoints" / "last.ckpt"
