"""tmescope: the tumour microenvironment of Visium cohorts through pathology foundation models.

Importing the package is cheap: public names load their module on first use, and nothing here
imports torch or faiss.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tmescope._version import __version__

_LAZY = {
    "read_visium": "tmescope.io",
    "open_slide": "tmescope.io",
    "Sample": "tmescope.io",
    "write_synthetic_cohort": "tmescope.datasets",
    "TmescopeError": "tmescope.errors",
    "describe_sample": "tmescope.workflows",
    "synthesize_cohort": "tmescope.workflows",
    "run_demo": "tmescope.workflows",
}

__all__ = [
    "Sample",
    "TmescopeError",
    "__version__",
    "describe_sample",
    "open_slide",
    "read_visium",
    "run_demo",
    "synthesize_cohort",
    "write_synthetic_cohort",
]

if TYPE_CHECKING:
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.errors import TmescopeError
    from tmescope.io import Sample, open_slide, read_visium
    from tmescope.workflows import describe_sample, run_demo, synthesize_cohort


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tmescope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
