"""``python -m bundlenet.evaluate ckpt_path=PATH [data=NAME] [evaluation.iterations=10 ...]``.

Prints a table of every metric's mean and 95% bootstrap CI over iterations beside the noise
floor, and writes ``evaluation.json``. The true bundle comes from the data config recorded in
the checkpoint by ``train.py`` (or from ``data=`` for checkpoints without one).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bundlenet.checkpoint import load_model
from bundlenet.cli.common import CONF_DIR, run_cli
from bundlenet.errors import InputError
from bundlenet.evaluation.protocol import Evaluation, Protocol, bundle_from_data_config, evaluate_model
from bundlenet.io import write_json

log = logging.getLogger("bundlenet.evaluate")


def evaluate(cfg: DictConfig) -> Evaluation:
    """The evaluate command: load, evaluate, print the table, write the JSON."""
    protocol = Protocol.from_config(cfg.evaluation)
    model = load_model(cfg.ckpt_path, map_location=cfg.device)
    if cfg.get("data") is not None:
        bundle = bundle_from_data_config(cfg.data)
    elif model.data_config is not None:
        bundle = bundle_from_data_config(model.data_config)
    else:
        raise InputError(f"checkpoint {cfg.ckpt_path} does not record its data; pass data=<name> (one of conf/data)")
    log.info("evaluating %s on %s: %d iterations, %d global points, %d fibers x %d points",
             type(model).__name__, type(bundle).__name__, protocol.iterations, protocol.num_global,
             protocol.num_fibers, protocol.num_points)
    result = evaluate_model(model, bundle, protocol)
    payload = {"checkpoint": str(cfg.ckpt_path), "bundle": type(bundle).__name__, **result.to_dict()}
    write_json(Path(cfg.output), payload)
    sys.stdout.write(result.table() + "\n")
    ot = protocol.ot_points
    if ot is not None:
        sys.stdout.write(f"global W1/W2 on the first {ot} of {protocol.num_global} points (exact OT); other metrics on all points" + "\n")
    sys.stdout.write(f"evaluated in {result.seconds:.1f} s; wrote {cfg.output}" + "\n")
    return result


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate, cfg)


if __name__ == "__main__":
    main()
