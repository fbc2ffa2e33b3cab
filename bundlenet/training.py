"""The training job shared by ``python train.py`` and :func:`bundlenet.fit`: build everything
from a composed Hydra config (``conf/train.yaml``), fit, evaluate, and write the run's files."""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from bundlenet.callbacks import BudgetCheckpoints, FinalCheckpoint, MetricHistory, PlainProgress, best_checkpoint
from bundlenet.checkpoint import checkpoint_step, read_checkpoint
from bundlenet.errors import CheckpointError, InputError
from bundlenet.evaluation.plotting import plot_curves, plot_fibers, plot_image_fibers, plot_latent, spread_points
from bundlenet.evaluation.protocol import Protocol, evaluate_model
from bundlenet.io import copy_file, is_inside, write_json, write_text
from bundlenet.loggers import quiet_lightning
from bundlenet.models.base import BundleModel
from bundlenet.provenance import write_provenance
from bundlenet.ranks import launcher_rank_zero
from bundlenet.selection import TopologyScore, choose_topology

log = logging.getLogger(__name__)

# Lightning notices that an epoch of one full batch is shorter than its logging interval, and an
# internal deprecation of its own; neither is actionable for a user of train.py.
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
# a resumed run (ckpt_path=last) or a rerun in its own hydra.run.dir writes best.ckpt/last.ckpt in place
warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty\.", UserWarning)


# files of a run that a new run in the same directory would replace or mix with its own
RUN_OUTPUTS = (
    "metrics.json",
    "evaluation.json",
    "budgets.json",
    "config.yaml",
    "fibers.png",
    "latent.png",
    "curves.png",
    "csv/metrics.csv",
    "csv/hparams.yaml",
)


def replace_previous_run(out: Path) -> None:
    """Remove the checkpoints and results of the run that ``overwrite=true`` replaces in ``out``
    (called once the new run's data and model are built, before it writes anything)."""
    old = [p for p in [*(out / "checkpoints").glob("*.ckpt"), *(out / name for name in RUN_OUTPUTS)] if p.is_file()]
    for p in old:
        p.unlink(missing_ok=True)
    if old:
        log.info("overwrite=true: removed the previous run's checkpoints and results in %s", out)


