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


def spread_points(candidates: Tensor, count: int) -> Tensor:
    """``count`` of the ``candidates [M, d]`` spread over their range (greedy farthest-point
    choice on the columns scaled to unit spread, starting from the first candidate): the base
    points of a figure cover the base instead of two landing side by side. ``[count, d]``;
    fewer when there are fewer distinct candidates."""
    points = torch.unique(candidates, dim=0) if candidates.shape[0] > 1 else candidates
    if points.shape[0] <= count:
        return points
    order = torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(0))
    points = points[order]  # torch.unique sorts: a seeded shuffle keeps the first pick unbiased
    scaled = (points - points.mean(0)) / points.std(0).clamp_min(1e-12)
    chosen = [0]
    distance = (scaled - scaled[0]).norm(dim=1)
    while len(chosen) < count:
        nxt = int(distance.argmax())
        chosen.append(nxt)
        distance = torch.minimum(distance, (scaled - scaled[nxt]).norm(dim=1))
    return points[chosen]


def _named_point(names: Sequence[str], point: Tensor) -> str:
    return ", ".join(f"{n}={v:.3g}" for n, v in zip(names, point.tolist(), strict=True))


def _cube_limits(ax: Any, points: Any, equal_scales: bool) -> None:
    """A cube for a 3-D panel around ``points [n, 3]``, a few ticks on each axis: with
    ``equal_scales`` one scale on the three axes (a flat fiber would otherwise squeeze an axis
    until its tick labels overlap), else each axis spans its own data (columns in other units)."""
    from matplotlib.ticker import MaxNLocator

    low, high = points.min(0), points.max(0)
    centre = (low + high) / 2
    half = ((high - low).clip(min=1e-6) / 2 * 1.05) if not equal_scales else [max(float((high - low).max()) / 2, 1e-6) * 1.05] * 3
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(nbins=4))
    ax.set_xlim(centre[0] - half[0], centre[0] + half[0])
    ax.set_ylim(centre[1] - half[1], centre[1] + half[1])
    ax.set_zlim(centre[2] - half[2], centre[2] + half[2])
    ax.set_box_aspect((1, 1, 1), zoom=0.85)  # room for the tick and axis labels inside the panel


def plot_fibers(
    path: str | os.PathLike[str],
    base: Tensor,
    true: Tensor,
    generated: Tensor,
    total_names: Sequence[str],
    base_names: Sequence[str],
    equal_scales: bool = True,
) -> None:
    """True vs generated fibers, one panel per base point, one legend for the figure.

    ``base [P, d_B]``, ``true [P, n, d_E]``, ``generated [P, m, d_E]``. Exactly three total
    coordinates are drawn in 3-D; more are drawn as 2-D
    projections on the coordinate pairs (0,1), (2,3), ... (one row of panels per pair, at most
    3 rows); two or one in 2-D. The axes are the total-space (input) columns, the panel titles
    the base (output) point; the figure's title says which is which. ``equal_scales``: one
    scale on every axis of a panel (columns in the same units, e.g. a synthetic bundle's
    coordinates); ``False`` for columns in different units (a table's).
    """
    num = base.shape[0]
    d_e = true.shape[-1]
    three_d = d_e == 3
    pairs = projections(d_e)
    cols = min(num, 4)
    rows = math.ceil(num / cols) * len(pairs)
    height = 4.0 * rows + 0.7  # inches: the panels and two lines of title
    fig = plt.figure(figsize=(4.2 * cols, height))
    for panel in range(num * len(pairs)):
        i, dims_idx = panel % num, list(pairs[panel // num])
        # an Axes3D (untyped mpl_toolkits) for 3-D data: its scatter takes x, y, z and it has set_zlabel
        ax: Any = fig.add_subplot(rows, cols, panel + 1, projection="3d" if three_d else None)
        _fiber_panel(ax, true[i][:, dims_idx], generated[i][:, dims_idx], [total_names[j] for j in dims_idx], equal_scales)
        ax.set_title(f"fiber over {_named_point(base_names, base[i])}", fontsize=9)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=9, markerscale=2, ncol=2)
    base_cols, total_cols = ", ".join(base_names), ", ".join(total_names)
    fig.suptitle(
        f"Fibers over {num} base points: the true fiber vs the model's samples\n"
        f"panel title: the base point ({base_cols}: the base column{'s' if len(base_names) > 1 else ''}); "
        f"axes: the total-space columns" + (f" ({total_cols})" if len(total_names) <= 6 else ""),
        fontsize=10,
        x=0.01,
        ha="left",
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / height))
    save_figure(fig, path, dpi=110)


