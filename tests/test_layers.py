"""The package's layers: lower layers never import higher ones (every import, also inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bundlenet"

# lowest first; a module may import modules of its own top-level name and of lower layers only
LAYERS: dict[str, int] = {
    "errors": 0,
    "geometry": 1,
    "io": 1,
    "optim": 1,
    "configs": 1,
    "forward": 1,
    "ranks": 1,
    "provenance": 2,
    "bundles": 2,
    "nn": 3,
    "data": 3,
    "models": 4,
    "evaluation": 5,
    "checkpoint": 5,
    "callbacks": 5,
    "loggers": 5,
    "selection": 6,
    "training": 7,
    "cli": 8,
    "api": 8,
    # python -m entry points
    "benchmark": 9,
    "evaluate": 9,
    "report": 9,
    "sample": 9,
}


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``bundlenet.*`` import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bundlenet":  # the package root: __version__ and the re-exports
                continue
            if node.module.startswith("bundlenet."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("bundlenet.")]
    return found


def top(module: str) -> str:
    return module.split(".")[1]


def test_every_top_level_module_has_a_layer() -> None:
    names = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert names - set(LAYERS) == set(), "give each new module of bundlenet/ a layer in tests/test_layers.py"


@pytest.mark.parametrize(
    "path",
    sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem != "__init__"),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_imports_go_down_the_layers(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    wrong = [
        f"{path.name}:{line} imports {module}"
        for line, module in imports(path)
        if top(module) != own and LAYERS.get(top(module), 99) >= LAYERS[own]
    ]
    assert not wrong, f"{own} (layer {LAYERS[own]}) may only import lower layers: {wrong}"


def test_importing_a_bundle_loads_neither_the_evaluation_nor_pot() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bundlenet.bundles, bundlenet.models.bundlenet; "
        "print(sorted(m for m in sys.modules if m == 'ot' or m.startswith('bundlenet.evaluation')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
