"""The worked example of docs/python.md runs as written (with a short training)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

PAGE = REPO / "docs" / "python.md"
FAST = {"max_steps": 40, "logger": "none", "evaluate": False, "verbose": False}


def example_blocks() -> list[str]:
    """The page's Python blocks before its reference sections (those show signatures)."""
    example = PAGE.read_text().split("\n## `bundlenet.fit`", 1)[0]
    return re.findall(r"```python\n(.*?)```", example, flags=re.S)


def test_the_worked_example_is_short() -> None:
    first = [line for line in example_blocks()[0].splitlines() if line.strip()]
    assert first[0].startswith("import") and first[-1].startswith("refined = ") and len(first) <= 15


def test_the_worked_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bundlenet

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bundlenet, "fit", functools.partial(bundlenet.fit, **FAST))
    namespace: dict[str, object] = {}
    for block in example_blocks():
        exec(compile(block, str(PAGE), "exec"), namespace)  # the page's own code
    refined, with_cement, band = (namespace[k] for k in ("refined", "with_cement", "band"))
    assert isinstance(refined, pd.DataFrame) and list(refined.columns) == ["strength", "cement", "water", "age"]
    assert namespace["resimulation_error"](refined) < 1e-4  # type: ignore[operator]
    assert (with_cement["cement"] == 300).all() and len(band) == 500 and band["strength"].between(38, 42).all()
    assert (tmp_path / "concrete" / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "fiber.png").is_file()
