"""``python train.py``: check the options and the run directory, take its lock, run the
training job (:func:`bundlenet.training.run_training`), and turn an interruption into a line
saying how to resume and exit code 143 (SIGTERM) or 130 (SIGINT)."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

from bundlenet.callbacks import FinalCheckpoint
from bundlenet.cli.common import CONF_DIR, check_group_choices, check_seed, run_cli
from bundlenet.errors import InputError
from bundlenet.io import is_inside, run_lock
from bundlenet.ranks import launcher_rank_zero
from bundlenet.training import TrainingInterrupted, check_final_model, lookup, run_training

log = logging.getLogger(__name__)


_SIGNAL_EXIT = {"SIGTERM": 143, "SIGINT": 130}  # 128 + the signal's number, as a shell reports a signalled job


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and write outputs; return the final metrics (also in ``metrics.json``).

    The run directory is locked while the job runs (:func:`bundlenet.io.run_lock`): a second
    job pointed at it stops at once. A directory that holds a run is refused unless resumed
    (``ckpt_path=last``) or replaced (``overwrite=true``): :func:`prepare_run_dir`. Ranks
    started by a ``ddp`` launcher share their rank 0's lock.
    """
    if not launcher_rank_zero():
        return _train(cfg, None)  # the job resumes from the config's ckpt_path (run_training)
    check_train_options(cfg)
    out = Path(cfg.paths.output_dir)
    with run_lock(out, break_lock=bool(cfg.get("break_lock", False))):
        return _train(cfg, prepare_run_dir(out, cfg.get("ckpt_path"), bool(cfg.get("overwrite", False))))


