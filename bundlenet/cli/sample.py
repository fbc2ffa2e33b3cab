"""Sample fibers from a checkpoint alone: ``python -m bundlenet.sample ckpt_path=... base_points=...``.

Writes a CSV whose header is the base column names then the total-space column names, one row
per sample, ``len(base_points) × num_samples`` rows. ``units=original`` (default):
base points are given, and samples written, in the units of the training data's file;
``units=scaled``: in the model's scaled units (e.g. [0, 10] after min-max scaling).
``format=png`` (models trained on images, e.g. ``data=digits``) also writes one grid of the
generated images per base point next to the CSV: ``fibers_0.png``, ``fibers_1.png``, ... for
``output=fibers.csv``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from bundlenet.bundles.base import ColumnSupport, check_points, snap_to_support
from bundlenet.checkpoint import load_model
from bundlenet.cli.common import CONF_DIR, check_device, check_output, check_seed, run_cli, write_output
from bundlenet.data.csv_table import read_header, read_text, sniff_delimiter
from bundlenet.errors import InputError, positive_int
from bundlenet.forward import resolve_forward

log = logging.getLogger("bundlenet.cli.sample")


def read_base_points(path: str | Path, names: tuple[str, ...]) -> torch.Tensor:
    """Base points from a delimited text file whose header names the base columns (the delimiter
    is detected, a byte-order mark dropped, gzip and Latin-1 read, as for ``data.path``)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"base_points_file not found: {p}")
    text, _, _ = read_text(p, "base_points_file")
    if not text.strip():
        raise InputError(f"base_points_file {p} is empty; it needs a header {','.join(names)} and rows")
    sep = sniff_delimiter(text[:65_536])
    try:
        header = read_header(text, sep)
    except InputError as err:
        raise InputError(f"base_points_file {p}: {err}") from None
    rows = list(csv.reader(io.StringIO(text), delimiter=sep))
    missing = [n for n in names if n not in header]
    if missing:
        raise InputError(f"base_points_file {p} lacks column(s) {missing}; its header is {header}, expected {list(names)}")
    cols = [header.index(n) for n in names]
    try:
        return torch.tensor([[float(r[c]) for c in cols] for r in rows[1:] if r], dtype=torch.float32)
    except (ValueError, IndexError) as err:
        raise InputError(f"base_points_file {p} has a non-numeric or short row ({err})") from None


def write_samples(
    path: Path,
    base: torch.Tensor,
    samples: torch.Tensor,
    base_names: tuple[str, ...],
    total_names: tuple[str, ...],
    supports: tuple[ColumnSupport, ...] | None = None,
) -> None:
    """Write the sample CSV atomically: ``base [B, d_B]``, ``samples [B, n, d_E]`` (7 significant
    digits; the values of discrete columns and point masses of ``supports`` exactly as in the data)."""
    n = samples.shape[1]
    total, exact = snap_to_support(samples.reshape(-1, samples.shape[-1]), supports)
    base_rows = base.double().repeat_interleave(n, dim=0).tolist()

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*base_names, *total_names])
            writer.writerows(
                [
                    [f"{v:.7g}" for v in b] + [f"{v:.15g}" if e else f"{v:.7g}" for v, e in zip(row, flags)]
                    for b, row, flags in zip(base_rows, total.tolist(), exact.tolist())
                ]
            )

    write_output(path, write)


def image_paths(output: Path, count: int) -> list[Path]:
    """The image grids of ``format=png`` beside ``output``: ``<stem>_<i>.png``, one per base point."""
    return [output.with_name(f"{output.stem}_{i}.png") for i in range(count)]


def write_image_grids(
    output: Path, base: torch.Tensor, samples: torch.Tensor, names: tuple[str, ...], image_shape: tuple[int, int], vmax: float
) -> list[Path]:
    """One PNG grid of the images ``samples [B, n, H·W]`` per base point (display clipped to [0, vmax])."""
    from bundlenet.evaluation.plotting import image_grid, plt, save_figure

    paths = image_paths(output, base.shape[0])
    columns = max(1, math.ceil(math.sqrt(samples.shape[1])))
    for path, point, images in zip(paths, base.tolist(), samples):
        fig, ax = plt.subplots(figsize=(0.5 * columns + 0.5, 0.5 * math.ceil(samples.shape[1] / columns) + 0.6))
        image_grid(ax, images, image_shape, columns, vmax)
        ax.set_title(", ".join(f"{n}={v:.4g}" for n, v in zip(names, point)), fontsize=9)
        save_figure(fig, path, dpi=100)
    return paths


