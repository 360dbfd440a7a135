"""Synthetic cohorts written in real Space Ranger layout, with their ground truth.

Importing this package is cheap: :func:`write_synthetic_cohort` loads its modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["write_synthetic_cohort"]

if TYPE_CHECKING:
    from tmescope.datasets.synthetic import write_synthetic_cohort


def __getattr__(name: str) -> Any:
    if name == "write_synthetic_cohort":
        from tmescope.datasets.synthetic import write_synthetic_cohort

        return write_synthetic_cohort
    raise AttributeError(f"module 'tmescope.datasets' has no attribute {name!r}")
