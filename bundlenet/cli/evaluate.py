"""``python -m bundlenet.evaluate ckpt_path=PATH [data=NAME] [evaluation.iterations=10 ...]``.

Prints a table of every metric's mean and 95% bootstrap CI over iterations beside the noise
floor, and writes the JSON into the checkpoint's run directory
(``<run dir>/evaluation_<checkpoint name>.json``, e.g. ``evaluation_last.json``; ``output=`` to
choose). An existing output is never replaced unless ``overwrite=true``. The true bundle comes
from the data config recorded in the checkpoint by ``train.py`` (or from ``data=`` for
checkpoints without one).

A run directory as ``ckpt_path`` (``ckpt_path=outputs/2026-01-01/12-00-00``) evaluates the model
that run reported (the ``checkpoint`` of its ``metrics.json``). A ``ckpt_path`` with a wildcard (``'ckpt_path=multirun/X/*/checkpoints/best.ckpt'``, quoted
for the shell) evaluates every matching checkpoint, in name order, each into its own run
directory; every output is checked before the first evaluation, so a refused one stops the
command before anything is written.
"""

from __future__ import annotations

import glob
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from bundlenet.checkpoint import checkpoint_step, load_model, run_checkpoint
from bundlenet.cli.common import CONF_DIR, check_device, check_output, check_seed, run_cli, write_output
from bundlenet.errors import InputError
from bundlenet.evaluation.protocol import Evaluation, Protocol, bundle_from_data_config, evaluate_model
from bundlenet.io import write_json

log = logging.getLogger("bundlenet.evaluate")


def default_output(ckpt_path: str | Path) -> Path:
    """``<run dir>/evaluation_<stem>.json`` for a checkpoint in ``<run dir>/checkpoints/``, else
    beside the checkpoint: the run's own ``evaluation.json`` (train.py's) is never replaced."""
    ckpt = Path(ckpt_path)
    folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return folder / f"evaluation_{ckpt.stem}.json"


def checkpoints(pattern: str) -> list[Path]:
    """The checkpoints ``ckpt_path`` names: the path itself, or every match of a wildcard, sorted;
    a run directory stands for the checkpoint of its reported model
    (:func:`~bundlenet.checkpoint.run_checkpoint`)."""
    if not glob.has_magic(pattern):
        return [run_checkpoint(pattern)]
    found = sorted(Path(p) for p in glob.glob(pattern))
    if not found:
        raise InputError(
            f"no checkpoint matches ckpt_path={pattern}; check the path (quote the override so the shell keeps the *)"
        )
    return [run_checkpoint(p) for p in found]


def evaluate(cfg: DictConfig) -> list[Evaluation]:
    """The evaluate command: for each checkpoint of ``ckpt_path``, load, evaluate, print the
    table and write the JSON."""
    paths = checkpoints(str(cfg.ckpt_path))
    chosen = cfg.get("output")
    if chosen is not None and len(paths) > 1:
        raise InputError(
            f"ckpt_path={cfg.ckpt_path} matches {len(paths)} checkpoints; drop output= (each writes into its own run directory)"
        )
    outputs = [Path(chosen) if chosen is not None else default_output(p) for p in paths]
    for output in outputs:
        check_output(output, bool(cfg.get("overwrite", False)))
    check_seed(cfg.get("seed"))
    check_seed(OmegaConf.select(cfg, "evaluation.seed"), "evaluation.seed")
    protocol = Protocol.from_config(cfg.evaluation)
    return [_evaluate_one(cfg, path, output, protocol) for path, output in zip(paths, outputs, strict=True)]


def _evaluate_one(cfg: DictConfig, ckpt_path: Path, output: Path, protocol: Protocol) -> Evaluation:
    """One checkpoint against its bundle: load, evaluate, print the table, write ``output``."""
    model = load_model(ckpt_path, map_location=check_device(cfg.device))
    if cfg.get("data") is not None:
        bundle = bundle_from_data_config(cfg.data)
    elif model.data_config is not None:
        bundle = bundle_from_data_config(model.data_config)
    else:
        raise InputError(f"checkpoint {ckpt_path} does not record its data; pass data=<name> (one of conf/data)")
    log.info(
        "evaluating %s on %s: %d iterations, %d global points, %d fibers x %d points",
        type(model).__name__,
        type(bundle).__name__,
        protocol.iterations,
        protocol.num_global,
        protocol.num_fibers,
        protocol.num_points,
    )
    result = evaluate_model(model, bundle, protocol)
    payload = {
        "checkpoint": str(ckpt_path),
        "checkpoint_step": checkpoint_step(ckpt_path),
        "bundle": type(bundle).__name__,
        **result.to_dict(),
    }
    write_output(output, lambda tmp: write_json(tmp, payload))
    sys.stdout.write(result.table() + "\n")
    ot = protocol.ot_points
    if ot is not None:
        sys.stdout.write(
            f"global W1/W2 on the first {ot} of {protocol.num_global} points (exact OT); other metrics on all points" + "\n"
        )
    sys.stdout.write(f"evaluated in {result.seconds:.1f} s; wrote {output}" + "\n")
    return result


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate, cfg)


if __name__ == "__main__":
    main()
