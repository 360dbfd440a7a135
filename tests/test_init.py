"""The public API is lazy and honest: cheap to import, every advertised name resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tmescope


@pytest.mark.parametrize("name", tmescope.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(tmescope, name) is not None


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tmescope.nope  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", ["tmescope", "tmescope.cli.main", "tmescope.io"])
def test_import_loads_no_heavy_dependency(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "heavy = [m for m in ('torch', 'faiss', 'timm', 'transformers', 'torch_geometric') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_lists_exactly_the_lazy_names() -> None:
    assert set(tmescope.__all__) == {"__version__", *tmescope._LAZY}
