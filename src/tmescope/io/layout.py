"""Find the files of one Space Ranger run, whichever folder of it the user points at.

Accepted: an ``outs/`` folder, its parent, a folder holding ``spatial/`` and the matrix directly
(as published copies often are), or a Visium HD ``outs/`` with ``binned_outputs/square_NNNum/``.
A Visium HD bin size Space Ranger did not write (a multiple of 2 µm) is laid out as the 2 µm
bin folder to sum from (``summed_from``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from tmescope.errors import InputNotFoundError, SpaceRangerLayoutError
from tmescope.io._keys import HD_FINEST_BIN_UM, MtxFiles
from tmescope.io._keys import VisiumFiles as F

DEFAULT_HD_BIN_UM = 8  # 10x's recommended bin size for analysis
_BIN_DIR = re.compile(r"^square_(\d{3})um$")


@dataclass(frozen=True)
class SpaceRangerLayout:
    """Where the files of one sample lie; ``None`` for files the run does not have."""

    root: Path  # the outs/ folder (or the folder standing in for it)
    platform: str  # "visium" | "visium_hd"
    positions: Path
    scalefactors: Path | None
    h5: Path | None
    mtx_dir: Path | None
    hires_image: Path | None
    lowres_image: Path | None
    bin_size_um: int | None = None
    # The 2 µm bin folder whose bins are summed into ``bin_size_um`` bins (a size Space Ranger
    # did not write); the files above are then that folder's. None: they hold the bins as read.
    summed_from: Path | None = None

    @property
    def sample_id(self) -> str:
        """The run's name: the folder above ``outs/``, else the folder itself."""
        return self.root.parent.name if self.root.name == F.OUTS else self.root.name


def locate_spaceranger_files(
    path: Path | str, *, bin_size_um: float | None = None
) -> SpaceRangerLayout:
    """Locate positions, scalefactors, matrix and images under ``path`` (a Visium HD run's at
    ``bin_size_um``, whole µm: ``16.0`` is ``16``)."""
    # Absolute, so that "." or "outs" still name the run and a bin folder is recognised.
    path = Path(os.path.abspath(Path(path).expanduser()))
    if not path.exists():
        raise InputNotFoundError(
            f"sample folder {path} does not exist; expected a Space Ranger outs/ folder or its parent"
        )
    if not path.is_dir():
        raise SpaceRangerLayoutError(
            f"{path} is a file; expected a Space Ranger outs/ folder (holding spatial/ and the matrix)"
        )
    requested = _whole_um(bin_size_um)
    bin_match = _BIN_DIR.match(path.name)
    if bin_match and path.parent.name == F.BINNED_OUTPUTS:  # pointed straight at one HD bin
        size = int(bin_match.group(1))
        if requested is not None and requested != size:
            raise SpaceRangerLayoutError(
                f"{path} holds {size} µm bins but {requested} µm bins were asked for; point at "
                "the outs/ folder to choose a bin size, or drop --bin-size"
            )
        return _hd_layout(path.parent.parent, path, size)
    for root in (path, path / F.OUTS):
        if (root / F.BINNED_OUTPUTS).is_dir():
            return _hd_bin_layout(root, requested)
        if (root / F.SPATIAL).is_dir():
            if requested is not None:
                raise SpaceRangerLayoutError(
                    f"{root} is a standard Visium run (no binned_outputs/), so a bin size of "
                    f"{requested} µm does not apply; drop --bin-size"
                )
            return _visium_layout(root)
    raise SpaceRangerLayoutError(
        f"{path} holds no spatial/ folder (nor outs/spatial/ or binned_outputs/); expected a Space "
        "Ranger outs/ folder, its parent, or a folder with spatial/ and the count matrix"
    )


def _whole_um(size: float | None) -> int | None:
    """A requested bin size as whole µm (a stored or typed ``16.0`` names ``square_016um``)."""
    if size is None:
        return None
    if not (math.isfinite(size) and float(size).is_integer()):
        raise SpaceRangerLayoutError(
            f"no {size:g} µm bins: Visium HD bins are whole multiples of {HD_FINEST_BIN_UM} µm "
            f"(2, 8, 16 as Space Ranger writes them, others summed from {HD_FINEST_BIN_UM} µm "
            "bins); pass one to --bin-size"
        )
    return int(size)


