"""Headless figures (matplotlib Agg), written atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from bundlenet.io import write_with  # noqa: E402


def plot_fibers(
    path: str | os.PathLike[str],
    base: Tensor,
    true: Tensor,
    generated: Tensor,
    total_names: Sequence[str],
    base_names: Sequence[str],
) -> None:
    """True vs generated fibers, one panel per base point.

    ``base [P, d_B]``, ``true [P, n, d_E]``, ``generated [P, m, d_E]``. Three or more total
    coordinates are drawn in 3-D (the first three), fewer in 2-D.
    """
    num = base.shape[0]
    cols = min(num, 4)
    rows = math.ceil(num / cols)
    three_d = true.shape[-1] >= 3
    fig = plt.figure(figsize=(4.2 * cols, 4.0 * rows))
    for i in range(num):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d" if three_d else None)
        dims = 3 if three_d else min(2, true.shape[-1])
        t = true[i, :, :dims].cpu().numpy()
        g = generated[i, :, :dims].cpu().numpy()
        if dims == 1:
            ax.scatter(t[:, 0], [0] * len(t), s=6, alpha=0.6, label="true fiber")
            ax.scatter(g[:, 0], [1] * len(g), s=6, alpha=0.6, label="generated")
        else:
            ax.scatter(*t.T, s=6, alpha=0.6, label="true fiber")
            ax.scatter(*g.T, s=6, alpha=0.6, label="generated")
        if dims >= 2:
            ax.set_aspect("equal", adjustable="datalim" if dims == 2 else "box")
        ax.set_xlabel(total_names[0])
        if dims >= 2:
            ax.set_ylabel(total_names[1])
        if dims >= 3:
            ax.set_zlabel(total_names[2])
        where = ", ".join(f"{n}={v:.2f}" for n, v in zip(base_names, base[i].tolist()))
        ax.set_title(where, fontsize=9)
        if i == 0:
            ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("fibers: true vs generated")
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
