"""Any delimited text table as a bundle: ``data=csv data.path=FILE data.base_columns=[...]``.

The delimiter is detected (``csv.Sniffer`` over ``, ; tab |``); the first line is the header.
Base columns are the outputs y, total columns the inputs x (default: every other numeric
column, i.e. any column where some value parses as a number). Every chosen column must be numeric; missing values (empty, ``NA``, ``nan`` ...) are
an error naming the first rows (``nan_policy=error``) or their rows are dropped
(``nan_policy=drop``). The result is a :class:`~bundlenet.data.tabular.TabularBundle`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from bundlenet.data.tabular import TabularBundle
from bundlenet.errors import InputError

log = logging.getLogger(__name__)

NanPolicy = Literal["error", "drop"]
_SNIFF_BYTES = 65_536
_DELIMITERS = ",;\t|"


def sniff_delimiter(sample: str) -> str:
    """The delimiter of a text table from its first lines (``,`` when undecidable)."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _as_list(columns: str | Sequence[str] | None) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        return [columns]
    return [str(c) for c in columns]


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a delimited text table with a header row; raw values (strings where not numeric).

    Raises:
        InputError: the path does not exist, or the file is empty or has no data rows.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"data.path {p} does not exist; give the table to learn from as data.path=FILE.csv")
    with p.open(newline="", errors="replace") as f:
        sample = f.read(_SNIFF_BYTES)
    if not sample.strip():
        raise InputError(f"data.path {p} is empty; it needs a header row of column names and rows of numbers")
    sep = sniff_delimiter(sample)
    try:
        frame = pd.read_csv(p, sep=sep, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"cannot parse data.path {p} as a {sep!r}-separated table ({first})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise InputError(f"data.path {p} has a header but no data rows")
    log.info("read %s: %d rows, %d columns, delimiter %r", p, frame.shape[0], frame.shape[1], sep)
    return frame


def select_columns(frame: pd.DataFrame, base_columns: Sequence[str], total_columns: Sequence[str] | None, source: str) -> tuple[list[str], list[str]]:
    """Check the chosen columns against the header; default total = every other numeric column."""
    header = list(frame.columns)
    if not base_columns:
        raise InputError(f"data.base_columns is empty; name the output column(s) of {source}, one of {header}")
    for option, columns in (("data.base_columns", base_columns), ("data.total_columns", total_columns or [])):
        for c in columns:
            if c not in header:
                raise InputError(f"{option}: column {c!r} is not in the header of {source}; the columns are {header}")
        duplicates = sorted({c for c in columns if list(columns).count(c) > 1})
        if duplicates:
            raise InputError(f"{option} names {duplicates} more than once")
    if total_columns is None:
        total_columns = [c for c in header if c not in base_columns and _looks_numeric(frame[c])]
        skipped = [c for c in header if c not in base_columns and c not in total_columns]
        if skipped:
            log.info("total columns: skipping non-numeric column(s) %s", skipped)
    both = [c for c in total_columns if c in base_columns]
    if both:
        raise InputError(f"column {both[0]!r} is both a base and a total column; remove it from data.total_columns or data.base_columns")
    if not total_columns:
        raise InputError(f"{source} has no numeric column besides the base columns {list(base_columns)}; "
                         f"set data.total_columns")
    return list(base_columns), list(total_columns)


def _looks_numeric(column: pd.Series) -> bool:
    """A column counts as numeric when any of its values parses as a number (a text column of
    names or ids does not; a numeric column with a typo does, and is then reported)."""
    return bool(pd.to_numeric(column, errors="coerce").notna().any())


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> pd.DataFrame:
    """The chosen columns as floats; raise naming the first non-numeric column and line."""
    raw = frame[list(columns)]
    numeric = raw.apply(pd.to_numeric, errors="coerce")
    bad = (numeric.isna() & raw.notna()).to_numpy()
    if bad.any():
        cols = bad.any(axis=0).nonzero()[0]
        col = columns[int(cols[0])]
        row = int(bad[:, int(cols[0])].nonzero()[0][0])
        raise InputError(f"column {col!r} of {source} is not numeric (line {row + 2}: {raw[col].iloc[row]!r}); "
                         f"fix the value or leave the column out of data.base_columns/data.total_columns")
    return numeric.astype("float64")


def drop_missing(values: pd.DataFrame, policy: NanPolicy, source: str) -> pd.DataFrame:
    """Apply the NaN policy to the chosen columns: ``error`` names the first bad lines, ``drop`` drops them."""
    if policy not in ("error", "drop"):
        raise InputError(f"data.nan_policy must be error or drop, got {policy!r}")
    missing = values.isna().any(axis=1).to_numpy()
    if not missing.any():
        return values
    lines = (missing.nonzero()[0][:5] + 2).tolist()  # header is line 1
    if policy == "error":
        first = values.iloc[int(missing.nonzero()[0][0])]
        cols = [c for c in values.columns if pd.isna(first[c])]
        raise InputError(f"{int(missing.sum())} row(s) of {source} have missing values in the chosen columns "
                         f"(lines {lines}, first in {cols}); fill them in or set data.nan_policy=drop")
    log.warning("dropping %d row(s) with missing values (lines %s ...)", int(missing.sum()), lines)
    return values[~missing]


def csv_bundle(
    path: str | Path,
    base_columns: str | Sequence[str],
    total_columns: str | Sequence[str] | None = None,
    nan_policy: NanPolicy = "error",
    **options: Any,
) -> TabularBundle:
    """A :class:`TabularBundle` of the table at ``path``; ``options`` go to :class:`TabularBundle`
    (scaling ``minmax10|standard|none``, split, fiber rule)."""
    frame = read_table(path)
    source = str(Path(path).expanduser())
    base_cols, total_cols = select_columns(frame, _as_list(base_columns) or [], _as_list(total_columns), source)
    values = drop_missing(numeric_columns(frame, [*base_cols, *total_cols], source), nan_policy, source)
    return TabularBundle.from_frame(values, total_cols, base_cols, **options)
