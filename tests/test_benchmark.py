"""The benchmark runs and writes its table and JSON (its figures are reported, not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundlenet.cli.benchmark import main


def test_benchmark_writes_rows_with_machine_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    main(["--rows", "sampling", "--output", str(out)])
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["global_4000_s"] > 0 and row["fibers_15x200_s"] > 0
    assert row["peak_rss_mb"] > 0 and row["threads"] == 1 and "load_1min" in row
    assert "| sampling |" in capsys.readouterr().out


def test_training_row_times_mixed_precision_steps() -> None:
    from bundlenet.cli.benchmark import row_training

    row = row_training("bf16", num_train=300, timed_steps=2, precision="bf16-mixed")
    assert row["precision"] == "bf16-mixed" and row["s_per_step"] > 0 and row["steps_per_epoch"] == 1


def test_unknown_row_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--rows", "nope"])
    assert "train_authors" in capsys.readouterr().err


@pytest.mark.slow
def test_wine_job_runs_train_py_at_the_authors_size() -> None:
    from bundlenet.cli.benchmark import Options, row_paper_job
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "uci" / "winequality-red.csv").exists():
        pytest.skip("needs ../shared/data/uci")
    row = row_paper_job("paper_wine", Options(data_root=str(SHARED_DATA / "uci"), epochs=1))
    assert "skipped" not in row, row
    assert row["steps"] == 10 and row["train_s"] > 0 and row["precision"] == "32-true"


def test_job_without_its_data_is_skipped_with_the_reason(tmp_path: Path) -> None:
    from bundlenet.cli.benchmark import Options, row_paper_job

    options = Options(data_root=str(tmp_path / "missing"), epochs=1, job_overrides=("data.download=false",))
    row = row_paper_job("paper_wine", options)
    assert "winequality" in row["skipped"]
