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
        (write_table, {"base_columns": ["quality"]},
         "data.base_columns: column 'quality' is not in the header of {path}; the columns are ['temp', 'pressure', 'label', 'yield']"),
        (write_table, {"total_columns": ["temp", "yield"]},
         "column 'yield' is both a base and a total column; remove it from data.total_columns or data.base_columns"),
        (write_table, {"total_columns": ["temp", "label"]}, "column 'label' of {path} is not numeric (line 2: 'batch0')"),
        (lambda p: write_table(p, extra={4: "303,oops,batch0,1"}), {},
         "column 'pressure' of {path} is not numeric (line 5: 'oops')"),
        (lambda p: write_table(p, extra={3: "302,,batch2,2", 9: "1,2,batch0,"}), {},
         "2 row(s) of {path} have missing values in the chosen columns (lines [4, 10], first in ['pressure']); fill them in or set data.nan_policy=drop"),
        (lambda p: p.write_text("x,y\n" + "".join(f"{i},5\n" for i in range(10))) or p, {"base_columns": ["y"]},
         "column 'y' is constant (every row is 5), so minmax10 scaling would divide by zero"),
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
