"""Train a BundleNet: ``python train.py [data=torus] [model=bundlenet] [key=value ...]``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bundlenet.cli import check_group_choices, run_cli
from bundlenet.training import lookup, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_cli(train, cfg)
    target = cfg.get("optimized_metric")
    return lookup(metrics, target) if target else None


if __name__ == "__main__":
    check_group_choices(Path(__file__).resolve().parent / "conf", sys.argv[1:])
    main()