def check_train_options(cfg: DictConfig) -> None:
    """Refuse options that would train nothing or fail deep inside Lightning: the seed, the
    training length, a GPU trainer without a GPU, a checkpoint path that does not exist."""
    check_seed(cfg.get("seed"))
    check_seed(OmegaConf.select(cfg, "evaluation.seed"), "evaluation.seed")
    check_final_model(cfg)
    steps, epochs = cfg.trainer.get("max_steps", -1), cfg.trainer.get("max_epochs", -1)
    for name, value in (("max_steps", steps), ("max_epochs", epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -1):
            raise InputError(f"trainer.{name} must be a positive integer (or -1: no limit), got {value!r}")
    if steps in (None, -1) and epochs in (None, -1) and cfg.trainer.get("max_time") is None:
        raise InputError("trainer.max_steps, trainer.max_epochs and trainer.max_time are all unlimited; set trainer.max_steps")
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise InputError(
            f"trainer.accelerator={accelerator} (trainer=gpu) but this machine or torch build has no CUDA GPU; "
            f"use the default trainer (CPU) or trainer.accelerator=cpu"
        )
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
        raise InputError(
            f"ckpt_path={ckpt_path} not found; give a checkpoint file, or ckpt_path=last with the run's hydra.run.dir"
        )


def prepare_run_dir(out: Path, ckpt_path: str | None, overwrite: bool) -> str | None:
    """Make ``out`` ready for this run and return the checkpoint to resume from.

    Temporary files of an interrupted save (``.*.tmp``) are removed. A directory that holds a
    run (``metrics.json`` or a checkpoint) is refused unless the run resumes (``ckpt_path=last``,
    or a checkpoint inside ``out``) or ``overwrite`` is set: then the training removes that run's
    checkpoints and results once its data and model are built (so no old ``best.ckpt`` stays
    beside the new files, and a refused option or bad data leaves the old run whole:
    :func:`bundlenet.training.replace_previous_run`).
    ``ckpt_path=last`` without ``out/checkpoints/last.ckpt`` is an error: nothing to resume.
    """
    checkpoints = out / "checkpoints"
    stale = [p for folder in (out, checkpoints) if folder.is_dir() for p in folder.glob(".*.tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary file(s) of an interrupted save: %s", len(stale), ", ".join(p.name for p in stale))
    last = checkpoints / "last.ckpt"
    if ckpt_path == "last":
        if not last.is_file():
            raise InputError(
                f"ckpt_path=last but {last} does not exist: nothing to resume; check hydra.run.dir "
                f"(the run to resume), or leave ckpt_path out to start a new run"
            )
        return str(last)
    existing = [p for p in (out / "metrics.json", *sorted(checkpoints.glob("*.ckpt"))) if p.is_file()]
    if existing and not is_inside(ckpt_path, out) and not overwrite:
        what = "a finished run" if (out / "metrics.json").is_file() else "an unfinished run"
        raise InputError(
            f"run directory {out} holds {what} ({', '.join(str(p.relative_to(out)) for p in existing[:3])}); "
            f"resume it with ckpt_path=last, replace it with overwrite=true, or pass another hydra.run.dir"
        )
    return ckpt_path  # with overwrite: replaced once this run is built (bundlenet.training.replace_previous_run)


class RunDirGuard(HydraCallback):
    """Hydra callback (``hydra.callbacks.run_dir`` in ``conf/train.yaml``) that takes the run
    lock and checks the run directory (:func:`prepare_run_dir`) before Hydra writes anything
    there (``.hydra/``, ``train.log``): a refused job changes no file of the run it met. Bad
    input costs one ``error:`` line and exit 2. Multiruns check each job in :func:`train`."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not launcher_rank_zero():
            return  # a ddp launcher's other ranks run in rank 0's locked directory
        out = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir"))))

        def guard() -> None:
            check_train_options(config)
            if config.get("ckpt_path") == "last":  # nothing to resume: refused before the directory is made
                prepare_run_dir(out, "last", False)
            self._stack.enter_context(run_lock(out, break_lock=bool(config.get("break_lock", False))))
            prepare_run_dir(out, config.get("ckpt_path"), bool(config.get("overwrite", False)))

        run_cli(guard)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._stack.close()


def _stop_interrupted(cfg: DictConfig, final: FinalCheckpoint, out: Path) -> None:
    """After SIGTERM/SIGINT: one line saying what was saved and how to resume; exit 143/130."""
    signal_name = final.interrupted or "SIGTERM"
    try:
        task = [
            a
            for a in HydraConfig.get().overrides.task
            if not a.lstrip("+~").startswith(("ckpt_path=", "hydra.run.dir=", "overwrite="))
        ]
    except ValueError:  # not run by Hydra (tests, the Python API)
        task = []
    command = shlex.join(["python", "train.py", *task, "ckpt_path=last", f"hydra.run.dir={out}"])
    if final.saved_step is not None:
        log.warning(
            "interrupted by %s at step %d; %s holds it: resume with `%s`", signal_name, final.saved_step, final.path, command
        )
    else:
        log.warning(
            "interrupted by %s before a checkpoint was written: run again with `%s`",
            signal_name,
            command.replace(" ckpt_path=last", "") if not final.path.is_file() else command,
        )
    sys.exit(_SIGNAL_EXIT.get(signal_name, 1))


def _train(cfg: DictConfig, ckpt_path: str | None) -> dict[str, Any]:
    try:
        return run_training(cfg, ckpt_path=ckpt_path)[1]
    except TrainingInterrupted as stopped:
        _stop_interrupted(cfg, stopped.final, Path(cfg.paths.output_dir))
        raise  # _stop_interrupted exits


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    metrics = run_cli(train, cfg)
    target = cfg.get("optimized_metric")
    return lookup(metrics, target) if target else None


def main() -> float | None:
    """``python train.py`` / ``bundlenet-train``: train with the Hydra config ``train.yaml``
    (the value of ``optimized_metric`` goes back to Hydra sweepers)."""
    check_group_choices(CONF_DIR, sys.argv[1:])
    return _hydra_main()


if __name__ == "__main__":
    main()
