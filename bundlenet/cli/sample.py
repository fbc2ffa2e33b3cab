"""Sample fibers from a checkpoint alone: ``python -m bundlenet.sample ckpt_path=... base_points=...``.

Writes a CSV whose header is the base column names then the total-space column names, one row
per sample, ``len(base_points) × num_samples`` rows. ``units=original`` (default):
base points are given, and samples written, in the units of the training data's file;
``units=scaled``: in the model's scaled units (e.g. [0, 10] after min-max scaling).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from bundlenet.bundles.base import check_points
from bundlenet.checkpoint import load_model
from bundlenet.cli.common import CONF_DIR, run_cli
from bundlenet.errors import InputError
from bundlenet.io import atomic_path

log = logging.getLogger("bundlenet.cli.sample")


def read_base_points(path: str | Path, names: tuple[str, ...]) -> torch.Tensor:
    """Base points from a CSV file whose header names the base columns."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"base_points_file not found: {p}")
    with p.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise InputError(f"base_points_file {p} is empty; it needs a header {','.join(names)} and rows")
    header = [h.strip() for h in rows[0]]
    missing = [n for n in names if n not in header]
    if missing:
        raise InputError(f"base_points_file {p} lacks column(s) {missing}; its header is {header}, expected {list(names)}")
    cols = [header.index(n) for n in names]
    try:
        return torch.tensor([[float(r[c]) for c in cols] for r in rows[1:] if r], dtype=torch.float32)
    except (ValueError, IndexError) as err:
        raise InputError(f"base_points_file {p} has a non-numeric or short row ({err})") from None


def write_samples(path: Path, base: torch.Tensor, samples: torch.Tensor, base_names: tuple[str, ...], total_names: tuple[str, ...]) -> None:
    """Write the sample CSV atomically: ``base [B, d_B]``, ``samples [B, n, d_E]``."""
    n = samples.shape[1]
    rows = torch.cat([base.repeat_interleave(n, dim=0), samples.reshape(-1, samples.shape[-1])], dim=1)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*base_names, *total_names])
        writer.writerows([[f"{v:.7g}" for v in row] for row in rows.tolist()])


def sample(cfg: DictConfig) -> Path:
    """Run the sample command; return the written file."""
    output = Path(cfg.output)
    if output.exists() and not cfg.overwrite:
        raise InputError(f"output {output} exists; choose another output= or pass overwrite=true")
    num = cfg.num_samples
    if not isinstance(num, int) or num <= 0:
        raise InputError(f"num_samples must be a positive integer, got {num}")
    model = load_model(cfg.ckpt_path, map_location=cfg.device)
    names = model.spec.base_names
    if (cfg.base_points is None) == (cfg.base_points_file is None):
        raise InputError("give exactly one of base_points='[[...]]' or base_points_file=FILE.csv")
    if cfg.base_points is not None:
        points: Any = OmegaConf.to_object(cfg.base_points) if OmegaConf.is_config(cfg.base_points) else cfg.base_points
        try:
            rows = points if isinstance(points, list) and points and isinstance(points[0], list) else [points]
            base = torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float32)
        except (TypeError, ValueError):
            raise InputError(f"base_points must be a list of {len(names)}-number lists ({','.join(names)}), got {points}") from None
    else:
        base = read_base_points(cfg.base_points_file, names)
    units = cfg.get("units", "original")
    base = check_points(base, len(names), "base point", names)
    samples = model.sample_fiber(base, num, seed=cfg.seed, units=units)
    write_samples(output, base.cpu(), samples.cpu(), names, model.spec.total_names)
    log.info("wrote %d samples over %d base point(s) to %s", samples.shape[0] * samples.shape[1], base.shape[0], output)
    return output


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sample")
def main(cfg: DictConfig) -> None:
    run_cli(sample, cfg)


if __name__ == "__main__":
    main()