def _visium_layout(root: Path) -> SpaceRangerLayout:
    spatial = root / F.SPATIAL
    h5, mtx = _find_matrix(root)
    return SpaceRangerLayout(
        root=root,
        platform="visium",
        positions=_find_positions(spatial),
        scalefactors=_optional(spatial / F.SCALEFACTORS),
        h5=h5,
        mtx_dir=mtx,
        hires_image=_optional(spatial / F.HIRES_IMAGE),
        lowres_image=_optional(spatial / F.LOWRES_IMAGE),
    )


def _hd_layout(root: Path, bin_dir: Path, size: int) -> SpaceRangerLayout:
    spatial = bin_dir / F.SPATIAL
    if not spatial.is_dir():
        raise SpaceRangerLayoutError(f"Visium HD bin folder {bin_dir} has no spatial/ folder")
    h5, mtx = _find_matrix(bin_dir)
    # Images sit in each bin's spatial/ folder and in outs/spatial/; take the bin's first.
    images = [spatial, root / F.SPATIAL]
    return SpaceRangerLayout(
        root=root,
        platform="visium_hd",
        positions=_find_positions(spatial),
        scalefactors=_optional(spatial / F.SCALEFACTORS),
        h5=h5,
        mtx_dir=mtx,
        hires_image=next(
            (d / F.HIRES_IMAGE for d in images if (d / F.HIRES_IMAGE).is_file()), None
        ),
        lowres_image=next(
            (d / F.LOWRES_IMAGE for d in images if (d / F.LOWRES_IMAGE).is_file()), None
        ),
        bin_size_um=size,
    )


def _hd_bin_layout(root: Path, requested: int | None) -> SpaceRangerLayout:
    """The bin folder of ``requested`` µm (default 8 µm, else the coarsest), or the 2 µm one to
    sum it from when Space Ranger did not write that size."""
    binned = root / F.BINNED_OUTPUTS
    sizes = sorted(
        int(m.group(1)) for d in binned.iterdir() if d.is_dir() and (m := _BIN_DIR.match(d.name))
    )
    if not sizes:
        raise SpaceRangerLayoutError(
            f"{binned} holds no square_NNNum/ bin folders; expected Visium HD binned outputs"
        )
    if requested is None:
        requested = DEFAULT_HD_BIN_UM if DEFAULT_HD_BIN_UM in sizes else sizes[-1]
    if requested in sizes:
        return _hd_layout(root, binned / _bin_name(requested), requested)
    available = f"available bin sizes: {', '.join(f'{s} µm' for s in sizes)}"
    finest = HD_FINEST_BIN_UM
    if requested < finest or requested % finest:
        raise SpaceRangerLayoutError(
            f"no {requested} µm bins in {binned}; {available}; other sizes are summed from the "
            f"{finest} µm bins, so pass a multiple of {finest} µm to --bin-size"
        )
    if finest not in sizes:
        raise SpaceRangerLayoutError(
            f"no {requested} µm bins in {binned}; {available}; other sizes are summed from the "
            f"{finest} µm bins, which this run lacks: pick an available size, or copy "
            f"{_bin_name(finest)}/ from the Space Ranger outs/ folder"
        )
    fine = binned / _bin_name(finest)
    return replace(_hd_layout(root, fine, finest), bin_size_um=requested, summed_from=fine)


def _bin_name(size_um: int) -> str:
    return f"square_{size_um:03d}um"


def _find_positions(spatial: Path) -> Path:
    for name in (F.POSITIONS_V2, F.POSITIONS_V1, F.POSITIONS_PARQUET):
        if (spatial / name).is_file():
            return spatial / name
    raise SpaceRangerLayoutError(
        f"{spatial} has no spot positions file; expected {F.POSITIONS_V2} (Space Ranger >= 2), "
        f"{F.POSITIONS_V1} (< 2) or {F.POSITIONS_PARQUET} (Visium HD)"
    )


def _find_matrix(folder: Path) -> tuple[Path | None, Path | None]:
    """The filtered matrix when there is one, else the raw one, as HDF5 and/or Matrix Market."""
    for h5_name, mtx_name in ((F.FILTERED_H5, F.FILTERED_MTX_DIR), (F.RAW_H5, F.RAW_MTX_DIR)):
        h5 = folder / h5_name if (folder / h5_name).is_file() else None
        mtx_dir = folder / mtx_name
        mtx = mtx_dir if any((mtx_dir / m).is_file() for m in MtxFiles.MATRIX) else None
        if h5 is not None or mtx is not None:
            return h5, mtx
    raise SpaceRangerLayoutError(
        f"{folder} has no count matrix; expected {F.FILTERED_H5}, {F.RAW_H5} or a "
        f"{F.FILTERED_MTX_DIR}/ folder with matrix.mtx.gz"
    )


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None
