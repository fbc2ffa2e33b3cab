"""The paper's real data sets from the UCI repository, read in their own formats.

* Wine quality (Cortez et al. 2009): ``winequality-red.csv`` (1599 rows) and
  ``winequality-white.csv`` (4898 rows), ``;``-separated with a quoted header. Total space =
  the 11 physicochemical columns; base = (``quality``, ``colour``) with colour 0 = red,
  1 = white.
* Airfoil self-noise (Brooks, Pope & Marcolini): ``airfoil_self_noise.dat``, 1503 rows of 6
  tab-separated numbers, no header. Total space = frequency, angle of attack, chord length,
  free-stream velocity, suction-side displacement thickness; base = scaled sound pressure (dB).

Files are read from ``root`` (``None``: ``data/`` of the repository) and downloaded there from
the UCI repository when missing. After parsing, row and column counts are checked. Both sets are
min-max scaled to [0, 10] per column over all rows and split 80/20 with a seed, like the
authors' tensors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bundlenet.data.download import Opener, ensure_file
from bundlenet.data.tabular import TabularBundle
from bundlenet.errors import InputError

log = logging.getLogger(__name__)

UCI_BASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases"
_CHECKOUT = Path(__file__).resolve().parents[2]


def default_data_root() -> Path:
    """Where ``root: null`` looks for (and downloads) the UCI files: ``$BUNDLENET_DATA`` when
    set, else ``data/`` of a source checkout, else ``~/.cache/bundlenet`` (an installed package)."""
    if os.environ.get("BUNDLENET_DATA"):
        return Path(os.environ["BUNDLENET_DATA"]).expanduser().resolve()
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "data").is_dir():
        return _CHECKOUT / "data"
    return Path.home() / ".cache" / "bundlenet"


AIRFOIL_COLUMNS = (
    "frequency",
    "angle_of_attack",
    "chord_length",
    "free_stream_velocity",
    "displacement_thickness",
    "sound_pressure",
)


@dataclass(frozen=True)
class UciFile:
    """A UCI file: its name, its path below the repository URL, and its expected shape."""

    name: str
    url_path: str
    rows: int
    columns: int
    sep: str
    header: bool

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.url_path}"


WINE_RED = UciFile("winequality-red.csv", "wine-quality/winequality-red.csv", 1599, 12, ";", True)
WINE_WHITE = UciFile("winequality-white.csv", "wine-quality/winequality-white.csv", 4898, 12, ";", True)
AIRFOIL = UciFile("airfoil_self_noise.dat", "00291/airfoil_self_noise.dat", 1503, 6, "\t", False)


def resolve_root(root: str | Path | None) -> Path:
    """The data folder: ``None`` → ``data/`` of the repository; ``~`` expanded; made absolute."""
    return default_data_root() if root is None else Path(root).expanduser().resolve()


def parse_uci(spec: UciFile, path: Path, url: str) -> pd.DataFrame:
    """Parse a UCI file and check its shape and that every value is a number.

    Raises:
        InputError: unreadable file, wrong row/column count, or a non-numeric value; the
            message says to delete the file so that a fresh copy is downloaded from ``url``.
    """
    fix = f"delete {path} to download a fresh copy from {url}"
    try:
        frame = pd.read_csv(path, sep=spec.sep, header=0 if spec.header else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{spec.name} is not a valid {spec.name} file ({first}); {fix}") from None
    if frame.shape != (spec.rows, spec.columns):
        raise InputError(
            f"{spec.name} has {frame.shape[0]} rows × {frame.shape[1]} columns after parsing, expected "
            f"{spec.rows} × {spec.columns}; {fix}"
        )
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().to_numpy().nonzero()
    if bad[0].size:
        row, col = int(bad[0][0]), int(bad[1][0])
        raise InputError(
            f"{spec.name} has a non-numeric value {frame.iat[row, col]!r} in column {frame.columns[col]!r} "
            f"(data row {row + 1}); {fix}"
        )
    return numeric.astype("float64")


def read_uci(
    spec: UciFile,
    root: str | Path | None = None,
    download: bool = True,
    base_url: str = UCI_BASE_URL,
    opener: Opener | None = None,
) -> pd.DataFrame:
    """The parsed table of ``spec`` from ``root``, downloaded (and checked) first when missing."""
    folder = resolve_root(root)
    url = spec.url(base_url)
    path = ensure_file(folder, spec.name, url, download=download, validate=lambda tmp: parse_uci(spec, tmp, url), opener=opener)
    return parse_uci(spec, path, url)


def wine(
    root: str | Path | None = None,
    download: bool = True,
    base_url: str = UCI_BASE_URL,
    opener: Opener | None = None,
    **options: Any,
) -> TabularBundle:
    """Wine quality as a bundle: 11 physicochemical columns over (quality, colour 0 red / 1 white).

    ``options`` go to :class:`TabularBundle` (defaults: min-max to [0, 10], 80/20 split,
    exact fibers with at least 3 rows).
    """
    red = read_uci(WINE_RED, root, download, base_url, opener)
    white = read_uci(WINE_WHITE, root, download, base_url, opener)
    if list(red.columns) != list(white.columns) or red.columns[-1] != "quality":
        raise InputError(
            f"the wine files' headers differ or do not end in 'quality' ({list(red.columns)} vs "
            f"{list(white.columns)}); delete them from {resolve_root(root)} to download fresh copies"
        )
    table = pd.concat([red.assign(colour=0.0), white.assign(colour=1.0)], ignore_index=True)
    total_names = [str(c) for c in red.columns[:-1]]
    options = {"fibers": "exact", **options}
    return TabularBundle.from_frame(table, total_names, ["quality", "colour"], **options)


def airfoil(
    root: str | Path | None = None,
    download: bool = True,
    base_url: str = UCI_BASE_URL,
    opener: Opener | None = None,
    **options: Any,
) -> TabularBundle:
    """Airfoil self-noise as a bundle: 5 flow/geometry columns over the sound pressure.

    ``options`` go to :class:`TabularBundle` (defaults: min-max to [0, 10], 80/20 split, fibers
    = the 15 nearest rows in base space).
    """
    table = read_uci(AIRFOIL, root, download, base_url, opener)
    table.columns = list(AIRFOIL_COLUMNS)
    options = {"fibers": "nearest", "fiber_neighbours": 15, **options}
    return TabularBundle.from_frame(table, AIRFOIL_COLUMNS[:-1], AIRFOIL_COLUMNS[-1:], **options)
