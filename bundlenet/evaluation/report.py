"""Aggregate a multirun into Markdown tables: ``python -m bundlenet.report MULTIRUN_DIR``.

Every run directory under MULTIRUN_DIR that holds ``config.yaml`` and ``evaluation.json`` (both
written by ``train.py``) becomes one row: its dataset, its model, and each metric's mean with
its 95% bootstrap CI. Each dataset block starts with the noise floor (two true samples), the
best a perfect generator can expect; the best model mean of each column is in bold. The tables
are printed and written to ``MULTIRUN_DIR/report.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bundlenet.cli import run_cli
from bundlenet.errors import InputError
from bundlenet.io import write_text
from bundlenet.metrics import CloudMetrics

log = logging.getLogger("bundlenet.report")

LABELS = {"mmd": "MMD", "msmd": "MSMD", "kl_fwd": "KL-fwd", "kl_bwd": "KL-bwd", "w1": "W1", "w2": "W2"}
MODEL_ORDER = ("bundlenet", "cflow", "cgan", "cgan_nbhd", "cgan_triv", "wgan")
DATA_ORDER = ("torus", "sliced_torus", "moebius")


@dataclass(frozen=True)
class Run:
    """One finished training run: its names, evaluation and training metrics."""

    path: Path
    data: str
    model: str
    evaluation: dict[str, Any]
    metrics: dict[str, Any]


def _choice(run_dir: Path, config: dict[str, Any], group: str) -> str:
    """The config-group option a run used: Hydra's record of its choices, else the class name."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        choice = OmegaConf.select(OmegaConf.load(hydra_file), f"hydra.runtime.choices.{group}")
        if choice:
            return str(choice)
    node = config.get(group) or {}
    target = str((node.get("bundle") or {}).get("_target_", "")) if group == "data" else ""
    return (target or str(node.get("_target_", "?"))).rsplit(".", 1)[-1]


def find_runs(root: Path) -> list[Run]:
    """Every run under ``root`` with a ``config.yaml`` and an ``evaluation.json``."""
    if not root.is_dir():
        raise InputError(f"multirun directory not found: {root}; pass the hydra.sweep.dir of a train.py -m run")
    runs = []
    for config_path in sorted(root.rglob("config.yaml")):
        run_dir = config_path.parent
        evaluation_path = run_dir / "evaluation.json"
        if run_dir.name == ".hydra":
            continue
        if not evaluation_path.is_file():
            log.warning("skipping %s: no evaluation.json (unfinished run, or trainer.fast_dev_run)", run_dir)
            continue
        config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
        metrics_path = run_dir / "metrics.json"
        runs.append(Run(
            path=run_dir,
            data=_choice(run_dir, config, "data"),
            model=_choice(run_dir, config, "model"),
            evaluation=json.loads(evaluation_path.read_text()),
            metrics=json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
        ))
    if not runs:
        raise InputError(f"no finished runs under {root}: each run dir needs config.yaml and evaluation.json from train.py")
    return runs


def _order(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(name) if name in order else len(order), name)


def _cell(estimate: dict[str, Any] | None, bold: bool = False) -> str:
    if not estimate or estimate.get("mean") is None or not math.isfinite(estimate["mean"]):
        return "n/a"
    text = f"{estimate['mean']:.3g}"
    if bold:
        text = f"**{text}**"
    if estimate.get("low") is not None and estimate.get("high") is not None:
        text += f" [{estimate['low']:.3g}, {estimate['high']:.3g}]"
    return text


def scope_table(runs: list[Run], scope: str) -> str:
    """One Markdown table of ``scope`` ('fiber' or 'global') metrics over all runs."""
    names = CloudMetrics.names()
    header = ["data", "model", *[LABELS[n] for n in names], "W2 / floor", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    by_data: dict[str, list[Run]] = {}
    for run in runs:
        by_data.setdefault(run.data, []).append(run)
    for data in sorted(by_data, key=lambda d: _order(d, DATA_ORDER)):
        group = sorted(by_data[data], key=lambda r: _order(r.model, MODEL_ORDER))
        applicable = [r for r in group if isinstance(r.evaluation.get(scope), dict)]
        if applicable:
            floor = applicable[0].evaluation[scope]
            lines.append("| " + " | ".join([data, "*noise floor*", *[_cell(floor[n]["noise_floor"]) for n in names], "1", ""]) + " |")
        best = {}
        for n in names:
            means = [r.evaluation[scope][n]["model"]["mean"] for r in applicable]
            finite = [m for m in means if m is not None and math.isfinite(m)]
            best[n] = min(finite) if finite else None
        for run in group:
            results = run.evaluation.get(scope)
            seconds = run.metrics.get("train_seconds")
            train = f"{seconds:.0f}" if isinstance(seconds, (int, float)) else ""
            if not isinstance(results, dict):
                cells = ["n/a (unconditional)"] + [""] * len(names)
            else:
                cells = [_cell(results[n]["model"], bold=results[n]["model"]["mean"] == best[n] and len(applicable) > 1) for n in names]
                floor_w2 = applicable[0].evaluation[scope]["w2"]["noise_floor"]["mean"]
                mean_w2 = results["w2"]["model"]["mean"]
                cells.append(f"{mean_w2 / floor_w2:.2f}" if mean_w2 is not None and floor_w2 else "")
            lines.append("| " + " | ".join([data, run.model, *cells, train]) + " |")
    return "\n".join(lines)


def build_report(root: Path) -> str:
    """The Markdown report of the multirun at ``root``."""
    runs = find_runs(root)
    protocol = runs[0].evaluation.get("protocol", {})
    sizes = (f"{protocol.get('iterations')} iterations; fibers: {protocol.get('num_fibers')} × {protocol.get('num_points')} "
             f"points; global: {protocol.get('num_global')} points (W1/W2 on the first {protocol.get('global_ot_points') or 'all'})")
    return "\n".join([
        f"Fiber-wise metrics (mean [95% bootstrap CI] over {sizes}; lower is better, best model in bold):",
        "",
        scope_table(runs, "fiber"),
        "",
        "Global metrics:",
        "",
        scope_table(runs, "global"),
        "",
    ])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bundlenet.report", description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path, help="hydra.sweep.dir of a train.py -m run")
    args = parser.parse_args(argv)
    report = build_report(args.multirun_dir)
    write_text(args.multirun_dir / "report.md", report)
    sys.stdout.write(report + "\n")
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_cli(main)
