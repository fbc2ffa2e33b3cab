"""The training job behind ``python train.py``: build everything from a Hydra config, fit,
evaluate, and write the run's files."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from bundlenet.evaluate import fiber_metrics, global_metrics
from bundlenet.io import write_json, write_text
from bundlenet.plotting import plot_fibers

log = logging.getLogger(__name__)

# Lightning notices that an epoch of one full batch is shorter than its logging interval, and an
# internal deprecation of its own; neither is actionable for a user of train.py.
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")


def instantiate_list(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group dict that has a ``_target_`` (callbacks, loggers)."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and write outputs; return the final metrics (also in ``metrics.json``)."""
    start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    model = hydra.utils.instantiate(cfg.model, spec=datamodule.spec)
    # data-dependent state (scalers, cover) before anything is written: bad data costs one line, no files
    model.fit_data(*datamodule.train_tensors())
    callbacks = instantiate_list(cfg.get("callbacks"))
    loggers = instantiate_list(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        log.info("output dir: %s", out)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics: dict[str, Any] = {"train_seconds": round(time.perf_counter() - start, 1), "steps": trainer.global_step}
    if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        metrics.update(final_report(cfg, model, datamodule, out))
        ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(trainer.checkpoint_callback, "best_model_path", "")
        metrics["checkpoint"] = str(ckpt)
        write_json(out / "metrics.json", metrics)
        log.info("fiber W2 %.4f (noise floor %.4f, ratio %.2f); fiber MMD %.5f (noise floor %.5f)",
                 metrics["fiber"]["w2"]["value"], metrics["fiber"]["w2"]["noise_floor"], metrics["fiber"]["w2"]["ratio"],
                 metrics["fiber"]["mmd"]["value"], metrics["fiber"]["mmd"]["noise_floor"])
        log.info("checkpoint: %s", ckpt)
    return metrics


def final_report(cfg: DictConfig, model: Any, datamodule: Any, out: Path) -> dict[str, Any]:
    """Fiber and global metrics of the trained model, and the fiber figure."""
    ev = cfg.evaluation
    bundle = datamodule.bundle
    fiber = fiber_metrics(model, bundle, ev.num_fibers, ev.num_points, ev.iterations, seed=ev.seed)
    glob = global_metrics(model, bundle, ev.num_global, seed=ev.seed)
    gen = torch.Generator().manual_seed(ev.seed)
    base = bundle.sample_total(ev.plot_fibers, gen).base
    plot_fibers(out / "fibers.png", base, bundle.sample_fiber(base, ev.num_points, gen),
                model.sample_fiber(base, ev.num_points, seed=ev.seed).cpu(), bundle.total_names, bundle.base_names)
    return {
        "fiber": {name: m.to_dict() for name, m in fiber.items()},
        "global": {name: m.to_dict() for name, m in glob.items()},
        "protocol": {"num_fibers": ev.num_fibers, "num_points": ev.num_points, "iterations": ev.iterations,
                     "num_global": ev.num_global, "w2": "exact OT (POT emd2)", "mmd": "gaussian kernel, blur 0.5"},
    }
