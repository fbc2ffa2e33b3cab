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

from bundlenet.evaluate import Protocol, evaluate_model
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
    model.data_config = OmegaConf.to_container(cfg.data, resolve=True)  # lets evaluate rebuild the true bundle
    callbacks = instantiate_list(cfg.get("callbacks"))
    loggers = instantiate_list(cfg.get("logger"))
    extra: dict[str, Any] = {}
    if not model.automatic_optimization and cfg.trainer.get("gradient_clip_val") is not None:
        # Lightning refuses trainer-side clipping with manual optimisation; such models clip themselves.
        log.info("%s optimises manually: trainer.gradient_clip_val is not used (see model.grad_clip)", type(model).__name__)
        extra["gradient_clip_val"] = None
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    if trainer.is_global_zero:
        write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        log.info("output dir: %s", out)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics: dict[str, Any] = {"train_seconds": round(time.perf_counter() - start, 1), "steps": trainer.global_step}
    if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(trainer.checkpoint_callback, "best_model_path", "")
        metrics.update(final_report(cfg, model, datamodule, out, str(ckpt)))
        metrics["checkpoint"] = str(ckpt)
        write_json(out / "metrics.json", metrics)
        fiber = metrics["fiber"]
        if isinstance(fiber, dict):
            log.info("fiber W2 %.4f (noise floor %.4f, ratio %.2f); fiber MMD %.5f (noise floor %.5f)",
                     fiber["w2"]["value"], fiber["w2"]["noise_floor"], fiber["w2"]["ratio"] or float("nan"),
                     fiber["mmd"]["value"], fiber["mmd"]["noise_floor"])
        log.info("checkpoint: %s", ckpt)
    return metrics


def final_report(cfg: DictConfig, model: Any, datamodule: Any, out: Path, ckpt: str | None = None) -> dict[str, Any]:
    """Run the evaluation protocol (``evaluation.json``), draw the fiber figure, and return the
    metrics.json summary: each metric's mean, noise floor and ratio, per scope."""
    protocol = Protocol.from_config(cfg.evaluation)
    bundle = datamodule.bundle
    result = evaluate_model(model, bundle, protocol)
    report = result.to_dict()
    write_json(out / "evaluation.json", {"checkpoint": ckpt, "bundle": type(bundle).__name__, **report})
    log.info("evaluation (%.1f s):\n%s", result.seconds, result.table())
    if model.conditional:
        gen = torch.Generator().manual_seed(protocol.seed)
        base = bundle.sample_total(cfg.evaluation.plot_fibers, gen).base
        plot_fibers(out / "fibers.png", base, bundle.sample_fiber(base, protocol.num_points, gen),
                    model.sample_fiber(base, protocol.num_points, seed=protocol.seed).cpu(), bundle.total_names, bundle.base_names)
    else:
        log.info("no fibers.png: %s is unconditional", type(model).__name__)

    def summary(scope: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(scope, str):
            return scope
        return {name: {"value": r["model"]["mean"], "noise_floor": r["noise_floor"]["mean"], "ratio": r["ratio"]}
                for name, r in scope.items()}

    return {"fiber": summary(report["fiber"]), "global": summary(report["global"]), "protocol": report["protocol"],
            "evaluation_seconds": report["seconds"]}
