"""Imports flow one way: cli → workflows (and the *_job modules) → rooms → io.

A room (io, datasets, embed, store, fusion, analysis, viz) that imported a workflow module or
the CLI would tie pure compute to orchestration. Imports made only for type checking (under
``if TYPE_CHECKING:``) are allowed: they run nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tmescope"
ROOMS = ("io", "datasets", "embed", "store", "fusion", "analysis", "viz")
# Modules at the package's top level are the workflows' side; `errors` is everyone's.
SHARED = {"tmescope", "tmescope.errors"}


def _runtime_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(inner) for inner in ast.walk(node))
    names = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n == "tmescope" or n.startswith("tmescope.")]


def _top_level(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_imports_no_workflow_and_no_cli(room: str) -> None:
    rooms = {f"tmescope.{r}" for r in ROOMS}
    wrong = []
    for path in sorted((PACKAGE / room).rglob("*.py")):
        for module in _runtime_imports(path):
            top = _top_level(module)
            if top not in rooms and top not in SHARED:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert wrong == []


def test_io_imports_no_other_room() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in sorted((PACKAGE / "io").rglob("*.py"))
        for module in _runtime_imports(path)
        if _top_level(module) not in {"tmescope.io", *SHARED}
    ]
    assert wrong == []
