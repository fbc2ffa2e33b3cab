"""What each column of a table allows: bounds, discrete values and point masses, found from the
data or stated by the user (``data.bounds``, ``data.discrete``).

The result is one :class:`~bundlenet.bundles.base.ColumnSupport` per total column, stored in the
model's spec; every model samples inside it (:class:`~bundlenet.nn.support.SupportTransform`) and
the evaluation reports the share of samples inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from bundlenet.bundles.base import ColumnSupport
from bundlenet.errors import InputError


def infer_supports(
    values: Tensor,
    names: Sequence[str],
    bounds: Mapping[str, Any] | None = None,
    discrete: str | Sequence[str] = "auto",
    max_discrete_values: int = 20,
    min_atom_share: float = 0.05,
    nonnegative: bool = True,
) -> tuple[ColumnSupport, ...]:
    """The support of each column of ``values [N, d]`` (original units).

    Args:
        values: the table's rows (all of them, so the support covers held-out rows too).
        names: the column names (``bounds`` and ``discrete`` refer to them).
        bounds: ``{column: [lower, upper]}`` stated by the user; either side may be ``None``.
            A stated bound the data violates is an error naming the column and the row value.
        discrete: ``auto`` (a column with at most ``max_discrete_values`` distinct values, each
            seen ≥ 5 times on average, is discrete, and so is a column with one value), or the
            list of discrete columns (``[]``: none).
        min_atom_share: a bound value that holds at least this share of a continuous column's
            rows (e.g. exact zeros) is a point mass.
        nonnegative: a column without a stated lower bound whose values are all ≥ 0 gets the
            lower bound 0 (amounts, concentrations, counts, times).
    """
    bounds = dict(bounds or {})
    unknown = sorted(set(bounds) - set(names))
    if unknown:
        raise InputError(f"data.bounds names {unknown}, which are not total columns; the total columns are {list(names)}")
    stated = _stated_discrete(discrete, names)
    values = values.double()
    supports = []
    for j, name in enumerate(names):
        column = values[:, j]
        lower, upper = _bounds(name, column, bounds.get(name), nonnegative)
        distinct = torch.unique(column)
        if stated is None:
            is_discrete = distinct.numel() <= max_discrete_values and column.numel() >= 5 * distinct.numel()
        else:
            is_discrete = name in stated
        if (is_discrete and distinct.numel() >= 2) or (distinct.numel() == 1 and stated is None):
            # a discrete column, or one that never varies (a border pixel that is always 0): samples
            # take the values seen, exactly
            supports.append(ColumnSupport(lower, upper, values=tuple(distinct.tolist())))
            continue
        atoms = tuple(b for b in (lower, upper) if b is not None and float((column == b).double().mean()) >= min_atom_share)
        supports.append(ColumnSupport(lower, upper, atoms=atoms))
    return tuple(supports)


def _stated_discrete(discrete: str | Sequence[str], names: Sequence[str]) -> set[str] | None:
    """The discrete columns of ``data.discrete`` (``None`` for ``auto``: found from the data)."""
    if isinstance(discrete, str):
        if discrete != "auto":
            raise InputError(f"data.discrete must be auto or a list of columns, got {discrete!r}")
        return None
    stated = {str(c) for c in discrete}
    missing = sorted(stated - set(names))
    if missing:
        raise InputError(f"data.discrete names {missing}, which are not total columns; the total columns are {list(names)}")
    return stated


def _bounds(name: str, column: Tensor, stated: Any, nonnegative: bool) -> tuple[float | None, float | None]:
    if stated is None:
        lower = 0.0 if nonnegative and bool((column >= 0).all()) else None
        return lower, None
    if not isinstance(stated, Sequence) or isinstance(stated, str) or len(stated) != 2:
        raise InputError(f"data.bounds.{name} must be [lower, upper] (null for an open side), got {stated!r}")
    lower, upper = (None if v is None else float(v) for v in stated)
    low, high = float(column.min()), float(column.max())
    if lower is not None and low < lower:
        raise InputError(f"column {name!r} has the value {low:g} below its stated lower bound {lower:g}; fix data.bounds.{name}")
    if upper is not None and high > upper:
        raise InputError(f"column {name!r} has the value {high:g} above its stated upper bound {upper:g}; fix data.bounds.{name}")
    if lower is not None and upper is not None and not lower < upper:
        raise InputError(f"data.bounds.{name}: the lower bound {lower:g} must be below the upper bound {upper:g}")
    return lower, upper