def instantiate_list(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group dict that has a ``_target_`` (callbacks, loggers)."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


class TrainingInterrupted(Exception):
    """Training stopped by SIGTERM or SIGINT after the final checkpoint was saved (or before any
    was): ``final`` is the run's :class:`~bundlenet.callbacks.FinalCheckpoint` (``interrupted``
    names the signal, ``saved_step`` and ``path`` what holds the weights)."""

    def __init__(self, final: FinalCheckpoint) -> None:
        super().__init__(f"training interrupted by {final.interrupted}")
        self.final = final


def run_training(cfg: DictConfig, evaluate: bool = True, ckpt_path: str | None = None) -> tuple[BundleModel, dict[str, Any]]:
    """Train with a composed ``train.yaml`` config, evaluate and write the run's files into
    ``cfg.paths.output_dir``; return the trained model (the one it reports, :func:`final_model_kind`)
    and the final metrics (also in ``metrics.json``). ``evaluate=False`` skips the final
    evaluation, its figures and ``metrics.json`` (the checkpoints are written either way).
    The caller holds the run directory's lock (:func:`bundlenet.io.run_lock`). ``ckpt_path``:
    the checkpoint to resume from (``None``: the config's ``ckpt_path``; ``last`` is the run
    directory's ``checkpoints/last.ckpt``).

    Raises:
        TrainingInterrupted: SIGTERM or SIGINT stopped the training (its final checkpoint saved).
    """
    start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    ckpt_path = _resume_path(cfg, out, ckpt_path)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    os.environ.setdefault("WANDB_SILENT", "true")  # no banners or prompts; we log where the run is
    quiet_lightning()
    datamodule, model, topology = _prepare(cfg, out, ckpt_path)
    callbacks, extra = _progress_callbacks(cfg, instantiate_list(cfg.get("callbacks")))
    loggers = instantiate_list(cfg.get("logger"))
    if ckpt_path is not None:
        _carry_csv_history(loggers, checkpoint_step(ckpt_path))
    extra.update(_trainer_overrides(cfg, model))
    reports_best = _reports_best(cfg, model, callbacks)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    _record_config(trainer, cfg, out)
    _fit(trainer, model, datamodule, ckpt_path, next((c for c in callbacks if isinstance(c, FinalCheckpoint)), None))
    ckpt = _reported_checkpoint(cfg, trainer, model, datamodule, reports_best)
    # under ddp_spawn the launching process keeps no loop state: read the step from the checkpoint
    ckpt_step = checkpoint_step(ckpt) if ckpt else None
    steps = trainer.global_step or (ckpt_step or 0)
    metrics: dict[str, Any] = {"train_seconds": round(time.perf_counter() - start, 1), "steps": steps}
    if topology:
        metrics["topology"] = [asdict(row) for row in topology]
    if trainer.is_global_zero and evaluate and not cfg.trainer.get("fast_dev_run"):
        metrics.update(final_report(cfg, model, datamodule, out, str(ckpt) if ckpt else None, ckpt_step))
        history = next((c for c in callbacks if isinstance(c, MetricHistory)), None)
        if history is not None:
            plot_curves(out / "curves.png", history.history)
        publish(trainer, metrics, out)
        _finish_wandb(trainer)
        metrics["checkpoint"] = str(ckpt)
        metrics["checkpoint_step"] = ckpt_step
        _write_metrics(cfg, datamodule, out, metrics)
    return model, metrics


def _prepare(cfg: DictConfig, out: Path, ckpt_path: str | None) -> tuple[Any, BundleModel, list[TopologyScore] | None]:
    """:func:`_build`, the resumed checkpoint's model class checked, and then, with
    ``overwrite=true``, the previous run in ``out`` removed: a bad option or data file refused
    while building leaves that run whole. Only the run's first process removes it (the ranks a
    ``ddp`` launcher starts build while the first one already writes)."""
    datamodule, model, topology = _build(cfg, ckpt_path)
    _check_model_class(model, ckpt_path)
    if cfg.get("overwrite") and not is_inside(ckpt_path, out) and launcher_rank_zero():
        replace_previous_run(out)
    return datamodule, model, topology


def _build(cfg: DictConfig, ckpt_path: str | None) -> tuple[Any, BundleModel, list[TopologyScore] | None]:
    """The datamodule (set up, its fiber topology checked: :func:`~bundlenet.selection.choose_topology`)
    and the model of the config, fitted to the training data; the topology check's evidence."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    topology = choose_topology(cfg, datamodule, ckpt_path)
    model = hydra.utils.instantiate(cfg.model, spec=datamodule.spec)
    model.data_config = OmegaConf.to_container(cfg.data, resolve=True)  # lets evaluate rebuild the true bundle
    # data-dependent state (scalers, cover) before anything is written: bad data costs one line, no files
    model.fit_data(*datamodule.train_tensors())
    return datamodule, model, topology


def _record_config(trainer: pl.Trainer, cfg: DictConfig, out: Path) -> None:
    """The resolved config to the loggers and (first process) to ``config.yaml``."""
    for lg in trainer.loggers:
        lg.log_hyperparams(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))
    if trainer.is_global_zero:
        write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        write_provenance(out)
        log.info("output dir: %s", out)


def _write_metrics(cfg: DictConfig, datamodule: Any, out: Path, metrics: dict[str, Any]) -> None:
    """The time budgets' evaluations (``budgets.json``, where the config has them), ``metrics.json``
    and the summary lines."""
    budgets = evaluate_budgets(cfg, datamodule, out, metrics)
    if budgets:
        write_json(out / "budgets.json", budgets)
    write_json(out / "metrics.json", metrics)
    fiber = metrics["fiber"]
    if isinstance(fiber, dict):
        log.info("%s", fiber_summary(fiber))
    log.info("checkpoint: %s", metrics["checkpoint"])


def _resume_path(cfg: DictConfig, out: Path, ckpt_path: str | None) -> str | None:
    """The checkpoint to resume from: ``ckpt_path``, else the config's; ``last`` is the run
    directory's ``checkpoints/last.ckpt``; a missing file is an :class:`InputError`."""
    ckpt_path = ckpt_path if ckpt_path is not None else cfg.get("ckpt_path")
    if ckpt_path == "last":
        ckpt_path = str(out / "checkpoints" / "last.ckpt")
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise InputError(
            f"ckpt_path={ckpt_path} not found; give a checkpoint file, or ckpt_path=last with the run's hydra.run.dir"
        )
    return ckpt_path


def _progress_callbacks(cfg: DictConfig, callbacks: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """The callbacks and trainer options for progress: without a terminal (or with the bar off)
    plain progress lines instead of the bar."""
    extra: dict[str, Any] = {}
    if cfg.trainer.get("enable_progress_bar") is False or not sys.stdout.isatty():
        # Lightning refuses a bar callback with the bar off; a log file gets plain lines instead of bar frames
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
        extra["enable_progress_bar"] = False
        if not cfg.trainer.get("fast_dev_run"):
            callbacks.append(PlainProgress())
    return callbacks, extra


def _trainer_overrides(cfg: DictConfig, model: BundleModel) -> dict[str, Any]:
    """Trainer options the config's trainer cannot take with this model."""
    extra: dict[str, Any] = {}
    if not model.automatic_optimization and cfg.trainer.get("gradient_clip_val") is not None:
        # Lightning refuses trainer-side clipping with manual optimisation; such models clip themselves.
        hint = " (see model.grad_clip)" if "grad_clip" in model.hparams else ""
        log.info("%s optimises manually: trainer.gradient_clip_val is not used%s", type(model).__name__, hint)
        extra["gradient_clip_val"] = None
    if cfg.trainer.get("check_val_every_n_epoch") is not None and isinstance(cfg.trainer.get("val_check_interval"), int):
        # validation counted in epochs: an integer step interval would have to fit inside one epoch
        extra["val_check_interval"] = None
    return extra


def _fit(trainer: pl.Trainer, model: BundleModel, datamodule: Any, ckpt_path: str | None, final: FinalCheckpoint | None) -> None:
    """``trainer.fit``; :class:`TrainingInterrupted` when SIGTERM or SIGINT stopped it."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:  # Lightning's exit after a SIGINT, or its SIGTERM exception (exit code 0)
        if final is not None and final.interrupted:
            raise TrainingInterrupted(final) from None
        raise
    if final is not None and final.interrupted:
        raise TrainingInterrupted(final)


def _reports_best(cfg: DictConfig, model: BundleModel, callbacks: list[Any]) -> bool:
    """Whether the run reports ``best`` (:func:`final_model_kind`); if so, its budget checkpoints
    keep the model a run that short would report."""
    reports_best = final_model_kind(cfg, model) == "best"
    for cb in callbacks:
        if isinstance(cb, BudgetCheckpoints):
            cb.keep_best = reports_best
    return reports_best


def _reported_checkpoint(
    cfg: DictConfig, trainer: pl.Trainer, model: BundleModel, datamodule: Any, reports_best: bool
) -> Path | None:
    """After training: the checkpoint of the model the run reports, whose weights ``model`` then
    holds (:func:`restore_best` where it reports ``best``), without its training state."""
    ckpt = final_checkpoint(trainer)
    _drop_training_state(model, trainer)
    if reports_best and trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        ckpt = restore_best(trainer, model, datamodule, ckpt)
    return ckpt


def _drop_training_state(model: BundleModel, trainer: pl.Trainer) -> None:
    """The checkpoints are written: the evaluation runs without the gradients and optimizer state."""
    model.zero_grad(set_to_none=True)
    for optimizer in trainer.optimizers:
        optimizer.state.clear()


def _finish_wandb(trainer: pl.Trainer) -> None:
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            run_dir = Path(lg.experiment.dir).parent
            lg.experiment.finish()
            log.info("wandb offline run in %s; upload it with `wandb sync %s`", lg.save_dir, run_dir)


def _check_model_class(model: Any, ckpt_path: str | None) -> None:
    """Refuse to resume a checkpoint of another model class, naming both."""
    if ckpt_path is None:
        return
    saved = str(read_checkpoint(ckpt_path)["bundlenet"].get("model", ""))
    mine = f"{type(model).__module__}.{type(model).__qualname__}"
    if saved and saved != mine:
        raise CheckpointError(
            f"the checkpoint {ckpt_path} holds a {saved.rpartition('.')[2]} model, this run trains a "
            f"{type(model).__name__}; resume with the checkpoint's model= option, or start a new run"
        )


def _carry_csv_history(loggers: list[Any], resume_step: int) -> None:
    """Keep the rows up to ``resume_step`` of a resumed run's CSV log (Lightning's CSV logger
    deletes its ``metrics.csv`` when it starts): the log continues where the checkpoint was."""
    for lg in loggers:
        if not isinstance(lg, CSVLogger):
            continue
        path = Path(lg.log_dir) / "metrics.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").strip() and float(r["step"]) <= resume_step]
        lg.experiment.metrics.extend({k: v for k, v in r.items() if v != ""} for r in rows)


def evaluate_budgets(cfg: DictConfig, datamodule: Any, out: Path, final: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the checkpoints :class:`~bundlenet.callbacks.BudgetCheckpoints` wrote
    (``checkpoints/budget_*s.ckpt``): one entry per budget with its step and the fiber metrics
    (as in metrics.json). Budgets the run outlasted use the final model."""
    budget_cb = next(
        (
            c
            for c in (cfg.get("callbacks") or {}).values()
            if isinstance(c, DictConfig) and str(c.get("_target_", "")).endswith("BudgetCheckpoints")
        ),
        None,
    )
    if budget_cb is None:
        return []
    from bundlenet.checkpoint import load_model

    protocol = Protocol.from_config(cfg.evaluation)
    entries = []
    for budget in sorted(float(b) for b in budget_cb.budgets):
        path = Path(budget_cb.dirpath) / f"budget_{budget:g}s.ckpt"
        if path.is_file():
            model = load_model(path)
            step = checkpoint_step(path)
            fiber = summarize(evaluate_model(model, datamodule.bundle, protocol).to_dict()["fiber"])
        else:  # training ended before this budget: the reported model
            step, fiber, path = final.get("checkpoint_step", final["steps"]), final["fiber"], Path(str(final.get("checkpoint")))
        entries.append({"budget_s": budget, "step": step, "checkpoint": str(path), "fiber": fiber})
    return entries


def summarize(scope: dict[str, Any] | str) -> dict[str, Any] | str:
    """Each metric's mean, noise floor and ratio from an evaluation scope (``n/a`` strings kept)."""
    if isinstance(scope, str):
        return scope
    return {
        name: {"value": r["model"]["mean"], "noise_floor": r["noise_floor"]["mean"], "ratio": r["ratio"]}
        for name, r in scope.items()
    }


def fiber_summary(fiber: dict[str, Any]) -> str:
    """The run's last line: the fiber metrics that tell a good model from a bad one (W2 and
    coverage beside their floors, precision and the re-simulation error, 0 at best)."""
    parts = [f"fiber W2 {fiber['w2']['value']:.4g}{_ratio(fiber['w2'])}", f"precision {fiber['precision']['value']:.3g}"]
    if "coverage" in fiber:
        parts.append(f"coverage {fiber['coverage']['value']:.3g}{_ratio(fiber['coverage'])}")
    if "resimulation" in fiber:
        parts.append(f"re-simulation error {fiber['resimulation']['value']:.3g}")
    if "forest_resimulation" in fiber:
        parts.append(
            f"re-simulation error judged by a forest {fiber['forest_resimulation']['value']:.3g}"
            f"{_ratio(fiber['forest_resimulation'])}"
        )
    return "; ".join(parts)


def _ratio(metric: dict[str, Any]) -> str:
    return f" ({metric['ratio']:.2f}x its floor)" if metric.get("ratio") is not None else ""


FINAL_MODELS = ("auto", "best", "last")


def check_final_model(cfg: DictConfig) -> str:
    """The config's ``final_model`` (``auto`` when absent); another value is an :class:`InputError`."""
    kind = cfg.get("final_model", "auto")
    if kind not in FINAL_MODELS:
        raise InputError(f"final_model must be one of {', '.join(FINAL_MODELS)}, got {kind!r}")
    return str(kind)


def final_model_kind(cfg: DictConfig, model: BundleModel) -> str:
    """``best`` or ``last``: the model a run reports (``final_model`` of ``train.yaml``). ``auto``
    (the default) is ``best`` for a model that :attr:`~bundlenet.models.base.BundleModel.selects_by_likelihood`
    (a held-out likelihood picks it reliably) and ``last`` for the others, whose criterion, the
    W2 of a few validation fibers, is too noisy to choose by."""
    kind = check_final_model(cfg)
    if kind == "auto":
        return "best" if model.selects_by_likelihood else "last"
    return str(kind)


def restore_best(trainer: pl.Trainer, model: BundleModel, datamodule: Any, last: Path | None) -> Path | None:
    """Load the best held-out weights into ``model`` and return their checkpoint, ``best.ckpt``.

    Validation runs every ``trainer.val_check_interval`` steps, so the last step has seldom been
    scored: for a model that selects by likelihood it is scored here on the same validation
    points, and where it is at least as good as ``best.ckpt``, ``model`` keeps it and
    ``last.ckpt`` is copied over ``best.ckpt``, which therefore always holds the reported model.
    Without a ``best.ckpt`` (no validation ran, or no ``ModelCheckpoint``) the last step is
    reported."""
    best = best_checkpoint(trainer)
    if best is None or last is None or best == last:
        log.info("final model: the last step (%s)", "no best.ckpt: no validation ran" if last is not None else "no checkpoint")
        return last
    best_step, last_step = checkpoint_step(best), checkpoint_step(last)
    if best_step == last_step:
        log.info("final model: best.ckpt is the last step (%d)", last_step)
        return best
    if not model.selects_by_likelihood:  # its validation criterion cannot score the last step again
        model.load_state_dict(read_checkpoint(best)["state_dict"])
        log.info("final model: best.ckpt (step %d of %d)", best_step, last_step)
        return best
    final_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    score_last = model.held_out_selection(datamodule.val_dataloader())
    model.load_state_dict(read_checkpoint(best)["state_dict"])
    score_best = model.held_out_selection(datamodule.val_dataloader())
    if score_last <= score_best:
        model.load_state_dict(final_state)
        copy_file(last, best)
        log.info(
            "final model: the last step (%d), held-out val/selection %.4g against best.ckpt's %.4g (step %d); "
            "copied to best.ckpt",
            last_step,
            score_last,
            score_best,
            best_step,
        )
        return best
    log.info(
        "final model: best.ckpt (step %d of %d), held-out val/selection %.4g against the last step's %.4g "
        "(final_model=last reports the last step)",
        best_step,
        last_step,
        score_best,
        score_last,
    )
    return best


def final_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The run's last checkpoint (``last.ckpt``), else its best one, else ``None``."""
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    dirpath = getattr(cb, "dirpath", None)  # a ModelCheckpoint's; the Checkpoint base class has none
    candidates = [
        getattr(cb, "last_model_path", ""),
        Path(dirpath, "last.ckpt") if dirpath else "",
        getattr(cb, "best_model_path", ""),
    ]
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
        if hasattr(lg, "log_image"):  # one key per figure: their sizes differ
            for image in (out / "fibers.png", out / "latent.png", out / "curves.png"):
                if image.exists():
                    lg.log_image(key=f"figures/{image.stem}", images=[str(image)])
        lg.save()


def final_report(
    cfg: DictConfig, model: Any, datamodule: Any, out: Path, ckpt: str | None = None, ckpt_step: int | None = None
) -> dict[str, Any]:
    """Run the evaluation protocol (``evaluation.json``), draw the fiber figure, and return the
    metrics.json summary: each metric's mean, noise floor and ratio, per scope."""
    protocol = Protocol.from_config(cfg.evaluation)
    bundle = datamodule.bundle
    result = evaluate_model(model, bundle, protocol)
    report = result.to_dict()
    write_json(
        out / "evaluation.json", {"checkpoint": ckpt, "checkpoint_step": ckpt_step, "bundle": type(bundle).__name__, **report}
    )
    log.info("evaluation (%.1f s):\n%s", result.seconds, result.table())
    if model.conditional:
        gen = torch.Generator().manual_seed(protocol.seed)
        # base points spread over the base: the farthest-apart of many drawn like the data
        base = spread_points(bundle.sample_total(50 * cfg.evaluation.plot_fibers, gen).base, cfg.evaluation.plot_fibers)
        true = bundle.sample_fiber(base, protocol.num_points, gen)
        generated = model.sample_fiber(base, protocol.num_points, seed=protocol.seed).cpu()
        image_shape = getattr(bundle, "image_shape", None)
        if image_shape is not None:
            plot_image_fibers(out / "fibers.png", base, true, generated, image_shape, bundle.base_names)
        else:
            plot_fibers(
                out / "fibers.png",
                base,
                true,
                generated,
                bundle.total_names,
                bundle.base_names,
                equal_scales=bundle.spec.unscaled,
            )  # a table's columns have units of their own
    else:
        log.info("no fibers.png: %s is unconditional", type(model).__name__)
    if hasattr(model, "latent_codes"):  # BundleNet: the encoded fiber latents of the training points
        total, base = datamodule.train_tensors()
        latent, nbhd, circles = model.latent_codes(total.to(model.device), base.to(model.device))
        plot_latent(out / "latent.png", latent, nbhd, circles)

    return {
        "fiber": summarize(report["fiber"]),
        "global": summarize(report["global"]),
        "protocol": report["protocol"],
        "evaluation_seconds": report["seconds"],
    }
