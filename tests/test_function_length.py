"""No function of the package is longer than 50 lines (docstring included): a longer one is split
into well-named pieces."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bundlenet"
MAX_LINES = 50


def function_lengths(path: Path) -> dict[str, int]:
    """``{"file::Class.function": lines}`` of every function (nested ones too) in a file."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[f"{path.relative_to(PACKAGE)}::{prefix}{child.name}"] = child.end_lineno - child.lineno + 1  # type: ignore[operator]
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), str(path)), "")
    return found


def all_lengths() -> dict[str, int]:
    return {k: v for p in sorted(PACKAGE.rglob("*.py")) for k, v in function_lengths(p).items()}


def test_no_function_is_longer_than_50_lines() -> None:
    lengths = all_lengths()
    assert lengths, "no functions found"
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not long, (
        f"functions over {MAX_LINES} lines (docstring included; split each into well-named pieces, one concept each): {long}"
    )
