"""Any delimited text table as a bundle: ``data=csv data.path=FILE data.base_columns=[...]``.

The delimiter is detected (``csv.Sniffer`` over ``, ; tab |``); the first line is the header,
whose names must be distinct. Files may be gzip-compressed, UTF-8 (with or without a byte-order
mark) or Latin-1; with a ``;``, tab or ``|`` delimiter, columns written with decimal commas
(``1,5``) are read as numbers.
Base columns are the outputs y, total columns the inputs x (default: every other numeric
column, i.e. any column where some value parses as a number). Every chosen column must be numeric; missing values (empty, ``NA``, ``nan`` ...) are
an error naming the first rows (``nan_policy=error``) or their rows are dropped
(``nan_policy=drop``). Infinite cells are an error naming the column and line, and so is an
extreme cell (:func:`check_extremes`: a value far outside the range of the column's other rows,
such as one ``1e30`` in a column of values in [-1, 1], which would squeeze every other row into
a sliver of the scaled range) unless ``extreme_values=keep``. The result is a
:class:`~bundlenet.data.tabular.TabularBundle`.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bundlenet.data.tabular import TabularBundle
from bundlenet.errors import InputError

log = logging.getLogger(__name__)

NanPolicy = Literal["error", "drop"]
ExtremePolicy = Literal["error", "keep"]
_SNIFF_BYTES = 65_536
_DELIMITERS = ",;\t|"
_GZIP_MAGIC = b"\x1f\x8b"
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*$")
# extreme cells: outside [q_low - F·r, q_high + F·r], r = q_high - q_low the range of the
# column's central rows (quantiles _EXTREME_QUANTILE and 1 - _EXTREME_QUANTILE)
_EXTREME_QUANTILE = 0.01
_EXTREME_FACTOR = 100.0


def sniff_delimiter(sample: str) -> str:
    """The delimiter of a text table from its first lines (``,`` when undecidable). A header
    without commas but with one other candidate (``;``, tab, ``|``) decides: rows of decimal
    commas (``1,5;2,25``) would otherwise look comma-separated."""
    header = sample.lstrip("\ufeff").splitlines()[0] if sample.strip() else ""
    in_header = [d for d in _DELIMITERS if d in header]
    if len(in_header) == 1 and in_header[0] != ",":
        return in_header[0]
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


def read_text(p: Path, option: str = "data.path") -> tuple[str, str, str | None]:
    """``(text, encoding, compression)`` of a table file: gzip is unpacked, UTF-8 (a byte-order
    mark dropped) tried before Latin-1. Errors name the file as ``option``. Raises a one-line :class:`InputError` for folders,
    unreadable and binary files."""
    if p.is_dir():
        raise InputError(f"{option} {p} is a folder, not a table; give the file inside it as {option}=FILE.csv")
    if not p.is_file():
        raise InputError(f"{option} {p} does not exist; give the table to learn from as {option}=FILE.csv")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise InputError(
            f"cannot read {option} {p} ({err.strerror or type(err).__name__}); "
            f"fix its permissions (chmod +r) or copy it somewhere readable"
        ) from None
    compression = None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise InputError(f"{option} {p} is a damaged gzip file ({err}); decompress it yourself and pass the table") from None
        compression = "gzip"
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise InputError(f"{option} {p} is a binary file, not a delimited text table; export the data as CSV")
    try:
        return raw.decode("utf-8-sig"), "utf-8-sig", compression
    except UnicodeDecodeError:
        log.info("%s is not UTF-8: reading it as Latin-1", p)
        return raw.decode("latin-1"), "latin-1", compression


def read_header(text: str, sep: str) -> list[str]:
    """The column names of a table's first line; a repeated name is an error naming it."""
    header = [h.strip() for h in next(csv.reader(io.StringIO(text), delimiter=sep), [])]
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise InputError(
                f"the header names column {name!r} twice (columns {seen[name] + 1} and {i + 1}); give every column its own name"
            )
        seen[name] = i
    return header


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a delimited text table with a header row; raw values (strings where not numeric).

    Raises:
        InputError: the path does not exist or is a folder, the file is unreadable, empty,
            binary, has a repeated column name, or has no data rows.
    """
    p = Path(path).expanduser()
    text, encoding, compression = read_text(p)
    sample = text[:_SNIFF_BYTES]
    if not sample.strip():
        raise InputError(f"data.path {p} is empty; it needs a header row of column names and rows of numbers")
    sep = sniff_delimiter(sample)
    try:
        read_header(text, sep)
    except InputError as err:
        raise InputError(f"data.path {p}: {err}") from None
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, skipinitialspace=True)
        if sep != "," and _has_decimal_commas(frame):
            log.info("%s: numbers with decimal commas (1,5): reading ',' as the decimal mark", p)
            frame = pd.read_csv(io.StringIO(text), sep=sep, skipinitialspace=True, decimal=",")
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"cannot parse data.path {p} as a {sep!r}-separated table ({first})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise InputError(f"data.path {p} has a header but no data rows")
    log.info(
        "read %s: %d rows, %d columns, delimiter %r%s",
        p,
        frame.shape[0],
        frame.shape[1],
        sep,
        f" ({compression}, {encoding})" if compression or encoding == "latin-1" else "",
    )
    return frame


def _has_decimal_commas(frame: pd.DataFrame) -> bool:
    """Whether some text column holds only numbers written with a decimal comma (``1,5``) or
    integers, at least one with a comma."""
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column):
            continue
        values = column.dropna().astype(str)
        if values.empty:
            continue
        comma = values.str.match(_DECIMAL_COMMA)
        if bool(comma.any()) and bool((comma | values.str.fullmatch(r"\s*[+-]?\d+\s*")).all()):
            return True
    return False


def select_columns(
    frame: pd.DataFrame, base_columns: Sequence[str], total_columns: Sequence[str] | None, source: str
) -> tuple[list[str], list[str]]:
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
        raise InputError(
            f"column {both[0]!r} is both a base and a total column; remove it from data.total_columns or data.base_columns"
        )
    if not total_columns:
        raise InputError(f"{source} has no numeric column besides the base columns {list(base_columns)}; set data.total_columns")
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
        raise InputError(
            f"column {col!r} of {source} is not numeric (line {row + 2}: {raw[col].iloc[row]!r}); "
            f"fix the value or leave the column out of data.base_columns/data.total_columns"
        )
    values = numeric.astype("float64")
    infinite = np.isinf(values.to_numpy())
    if infinite.any():
        j = int(infinite.any(axis=0).nonzero()[0][0])
        row = int(infinite[:, j].nonzero()[0][0])
        raise InputError(
            f"column {columns[j]!r} of {source} has the value {values[columns[j]].iloc[row]:g} on line {row + 2} "
            f"(infinite); replace it with a finite number or remove the row "
            f"({int(infinite.sum())} infinite cell(s) in the chosen columns)"
        )
    return values


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
        raise InputError(
            f"{int(missing.sum())} row(s) of {source} have missing values in the chosen columns "
            f"(lines {lines}, first in {cols}); fill them in or set data.nan_policy=drop"
        )
    log.warning("dropping %d row(s) with missing values (lines %s ...)", int(missing.sum()), lines)
    return values[~missing]


def check_extremes(values: pd.DataFrame, policy: ExtremePolicy, source: str) -> None:
    """Refuse a column whose range is dominated by a few rows: a cell farther than
    ``_EXTREME_FACTOR`` times the spread of the column's central rows (its 1% to 99% quantiles)
    from them. Any scaling would squeeze every other row of that column into a sliver of its
    range (``minmax10``) or a fraction of one standard deviation (``standard``), and the model
    would learn nothing of it. ``policy=keep`` keeps such values (a column that truly spans
    orders of magnitude). The line numbers are those of the file (the header is line 1)."""
    if policy not in ("error", "keep"):
        raise InputError(f"data.extreme_values must be error or keep, got {policy!r}")
    if policy == "keep":
        return
    for name in values.columns:
        column = values[name].to_numpy(dtype="float64")
        low, high = np.quantile(column, [_EXTREME_QUANTILE, 1 - _EXTREME_QUANTILE])
        spread = high - low
        if not spread > 0:  # the central rows hold one value (a point mass): nothing to compare with
            continue
        outside = np.maximum(low - column, column - high)
        worst = int(np.argmax(outside))
        if outside[worst] > _EXTREME_FACTOR * spread:
            count = int((outside > _EXTREME_FACTOR * spread).sum())
            line = int(values.index[worst]) + 2
            raise InputError(
                f"column {name!r} of {source} has the extreme value {column[worst]:.6g} on line {line} "
                f"({count} such cell(s); 98% of its rows lie in [{low:.4g}, {high:.4g}]); fix or remove the row, "
                f"or set data.extreme_values=keep if such values are real"
            )


def csv_bundle(
    path: str | Path,
    base_columns: str | Sequence[str],
    total_columns: str | Sequence[str] | None = None,
    nan_policy: NanPolicy = "error",
    extreme_values: ExtremePolicy = "error",
    **options: Any,
) -> TabularBundle:
    """A :class:`TabularBundle` of the table at ``path``; ``options`` go to :class:`TabularBundle`
    (scaling ``minmax10|standard|none``, split, fiber rule). ``extreme_values``: ``error``
    refuses a column dominated by a few extreme cells (:func:`check_extremes`), ``keep`` keeps them."""
    frame = read_table(path)
    source = str(Path(path).expanduser())
    base_cols, total_cols = select_columns(frame, _as_list(base_columns) or [], _as_list(total_columns), source)
    values = drop_missing(numeric_columns(frame, [*base_cols, *total_cols], source), nan_policy, source)
    check_extremes(values, extreme_values, source)
    return TabularBundle.from_frame(values, total_cols, base_cols, **options)