def sample(cfg: DictConfig) -> Path:
    """Run the sample command; return the written file."""
    ckpt_path = cfg.ckpt_path  # a missing ckpt_path is reported before anything else
    output = Path(cfg.output)
    check_output(output, bool(cfg.overwrite))
    device = check_device(cfg.device)
    seed = check_seed(cfg.seed)
    fmt = cfg.get("format", "csv")
    if fmt not in ("csv", "png"):
        raise InputError(f"format must be csv or png (png: image grids as well, for models trained on images), got {fmt!r}")
    num = positive_int(cfg.num_samples, "num_samples")
    model = load_model(ckpt_path, map_location=device)
    image_shape = model.spec.image_shape
    if fmt == "png" and image_shape is None:
        raise InputError(
            f"format=png needs a model trained on images (e.g. data=digits); this one was trained on the "
            f"columns {', '.join(model.spec.total_names[:6])}...; use format=csv"
        )
    names = model.spec.base_names
    base = _given_base_points(cfg, names)
    units = cfg.get("units", "original")
    base = check_points(base, len(names), "base point", names)
    if fmt == "png" and not cfg.overwrite:
        existing = [p for p in image_paths(output, base.shape[0]) if p.exists()]
        if existing:
            raise InputError(f"image {existing[0]} exists; choose another output= or pass overwrite=true")
    fixed = _fixed_option(cfg, model.spec.total_names)
    forward = resolve_forward(cfg.get("forward"), "forward") if cfg.get("forward") else None
    frame = model.sample_frame(base, num, fixed=fixed, seed=seed, refine=cfg.get("refine"), forward=forward, units=units)
    samples = torch.tensor(frame[list(model.spec.total_names)].to_numpy(copy=True)).reshape(base.shape[0], num, -1)
    write_samples(
        output, base.cpu(), samples, names, model.spec.total_names, model.spec.total_support if units == "original" else None
    )
    log.info("wrote %d samples over %d base point(s) to %s", samples.shape[0] * samples.shape[1], base.shape[0], output)
    if fmt == "png" and image_shape is not None:
        pixels = samples if units == "original" else model.spec.to_original(samples, "total")
        vmax = max((s.upper for s in model.spec.total_support or () if s.upper is not None), default=float(pixels.max()))
        paths = write_image_grids(output, base.cpu(), pixels.cpu(), names, image_shape, vmax)
        log.info("wrote %d image grid(s): %s ... %s", len(paths), paths[0], paths[-1])
    return output


def _given_base_points(cfg: DictConfig, names: tuple[str, ...]) -> torch.Tensor:
    """The base points of ``base_points='[[...]]'`` or ``base_points_file=FILE.csv`` (exactly one)."""
    if (cfg.base_points is None) == (cfg.base_points_file is None):
        raise InputError("give exactly one of base_points='[[...]]' or base_points_file=FILE.csv")
    if cfg.base_points is None:
        return read_base_points(cfg.base_points_file, names)
    points: Any = OmegaConf.to_object(cfg.base_points) if OmegaConf.is_config(cfg.base_points) else cfg.base_points
    try:
        rows = points if isinstance(points, list) and points and isinstance(points[0], list) else [points]
        return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float32)
    except (TypeError, ValueError):
        raise InputError(f"base_points must be a list of {len(names)}-number lists ({','.join(names)}), got {points}") from None


def _fixed_option(cfg: DictConfig, total_names: tuple[str, ...]) -> dict[str, float] | None:
    """``fixed={column: value}``, or ``None``."""
    fixed = cfg.get("fixed")
    fixed = OmegaConf.to_object(fixed) if OmegaConf.is_config(fixed) else fixed
    if fixed is not None and not isinstance(fixed, dict):
        raise InputError(
            f"fixed must be a mapping of total columns to values, e.g. fixed='{{{total_names[0]}:1.5}}'; got {fixed!r}"
        )
    return fixed


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sample")
def main(cfg: DictConfig) -> None:
    run_cli(sample, cfg)


if __name__ == "__main__":
    main()
