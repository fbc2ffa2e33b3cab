"""The training job behind ``python train.py``: build everything from a Hydra config, fit,
evaluate, and write the run's files."""

from __future__ import annotations

import os
import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from bundlenet.cli.common import CONF_DIR, check_group_choices, run_cli
from bundlenet.io import run_lock
from bundlenet.training import lookup, run_training


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and write outputs (:func:`bundlenet.training.run_training`); return the
    final metrics (also in ``metrics.json``).

    The run directory is locked while the job runs (:func:`bundlenet.io.run_lock`): a second
    job pointed at it stops at once. Ranks started by a ``ddp`` launcher share their rank 0's lock.
    """
    if int(os.environ.get("LOCAL_RANK", 0)) != 0 or int(os.environ.get("NODE_RANK", 0)) != 0:
        return _train(cfg)
    with run_lock(cfg.paths.output_dir):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, Any]:
    return run_training(cfg)[1]


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
