"""The benchmark runs and writes its table and JSON (its figures are reported, not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundlenet.benchmark import main


def test_benchmark_writes_rows_with_machine_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    main(["--rows", "sampling", "--output", str(out)])
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["global_4000_s"] > 0 and row["fibers_15x200_s"] > 0
    assert row["peak_rss_mb"] > 0 and row["threads"] == 1 and "load_1min" in row
    assert "| sampling |" in capsys.readouterr().out
