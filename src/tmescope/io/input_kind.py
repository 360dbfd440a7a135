"""Which reader a measured sample's path needs: a Space Ranger folder, an AnnData of spots
(``.h5ad``), a HEST-1k folder (``st/``, ``wsis/``, ``metadata/``) or a SpatialData zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

InputKind = Literal["spaceranger", "anndata", "hest", "spatialdata"]
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zattrs")
_SPATIALDATA_GROUPS = ("images", "tables", "shapes", "points", "labels")


def is_spatialdata_folder(path: Path) -> bool:
    """A zarr group holding at least one of SpatialData's element groups (nothing is opened)."""
    return (
        path.is_dir()
        and any((path / marker).exists() for marker in _ZARR_MARKERS)
        and any((path / group).is_dir() for group in _SPATIALDATA_GROUPS)
    )


def input_kind(path: Path | str) -> InputKind:
    """The kind of ``path`` (a Space Ranger folder when it is none of the others: its reader
    says what is missing)."""
    path = Path(path)
    if path.suffix.lower() == ".h5ad":
        return "anndata"
    if path.is_dir() and (path / "st").is_dir() and (path / "wsis").is_dir():
        return "hest"
    if is_spatialdata_folder(path):
        return "spatialdata"
    return "spaceranger"
