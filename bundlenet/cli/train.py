"""The training job behind ``python train.py``: build everything from a Hydra config, fit,
evaluate, and write the run's files."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from bundlenet.callbacks import MetricHistory
from bundlenet.errors import InputError
from bundlenet.evaluate import Protocol, evaluate_model
from bundlenet.io import write_json, write_text
from bundlenet.plotting import plot_curves, plot_fibers, plot_latent

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
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
        raise InputError(f"ckpt_path={ckpt_path} not found; give a checkpoint file, or ckpt_path=last with the run's hydra.run.dir")
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    os.environ.setdefault("WANDB_SILENT", "true")  # no banners or prompts; we log where the run is
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    model = hydra.utils.instantiate(cfg.model, spec=datamodule.spec)
    model.data_config = OmegaConf.to_container(cfg.data, resolve=True)  # lets evaluate rebuild the true bundle
    # data-dependent state (scalers, cover) before anything is written: bad data costs one line, no files
    model.fit_data(*datamodule.train_tensors())
    callbacks = instantiate_list(cfg.get("callbacks"))
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning refuses a bar callback with the bar off
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    loggers = instantiate_list(cfg.get("logger"))
    extra: dict[str, Any] = {}
    if not model.automatic_optimization and cfg.trainer.get("gradient_clip_val") is not None:
        # Lightning refuses trainer-side clipping with manual optimisation; such models clip themselves.
        log.info("%s optimises manually: trainer.gradient_clip_val is not used (see model.grad_clip)", type(model).__name__)
        extra["gradient_clip_val"] = None
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    for lg in trainer.loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        log.info("output dir: %s", out)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    ckpt = final_checkpoint(trainer)
    # the checkpoints are written: the evaluation runs without the gradients and optimizer state
    model.zero_grad(set_to_none=True)
    for optimizer in trainer.optimizers:
        optimizer.state.clear()
    # under ddp_spawn the launching process keeps no loop state: read the step from the checkpoint
    steps = trainer.global_step or (int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]) if ckpt else 0)
    metrics: dict[str, Any] = {"train_seconds": round(time.perf_counter() - start, 1), "steps": steps}
    if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        metrics.update(final_report(cfg, model, datamodule, out, str(ckpt) if ckpt else None))
        history = next((c for c in callbacks if isinstance(c, MetricHistory)), None)
        if history is not None:
            plot_curves(out / "curves.png", history.history)
        publish(trainer, metrics, out)
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                run_dir = Path(lg.experiment.dir).parent
                lg.experiment.finish()
                log.info("wandb offline run in %s; upload it with `wandb sync %s`", lg.save_dir, run_dir)
        metrics["checkpoint"] = str(ckpt)
        write_json(out / "metrics.json", metrics)
        fiber = metrics["fiber"]
        if isinstance(fiber, dict):
            log.info("fiber W2 %.4f (noise floor %.4f, ratio %.2f); fiber MMD %.5f (noise floor %.5f)",
                     fiber["w2"]["value"], fiber["w2"]["noise_floor"], fiber["w2"]["ratio"] or float("nan"),
                     fiber["mmd"]["value"], fiber["mmd"]["noise_floor"])
        log.info("checkpoint: %s", ckpt)
    return metrics


def final_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The run's last checkpoint (``last.ckpt``), else its best one, else ``None``."""
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    candidates = [getattr(cb, "last_model_path", ""), Path(cb.dirpath, "last.ckpt") if getattr(cb, "dirpath", None) else "",
                  getattr(cb, "best_model_path", "")]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def lookup(metrics: dict[str, Any], key: str) -> Any:
    """``metrics["a"]["b"]`` for the dotted key ``"a.b"`` (``None`` when absent)."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict with ``/``-joined keys."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def publish(trainer: pl.Trainer, metrics: dict[str, Any], out: Path) -> None:
    """Send the final metrics and figures to the configured loggers (wandb gets the images).

    The CSV logger is skipped: its table has fixed columns, and metrics.json holds these values.
    """
    final = {f"final/{k}": v for k, v in flatten(metrics).items()}
    for lg in trainer.loggers:
        if isinstance(lg, CSVLogger):
            continue
        lg.log_metrics(final, step=trainer.global_step)
        if hasattr(lg, "log_image"):
            images = [p for p in (out / "fibers.png", out / "latent.png", out / "curves.png") if p.exists()]
            lg.log_image(key="figures", images=[str(p) for p in images], caption=[p.stem for p in images])
        lg.save()


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
    if hasattr(model, "encode"):  # BundleNet: the encoded fiber latents of the training points
        total, base = datamodule.train_tensors()
        with torch.no_grad():
            nbhd = model.cover.assign(base.to(model.device))
            _, latent = model.encode(total.to(model.device), nbhd)
        plot_latent(out / "latent.png", latent, nbhd, model.prior.num_circles)

    def summary(scope: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(scope, str):
            return scope
        return {name: {"value": r["model"]["mean"], "noise_floor": r["noise_floor"]["mean"], "ratio": r["ratio"]}
                for name, r in scope.items()}

    return {"fiber": summary(report["fiber"]), "global": summary(report["global"]), "protocol": report["protocol"],
            "evaluation_seconds": report["seconds"]}
