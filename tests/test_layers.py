"""Imports flow one way: cli → workflows → jobs → rooms → io.

A room (io, datasets, embed, store, fusion, analysis, viz) that imported a job, the workflows,
the CLI or the package's public face would tie pure compute to orchestration. Imports made only
for type checking (under ``if TYPE_CHECKING:``) run nothing, so the rules between rooms allow
them; a room may not name a job even there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tmescope"
ROOMS = ("io", "datasets", "embed", "store", "fusion", "analysis", "viz")
# What everyone may import: the errors, the version, the thread budget (every layer sizes
# its thread pools from the cores the process may use: the CLI, the jobs, embedding's readers)
# and the time left of a long loop (jobs word their progress with it, the CLI prints it).
SHARED = {"tmescope.errors", "tmescope._version", "tmescope.cpus", "tmescope.progress"}
# The modules of the package's top level, besides the rooms.
TOP = {"__init__.py", "__main__.py", "errors.py", "_version.py", "cpus.py", "progress.py",
       "workflows.py"}  # fmt: skip


def _imports(path: Path, *, typing_too: bool = False) -> list[str]:
    """The ``tmescope`` modules ``path`` imports (at run time, or also for type checking)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(inner) for inner in ast.walk(node))
    names = []
    for node in ast.walk(tree):
        if id(node) in typing_only and not typing_too:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "tmescope":  # `from tmescope import x` may name a submodule
                names.extend(f"tmescope.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n == "tmescope" or n.startswith("tmescope.")]


def _top_level(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _where(path: Path, module: str) -> str:
    return f"{path.relative_to(PACKAGE)} imports {module}"


def test_the_top_level_holds_only_the_public_face() -> None:
    """Jobs live in jobs/, one module per command: nothing else lies beside the rooms."""
    loose = {p.name for p in PACKAGE.glob("*.py")} - TOP
    assert loose == set()
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == {*ROOMS, "jobs", "cli"}


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_imports_only_rooms(room: str) -> None:
    """No job, workflow, CLI or package ``__init__`` at run time; no job even for typing."""
    rooms = {f"tmescope.{r}" for r in ROOMS}
    wrong = [
        _where(path, module)
        for path in _modules(room)
        for module in _imports(path)
        if module not in SHARED and _top_level(module) not in rooms
    ]
    wrong += [
        _where(path, module)
        for path in _modules(room)
        for module in _imports(path, typing_too=True)
        if _top_level(module) in {"tmescope.jobs", "tmescope.workflows", "tmescope.cli"}
    ]
    assert wrong == []


def test_io_imports_no_other_room() -> None:
    wrong = [
        _where(path, module)
        for path in _modules("io")
        for module in _imports(path)
        if module not in SHARED and _top_level(module) != "tmescope.io"
    ]
    assert wrong == []


@pytest.mark.parametrize("room", ["io", "store"])
def test_io_and_store_never_import_torch(room: str) -> None:
    wrong = []
    for path in _modules(room):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            wrong += [_where(path, n) for n in names if n.split(".")[0] == "torch"]
    assert wrong == []


def test_the_web_app_asks_the_job_layer_for_predictions() -> None:
    """``viz/app`` runs no model: predictions and targets come from ``jobs.serve``."""
    wrong = [
        _where(path, module)
        for path in _modules("viz/app")
        for module in _imports(path)
        if _top_level(module) == "tmescope.fusion"
    ]
    assert wrong == []


def test_jobs_import_neither_the_workflows_nor_the_cli() -> None:
    wrong = [
        _where(path, module)
        for path in _modules("jobs")
        for module in _imports(path, typing_too=True)
        if _top_level(module) in {"tmescope.workflows", "tmescope.cli", "tmescope"}
        and module not in SHARED
    ]
    assert wrong == []


def test_the_cli_goes_through_the_workflows() -> None:
    """The CLI parses and prints; everything it runs is a Python twin in ``workflows``."""
    allowed = {"tmescope.cli", "tmescope.workflows", *SHARED}
    wrong = [
        _where(path, module)
        for path in _modules("cli")
        for module in _imports(path, typing_too=True)
        if module not in allowed and _top_level(module) not in allowed
    ]
    assert wrong == []


def test_the_workflows_import_no_job_until_asked() -> None:
    """Every public name resolves, and importing the module loads no job (nor torch)."""
    import subprocess
    import sys

    code = (
        "import sys, tmescope.workflows as w\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('tmescope.jobs.') or m == 'torch')\n"
        "assert not loaded, loaded\n"
        "missing = [n for n in w.__all__ if getattr(w, n, None) is None]\n"
        "assert not missing, missing\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
