"""Any CSV as a bundle: delimiter, default columns, and every bad input as one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bundlenet.data.csv_table import csv_bundle, sniff_delimiter
from bundlenet.data.tables import csv_data
from bundlenet.errors import InputError


def write_table(path: Path, sep: str = ",", rows: int = 60, extra: dict[int, str] | None = None) -> Path:
    lines = [sep.join(["temp", "pressure", "label", "yield"])]
    for i in range(rows):
        lines.append(sep.join([f"{300 + i % 7}", f"{1.5 + 0.01 * i:.3f}", f"batch{i % 3}", f"{i % 4}"]))
    for line, text in (extra or {}).items():
        lines[line] = text
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_detected_and_text_columns_are_skipped_by_default(tmp_path: Path, sep: str) -> None:
    path = write_table(tmp_path / "t.csv", sep)
    assert sniff_delimiter(path.read_text()) == sep
    bundle = csv_bundle(path, ["yield"])
    assert bundle.base_names == ("yield",) and bundle.total_names == ("temp", "pressure")
    assert bundle.fiber_rule == "exact"  # 4 distinct yields
    assert float(bundle.total[:, 0].min()) == 300  # original units kept


def test_explicit_total_columns_scaling_and_nan_drop(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", extra={3: "302,,batch2,2", 5: "304,1.54,batch1,"})
    bundle = csv_bundle(path, "yield", total_columns=["pressure"], nan_policy="drop", scaling="standard")
    assert bundle.num_rows == 58 and bundle.total_names == ("pressure",)
    assert abs(float(bundle.scaled_total.mean())) < 1e-5


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (lambda p: p, {}, "data.path {path} does not exist; give the table"),
        (lambda p: p.write_text("") or p, {}, "data.path {path} is empty; it needs a header row"),
        (lambda p: p.write_text("a,b\n") or p, {"base_columns": ["a"]}, "has a header but no data rows"),
        (
            write_table,
            {"base_columns": ["quality"]},
            "data.base_columns: column 'quality' is not in the header of {path}; the columns are ['temp', 'pressure', 'label', 'yield']",
        ),
        (
            write_table,
            {"total_columns": ["temp", "yield"]},
            "column 'yield' is both a base and a total column; remove it from data.total_columns or data.base_columns",
        ),
        (write_table, {"total_columns": ["temp", "label"]}, "column 'label' of {path} is not numeric (line 2: 'batch0')"),
        (
            lambda p: write_table(p, extra={4: "303,oops,batch0,1"}),
            {},
            "column 'pressure' of {path} is not numeric (line 5: 'oops')",
        ),
        (
            lambda p: write_table(p, extra={3: "302,,batch2,2", 9: "1,2,batch0,"}),
            {},
            "2 row(s) of {path} have missing values in the chosen columns (lines [4, 10], first in ['pressure']); fill them in or set data.nan_policy=drop",
        ),
        (
            lambda p: p.write_text("x,y\n" + "".join(f"{i},5\n" for i in range(10))) or p,
            {"base_columns": ["y"]},
            "column 'y' is constant (every row is 5), so minmax10 scaling would divide by zero",
        ),
        (write_table, {"scaling": "log"}, "data.scaling must be one of minmax10, minmax10_shared, standard, none"),
        (write_table, {"nan_policy": "fill"}, "data.nan_policy must be error or drop"),
    ],
)
def test_bad_tables_are_one_clear_line(tmp_path: Path, make, kwargs: dict, message: str) -> None:
    path = tmp_path / "t.csv"
    make(path)
    options = {"base_columns": ["yield"], **kwargs}
    with pytest.raises(InputError) as err:
        csv_bundle(path, **options)
    text = str(err.value)
    assert message.format(path=path) in text and "\n" not in text, text
    assert [p.name for p in tmp_path.iterdir()] in ([], ["t.csv"])  # nothing written


def test_datamodule_uses_the_training_split_in_scaled_units(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", rows=100)
    dm = csv_data(path, ["yield"], num_val_fibers=3, val_fiber_points=20, seed=0, split_seed=0)
    dm.setup("fit")
    total, _ = dm.train_tensors()
    assert total.shape == (80, 2) and float(total.min()) >= 0 and float(total.max()) <= 10
    assert torch.equal(total, dm.bundle.scaled_total[dm.bundle.train_index])
    _, fibers, floor = dm.val[:3]
    assert fibers.shape == (3, 20, 2) and floor.shape == (3,)
    assert dm.spec.total_offset is not None and dm.spec.total_names == ("temp", "pressure")
    sub = csv_data(path, ["yield"], num_train=30)
    sub.setup("fit")
    assert sub.train_tensors()[0].shape == (30, 2)
    with pytest.raises(InputError, match="data.num_train=500 must be between 2 and the 80 rows"):
        csv_data(path, ["yield"], num_train=500)


def _uniform_rows(n: int = 200) -> list[str]:
    gen = torch.Generator().manual_seed(0)
    return [",".join(f"{v:.4f}" for v in row) for row in (torch.rand(n, 4, generator=gen) * 2 - 1).tolist()]


def _with(rows: list[str], line: int, text: str) -> list[str]:
    rows = list(rows)
    rows[line - 2] = text  # line 1 is the header
    return rows


@pytest.mark.parametrize(
    ("header", "line", "cell", "message"),
    [
        ("x1,x2,x3,y", 52, "1e30,0.1,0.2,0.3", "column 'x1' of {path} has the extreme value 1e+30 on line 52"),
        ("x1,x2,x3,y", 9, "0.1,-2e12,0.2,0.3", "column 'x2' of {path} has the extreme value -2e+12 on line 9"),
        ("x1,x2,x3,y", 52, "inf,0.1,0.2,0.3", "column 'x1' of {path} has the value inf on line 52 (infinite)"),
        ("x1,x2,x3,y", 7, "0.1,0.1,-1e400,0.3", "column 'x3' of {path} has the value -inf on line 7 (infinite)"),
        ("x1,x1,x3,y", 2, None, "the header names column 'x1' twice (columns 1 and 2)"),
    ],
)
def test_extreme_infinite_cells_and_repeated_names_are_named(
    tmp_path: Path, header: str, line: int, cell: str | None, message: str
) -> None:
    rows = _uniform_rows() if cell is None else _with(_uniform_rows(), line, cell)
    path = tmp_path / "t.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(InputError) as err:
        csv_bundle(path, ["y"], scaling="standard")
    text = str(err.value)
    assert message.format(path=path) in text and "\n" not in text, text
    if "extreme" in message:
        assert "data.extreme_values=keep" in text
        kept = csv_bundle(path, ["y"], extreme_values="keep")
        assert kept.num_rows == 200


def test_real_tables_have_no_extreme_cells() -> None:
    """The UCI tables (heavy-tailed columns such as wine's chlorides) pass the extreme-cell check."""
    import pandas as pd

    from bundlenet.data.csv_table import check_extremes
    from tests.conftest import SHARED_DATA

    files = sorted((SHARED_DATA / "uci").glob("*")) if (SHARED_DATA / "uci").is_dir() else []
    if not files:
        pytest.skip("the UCI files are not available")
    for f in files:
        frame = pd.read_csv(f, sep=None, engine="python", header=None if f.suffix == ".dat" else 0)
        check_extremes(frame.apply(pd.to_numeric, errors="coerce").dropna(axis=1).astype(float), "error", str(f))


@pytest.mark.parametrize("variant", ["gzip", "latin-1", "bom", "decimal-comma"])
def test_compressed_latin1_bom_and_decimal_comma_files_are_read(tmp_path: Path, variant: str) -> None:
    import gzip

    rows = _uniform_rows(60)
    header = "température,x2,x3,y" if variant == "latin-1" else "x1,x2,x3,y"
    text = "\n".join([header, *rows]) + "\n"
    path = tmp_path / "t.csv"
    if variant == "gzip":
        path.write_bytes(gzip.compress(text.encode()))
    elif variant == "latin-1":
        path.write_bytes(text.encode("latin-1"))
    elif variant == "bom":
        path.write_bytes(text.encode("utf-8-sig"))
    else:
        path.write_text(text.replace(",", ";").replace(".", ","))
    bundle = csv_bundle(path, ["y"])
    assert bundle.total_names == (header.split(",")[0], "x2", "x3") and bundle.num_rows == 60
    first = [float(v) for v in rows[0].split(",")]
    torch.testing.assert_close(bundle.total[0].double(), torch.tensor(first[:3], dtype=torch.float64), rtol=0, atol=1e-6)


def test_folders_binary_and_unreadable_files_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match=f"data.path {tmp_path} is a folder, not a table"):
        csv_bundle(tmp_path, ["y"])
    binary = tmp_path / "t.xlsx"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(InputError, match="is a binary file, not a delimited text table"):
        csv_bundle(binary, ["y"])
    locked = tmp_path / "locked.csv"
    locked.write_text("x,y\n1,2\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(InputError, match=rf"cannot read data.path {locked} \(Permission denied\); fix its permissions"):
        csv_bundle(locked, ["y"])