def _fiber_panel(ax: Any, true: Tensor, generated: Tensor, names: list[str], equal_scales: bool) -> None:
    """One panel of :func:`plot_fibers`: a true and a generated fiber ``[n, k]``, ``[m, k]`` on the
    ``k`` ≤ 3 columns ``names``."""
    dims = len(names)
    t = true.cpu().numpy()
    g = generated.cpu().numpy()
    if dims == 1:
        ax.scatter(t[:, 0], [0] * len(t), s=6, alpha=0.6, label="true fiber")
        ax.scatter(g[:, 0], [1] * len(g), s=6, alpha=0.6, label="generated by the model")
        ax.set_yticks([0, 1], ["true", "generated"])
        ax.set_ylim(-0.5, 1.5)
    else:
        ax.scatter(*t.T, s=6, alpha=0.6, label="true fiber")
        ax.scatter(*g.T, s=6, alpha=0.6, label="generated by the model")
    if dims == 2 and equal_scales:
        ax.set_aspect("equal", adjustable="datalim")
    elif dims == 3:
        import numpy as np

        _cube_limits(ax, np.concatenate([t, g]), equal_scales)
    ax.set_xlabel(names[0])
    if dims >= 2:
        ax.set_ylabel(names[1])
    if dims >= 3:
        ax.set_zlabel(names[2])


def image_grid(ax: Any, images: Tensor, shape: tuple[int, int], columns: int, vmax: float) -> None:
    """Draw ``images [n, H·W]`` (pixel values, clipped to [0, vmax] for display only) as one
    grid of ``columns`` images per row on ``ax``."""
    height, width = shape
    n = images.shape[0]
    rows = math.ceil(n / columns)
    canvas = torch.full((rows * (height + 1) - 1, columns * (width + 1) - 1), float("nan"))
    for i, image in enumerate(images.detach().cpu().float().clamp(0, vmax).reshape(n, height, width)):
        r, c = divmod(i, columns)
        canvas[r * (height + 1) : r * (height + 1) + height, c * (width + 1) : c * (width + 1) + width] = image
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
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_latent(
    path: str | os.PathLike[str], latent: Tensor, neighbourhood: Tensor, num_circles: int, max_nbhds: int = 6
) -> None:
    """The encoded fiber latents of training points: each circle pair as a 2-D scatter
    (should be a ring), coloured by neighbourhood (the first ``max_nbhds`` of the cover's
    ``K`` = ``neighbourhood.max() + 1``, said in the title and the colour bar); with no circle,
    the latents' first two principal components (the two coordinates of a 2-D latent)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    total_nbhds = int(neighbourhood.max()) + 1 if neighbourhood.numel() else 0
    shown = min(max_nbhds, total_nbhds)
    keep = neighbourhood < shown
    chosen = latent[keep].detach().cpu().float()
    principal = num_circles == 0 and chosen.shape[1] > 2
    if principal and chosen.shape[0] > 2:
        centred = chosen - chosen.mean(0)
        chosen = centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:2].T
    pairs = [(2 * j, 2 * j + 1) for j in range(num_circles)] or [(0, min(1, chosen.shape[1] - 1))]
    z, k = chosen.numpy(), neighbourhood[keep].cpu().numpy()
    palette = matplotlib.colormaps["tab10" if shown <= 10 else "tab20"]
    colours = ListedColormap([palette(i) for i in range(max(shown, 1))])  # one colour per neighbourhood shown
    norm = BoundaryNorm([b - 0.5 for b in range(max(shown, 1) + 1)], colours.N)
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs) + 0.8, 4.4), squeeze=False, layout="constrained")
    for j, (ax, (a, b)) in enumerate(zip(axes.flat, pairs)):
        if z.shape[1] == 1:  # one latent coordinate: its values, one row per neighbourhood
            points = ax.scatter(z[:, 0], k, c=k, s=8, cmap=colours, norm=norm)
            ax.set_xlabel("fiber latent z0")
            ax.set_ylabel("neighbourhood")
            ax.set_yticks(range(shown))
            ax.set_title("the one fiber coordinate, per neighbourhood", fontsize=9)
            continue
        points = ax.scatter(z[:, a], z[:, b], c=k, s=8, cmap=colours, norm=norm)
        if principal:
            ax.set_xlabel("principal component 1 of the fiber latent")
            ax.set_ylabel("principal component 2")
        else:
            ax.set_xlabel(f"fiber latent z{a}")
            ax.set_ylabel(f"fiber latent z{b}")
        ax.set_aspect("equal", adjustable="datalim")
        if num_circles:
            ax.set_title(f"circle {j + 1} of {num_circles}: a good model draws a ring", fontsize=9)
        else:
            shown_as = "its two main directions" if principal else "its two coordinates"
            ax.set_title(f"no circle factor: {shown_as}", fontsize=9)
    bar = fig.colorbar(points, ax=axes.ravel().tolist(), ticks=range(shown))
    bar.set_label(f"neighbourhood of the cover ({shown} of {total_nbhds} shown)")
    fig.suptitle(f"Training points mapped into the fiber latent (neighbourhoods 0-{shown - 1} of {total_nbhds})", fontsize=10)
    save_figure(fig, path, dpi=100)
