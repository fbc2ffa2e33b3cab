"""How far a table's generated rows are from real ones: a forward map learned from held-out rows.

A table knows its map π only on its rows, so the re-simulation error ‖π(x̂) − y‖ of a generated
input x̂ needs a stand-in for π. :class:`TableJudge` fits a random forest x → y on the table's
held-out (test) rows, which no model was trained on, and scores any point by

* ``forest_resimulation``: ‖f(x̂) − y‖, the forest's prediction f against the asked output y;
* ``nearest_row``: the distance from x̂ to the nearest row of the table (all rows).

Real rows are judged as held-out ones: a point identical to a row the forest was fitted on is
predicted out of bag (by the trees that did not see it), and its nearest row is the nearest
*other* row. So the same scores of a second sample of real rows are the noise floors: the
forest's own error on real rows, and the spacing of real rows. Both are measured in the units
the points come in (the evaluation uses the model's scaled units).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger("bundlenet.data.judge")

TREES = 100
MAX_FIT_ROWS = 5000  # a forest on more held-out rows costs seconds and gains little precision
MIN_FIT_ROWS = 10  # fewer held-out rows make no forest worth judging by
_SAME = 1e-9  # squared distance below which a point is the row itself


class TableJudge:
    """A random forest x → y fitted on held-out rows, and the table's rows for nearest distances.

    Args:
        rows: ``[N, d_E]`` every row of the table (the nearest-row distance).
        fit_total: ``[M, d_E]`` held-out inputs the forest is fitted on (at most ``MAX_FIT_ROWS``
            of them are used, chosen with ``seed``).
        fit_base: ``[M, d_B]`` their outputs.
        seed: seed of the forest and of the subsample.
    """

    def __init__(self, rows: Tensor, fit_total: Tensor, fit_base: Tensor, seed: int = 0) -> None:
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.neighbors import NearestNeighbors

        rng = np.random.default_rng(seed)
        x, y = fit_total.double().cpu().numpy(), fit_base.double().cpu().numpy()
        if x.shape[0] > MAX_FIT_ROWS:
            keep = np.sort(rng.choice(x.shape[0], MAX_FIT_ROWS, replace=False))
            x, y = x[keep], y[keep]
        target = y[:, 0] if y.shape[1] == 1 else y
        self.forest = RandomForestRegressor(n_estimators=TREES, oob_score=True, n_jobs=1, random_state=seed).fit(x, target)
        self.out_of_bag = np.asarray(self.forest.oob_prediction_, dtype=np.float64).reshape(x.shape[0], -1)
        self._fit_index = NearestNeighbors(n_neighbors=1).fit(x)
        self._rows = NearestNeighbors(n_neighbors=2).fit(rows.double().cpu().numpy())
        log.debug("table judge: a forest on %d held-out rows, out-of-bag R^2 %.3f", x.shape[0], self.forest.oob_score_)

    @classmethod
    def usable(cls, num_fit_rows: int) -> bool:
        """Whether ``num_fit_rows`` held-out rows are enough to fit a judge."""
        return num_fit_rows >= MIN_FIT_ROWS

    def predict(self, total: Tensor) -> Tensor:
        """The forest's outputs ``[..., d_B]`` for inputs ``total [..., d_E]`` (out of bag for a fit row)."""
        flat = total.detach().reshape(-1, total.shape[-1]).double().cpu().numpy()
        predicted = np.asarray(self.forest.predict(flat), dtype=np.float64).reshape(flat.shape[0], -1)
        distance, index = self._fit_index.kneighbors(flat)
        itself = distance[:, 0] ** 2 < _SAME
        predicted[itself] = self.out_of_bag[index[itself, 0]]
        return torch.from_numpy(predicted).reshape(*total.shape[:-1], -1)

    def resimulation(self, total: Tensor, base: Tensor) -> Tensor:
        """Mean ‖f(x̂) − y‖ over the points of each fiber ``total [B, n, d_E]`` over ``base [B, d_B]``: ``[B]``."""
        return (self.predict(total) - base.detach().double().cpu().unsqueeze(1)).norm(dim=-1).mean(-1)

    def nearest_row(self, total: Tensor) -> Tensor:
        """Median distance from the points of each fiber ``total [B, n, d_E]`` to the nearest other
        row of the table: ``[B]``."""
        flat = total.detach().reshape(-1, total.shape[-1]).double().cpu().numpy()
        distance, _ = self._rows.kneighbors(flat)
        nearest = np.where(distance[:, 0] ** 2 < _SAME, distance[:, 1], distance[:, 0])
        return torch.from_numpy(nearest).reshape(total.shape[:-1]).median(dim=-1).values
