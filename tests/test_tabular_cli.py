"""train.py and the sample CLI on a CSV: the file's column names, original units, one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.test_checkpoint import run_sample
from tests.test_configs import run_train

SMALL_MODEL = [
    "model.num_nbhds=4",
    "model.num_blocks=2",
    "model.hidden_features=32",
    "model.depth=1",
    "evaluation.iterations=1",
    "evaluation.num_fibers=3",
    "evaluation.num_points=50",
    "evaluation.num_global=200",
    "evaluation.plot_fibers=2",
    "~callbacks.progress_bar",
]


def lab_table(path: Path, rows: int = 300) -> Path:
    """Columns in units far from [0, 10]: temperature in K, pressure in Pa; yield depends on both."""
    gen = np.random.default_rng(0)
    temp = gen.uniform(290, 350, rows)
    pressure = gen.uniform(9.0e4, 1.1e5, rows)
    grade = np.clip(np.round((temp - 290) / 15 + (pressure - 9.0e4) / 1e4), 0, 5)
    with path.open("w") as f:
        f.write("sample;temperature K;pressure Pa;grade\n")
        f.writelines(f"s{i};{t:.2f};{p:.0f};{g:.0f}\n" for i, (t, p, g) in enumerate(zip(temp, pressure, grade)))
    return path


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("csvrun")
    table = lab_table(root / "lab.csv")
    run = root / "run"
    proc = run_train(
        "data=csv",
        f"data.path={table}",
        "data.base_columns=[grade]",
        "trainer.max_epochs=60",
        "trainer.check_val_every_n_epoch=60",
        *SMALL_MODEL,
        f"hydra.run.dir={run}",
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, table


def test_train_on_csv_writes_outputs_and_samples_use_the_files_names_and_units(csv_run: tuple[Path, Path]) -> None:
    run, _ = csv_run
    for name in ("checkpoints/last.ckpt", "metrics.json", "fibers.png"):
        assert (run / name).exists(), name
    out = run.parent / "fibers.csv"
    proc = run_sample(
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "base_points=[[2]]", "num_samples=100", f"output={out}", cwd=run.parent
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["grade", "temperature K", "pressure Pa"]
    values = np.array(rows[1:], dtype=float)
    assert values.shape == (100, 3) and (values[:, 0] == 2).all()
    assert 250 < np.median(values[:, 1]) < 390 and 7e4 < np.median(values[:, 2]) < 1.3e5  # kelvin and pascal
    scaled = run.parent / "scaled.csv"
    proc = run_sample(
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "base_points=[[4]]",
        "units=scaled",
        "num_samples=100",
        f"output={scaled}",
        cwd=run.parent,
    )  # scaled grade 4 = original 2
    assert proc.returncode == 0, proc.stderr
    s = np.array(list(csv.reader(scaled.open()))[1:], dtype=float)
    assert -5 < np.median(s[:, 1]) < 15 and -5 < np.median(s[:, 2]) < 15


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["base_points=[[2,1]]"], "base points must have dimension 1 (grade), got dimension 2"),
        (["base_points=[[nan]]"], "base point 0 contains NaN"),
    ],
)
def test_sample_cli_rejects_bad_base_points_for_a_table(
    csv_run: tuple[Path, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    run, _ = csv_run
    out = tmp_path / "f.csv"
    proc = run_sample(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *args, f"output={out}", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("table_rows", "args", "message"),
    [
        (None, ["data.base_columns=[grade]"], "data.path {table} does not exist"),
        (300, ["data.base_columns=[quality]"], "data.base_columns: column 'quality' is not in the header"),
        (12, ["data.base_columns=[grade]", "model.num_nbhds=20"], "model.num_nbhds=20 exceeds the"),
    ],
)
def test_train_on_bad_csv_is_one_line_and_writes_nothing(
    tmp_path: Path, table_rows: int | None, args: list[str], message: str
) -> None:
    table = tmp_path / "lab.csv"
    if table_rows is not None:
        lab_table(table, table_rows)
    run = tmp_path / "run"
    proc = run_train("data=csv", f"data.path={table}", *args, f"hydra.run.dir={run}", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error:") and message.format(table=table) in lines[-1], proc.stderr[
        -2000:
    ]
    hydras_own = {".hydra", "train.log"}  # Hydra writes its config copy and job log before the task starts
    written = (
        [p.relative_to(run) for p in run.rglob("*") if p.is_file() and not hydras_own & set(p.parts)] if run.exists() else []
    )
    assert written == [], written
