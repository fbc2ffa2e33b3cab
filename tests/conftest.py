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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate-reference",
        action="store_true",
        help="write tests/data/reference_samples.npz and the old checkpoint from the current code (tests/test_reference.py)",
    )


SHARED_DATA = REPO.parent / "shared" / "data"


def _torus_data(seed: int, num_train: int) -> object:
    from bundlenet import Torus
    from bundlenet.data.datamodule import BundleDataModule

    pl.seed_everything(seed, verbose=False)
    dm = BundleDataModule(Torus(), num_train=num_train, num_val_fibers=2, val_fiber_points=100, seed=seed)
    dm.setup("fit")
    return dm


def _optim() -> dict[str, object]:
    from bundlenet.optim import cosine_with_warmup

    return dict(
        optimizer=functools.partial(torch.optim.Adam, lr=2e-3), scheduler=functools.partial(cosine_with_warmup, warmup_steps=20)
    )


def make_torus_model(num_nbhds: int | None = 5, seed: int = 0, num_train: int = 500, **kwargs: object) -> tuple[object, object]:
    """A small default BundleNet and a torus datamodule (full batch)."""
    from bundlenet import BundleNet

    dm = _torus_data(seed, num_train)
    options = dict(num_nbhds=num_nbhds, hidden_features=48, **_optim())
    options.update(kwargs)
    return BundleNet(dm.spec, **options), dm


def make_paper_model(num_nbhds: int = 5, seed: int = 0, num_train: int = 500, **kwargs: object) -> tuple[object, object]:
    """A small model with the authors' objective (``model=bundlenet_paper``) and a torus datamodule."""
    from bundlenet.models.paper import PaperBundleNet

    dm = _torus_data(seed, num_train)
    options = dict(num_nbhds=num_nbhds, **_optim())
    options.update(kwargs)
    return PaperBundleNet(dm.spec, **options), dm


def fit(model: pl.LightningModule, dm: pl.LightningDataModule, steps: int, root: Path) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=steps,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.CSVLogger(root, name="csv"),
        enable_progress_bar=False,
        enable_model_summary=False,
        check_val_every_n_epoch=steps,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        default_root_dir=root,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=root / "checkpoints", save_last=True)],
    )
    trainer.fit(model, datamodule=dm)
    return trainer


@pytest.fixture
def float64():
    """float64 as the default dtype for one test (exact Jacobian and inverse checks)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, Path]:
    """A torus BundleNet (default architecture, neighbourhoods chosen from the data, 1000 points)
    trained for 300 full-batch steps, its datamodule and its last checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    model, dm = make_torus_model(num_nbhds=None, num_train=1000, hidden_features=96)
    fit(model, dm, steps=300, root=root)
    return model, dm, root / "checkpoints" / "last.ckpt"
