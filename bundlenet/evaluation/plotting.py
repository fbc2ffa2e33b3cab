"""Headless figures (matplotlib Agg), written atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from bundlenet.io import write_with


def save_figure(fig: matplotlib.figure.Figure, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically and close it."""
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    plt.close(fig)


def projections(dim: int, max_panels: int = 3) -> list[tuple[int, ...]]:
    """Coordinate groups to draw: all three for 3-D data, else pairs (0,1), (2,3), ... with the
    last pair ending at the last coordinate; a single coordinate for 1-D data."""
    if dim <= 1:
        return [(0,)]
    if dim == 3:
        return [(0, 1, 2)]
    pairs: list[tuple[int, ...]] = [(j, j + 1) for j in range(0, dim - 1, 2)]
    if dim % 2:
        pairs.append((dim - 2, dim - 1))
    return pairs[:max_panels]


def plot_fibers(
    path: str | os.PathLike[str],
    base: Tensor,
    true: Tensor,
    generated: Tensor,
    total_names: Sequence[str],
    base_names: Sequence[str],
) -> None:
    """True vs generated fibers, one panel per base point.

    ``base [P, d_B]``, ``true [P, n, d_E]``, ``generated [P, m, d_E]``. Exactly three total
    coordinates are drawn in 3-D; more are drawn as 2-D projections on the coordinate pairs
    (0,1), (2,3), ... (one row of panels per pair, at most 3 rows); two or one in 2-D.
    """
    num = base.shape[0]
    d_e = true.shape[-1]
    three_d = d_e == 3
    pairs = projections(d_e)
    cols = min(num, 4)
    rows = math.ceil(num / cols) * len(pairs)
    fig = plt.figure(figsize=(4.2 * cols, 4.0 * rows))
    for panel in range(num * len(pairs)):
        i, dims_idx = panel % num, list(pairs[panel // num])
        # an Axes3D (untyped mpl_toolkits) for 3-D data: its scatter takes x, y, z and it has set_zlabel
        ax: Any = fig.add_subplot(rows, cols, panel + 1, projection="3d" if three_d else None)
        dims = len(dims_idx)
        t = true[i][:, dims_idx].cpu().numpy()
        g = generated[i][:, dims_idx].cpu().numpy()
        if dims == 1:
            ax.scatter(t[:, 0], [0] * len(t), s=6, alpha=0.6, label="true fiber")
            ax.scatter(g[:, 0], [1] * len(g), s=6, alpha=0.6, label="generated")
        else:
            ax.scatter(*t.T, s=6, alpha=0.6, label="true fiber")
            ax.scatter(*g.T, s=6, alpha=0.6, label="generated")
        if dims >= 2:
            ax.set_aspect("equal", adjustable="datalim" if dims == 2 else "box")
        ax.set_xlabel(total_names[dims_idx[0]])
        if dims >= 2:
            ax.set_ylabel(total_names[dims_idx[1]])
        if dims >= 3:
            ax.set_zlabel(total_names[dims_idx[2]])
        where = ", ".join(f"{n}={v:.2f}" for n, v in zip(base_names, base[i].tolist()))
        ax.set_title(where, fontsize=9)
        if panel == 0:
            ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("fibers: true vs generated")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def image_grid(ax: Any, images: Tensor, shape: tuple[int, int], columns: int, vmax: float) -> None:
    """Draw ``images [n, H·W]`` (pixel values, clipped to [0, vmax] for display only) as one
    grid of ``columns`` images per row on ``ax``."""
    height, width = shape
    n = images.shape[0]
    rows = math.ceil(n / columns)
    canvas = torch.full((rows * (height + 1) - 1, columns * (width + 1) - 1), float("nan"))
    for i, image in enumerate(images.detach().cpu().float().clamp(0, vmax).reshape(n, height, width)):
        r, c = divmod(i, columns)
        canvas[r * (height + 1): r * (height + 1) + height, c * (width + 1): c * (width + 1) + width] = image
    ax.imshow(canvas.numpy(), cmap="gray_r", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_image_fibers(
    path: str | os.PathLike[str],
    base: Tensor,
    true: Tensor,
    generated: Tensor,
    image_shape: tuple[int, int],
    base_names: Sequence[str],
    per_fiber: int = 16,
    vmax: float | None = None,
) -> None:
    """Fibers of images: per base point, a grid of real images of its fiber beside a grid of
    generated ones. ``base [P, d_B]``, ``true [P, n, H·W]``, ``generated [P, m, H·W]`` (pixels);
    the first ``per_fiber`` images of each are drawn, in grey levels from 0 to ``vmax``
    (``None``: the brightest real pixel)."""
    num = base.shape[0]
    vmax = float(true.max()) if vmax is None else vmax
    columns = max(1, math.ceil(math.sqrt(per_fiber)))
    fig, axes = plt.subplots(num, 2, figsize=(5.0, 2.5 * num), squeeze=False)
    for i in range(num):
        where = ", ".join(f"{n}={v:.4g}" for n, v in zip(base_names, base[i].tolist()))
        for j, (label, images) in enumerate((("real", true[i]), ("generated", generated[i]))):
            image_grid(axes[i, j], images[:per_fiber], image_shape, columns, vmax)
            axes[i, j].set_title(f"{label}: {where}", fontsize=9)
    fig.suptitle("fibers: real vs generated images")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_curves(path: str | os.PathLike[str], history: dict[str, list[tuple[int, float]]]) -> None:
    """Loss and validation curves: one panel per metric, value against optimizer step."""
    names = sorted(history)
    if not names:
        return
    cols = min(len(names), 4)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps, values = zip(*history[name])
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_latent(path: str | os.PathLike[str], latent: Tensor, neighbourhood: Tensor, num_circles: int, max_nbhds: int = 6) -> None:
    """The encoded fiber latents of training points: each circle pair as a 2-D scatter
    (should be a ring), coloured by neighbourhood (the first ``max_nbhds`` neighbourhoods);
    with no circle, the latents' first two principal components (the two coordinates of a
    2-D latent)."""
    keep = neighbourhood < max_nbhds
    chosen = latent[keep].detach().cpu().float()
    if num_circles == 0 and chosen.shape[1] > 2 and chosen.shape[0] > 2:
        centred = chosen - chosen.mean(0)
        chosen = centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:2].T
    pairs = [(2 * j, 2 * j + 1) for j in range(num_circles)] or [(0, min(1, chosen.shape[1] - 1))]
    z, k = chosen.numpy(), neighbourhood[keep].cpu().numpy()
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4.0), squeeze=False)
    for ax, (a, b) in zip(axes.flat, pairs):
        points = ax.scatter(z[:, a], z[:, b], c=k, s=8, cmap="tab10", vmin=0, vmax=max(max_nbhds - 1, 1))
        principal = num_circles == 0 and latent.shape[1] > 2
        ax.set_xlabel("principal component 1" if principal else f"z{a}")
        ax.set_ylabel("principal component 2" if principal else f"z{b}")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title("circle pair" if num_circles else "latent coordinates", fontsize=9)
    fig.colorbar(points, ax=axes.ravel().tolist(), label="neighbourhood")
    save_figure(fig, path, dpi=100)
