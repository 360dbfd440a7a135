"""An AnnData of spots (or bins, or pseudo-spots) beside its H&E image, as a :class:`Sample`.

What scanpy's ``read_visium``, squidpy, HEST-1k and ``tmescope pseudospots`` write: counts in
``X`` (or ``layers["counts"]`` when ``X`` holds normalised values), positions in
``obsm["spatial"]`` in the full-resolution pixels of the image, and optionally
``uns["spatial"][library]["scalefactors"]["spot_diameter_fullres"]``. The image is ``image``,
else ``uns["spatial"][library]["metadata"]["source_image_path"]``, else HEST-1k's ``wsis/<id>``
beside ``st/<id>.h5ad``. µm/px: ``mpp``, else the image's metadata, else HEST's
``metadata/<id>.json`` (``pixel_size_um_embedded``/``_estimated``), else the 100 µm pitch of a
Visium lattice. In HEST's layout a folder and a sample id are enough: ``HEST/`` + ``TENX95``
finds ``st/TENX95.h5ad``, ``wsis/TENX95.tif`` and ``metadata/TENX95.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tmescope.errors import (
    InputNotFoundError,
    InvalidParameterError,
    ResolutionError,
    SpaceRangerLayoutError,
)
from tmescope.io.sample import Sample
from tmescope.io.slide_backends import open_slide
from tmescope.io.table_sample import sample_from_table

HEST_FOLDERS = ("st", "wsis", "metadata")
_IMAGE_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".svs", ".ndpi", ".png", ".jpg", ".jpeg")
_HEST_MPP_KEYS = ("pixel_size_um_embedded", "pixel_size_um_estimated")


def is_hest_root(path: Path) -> bool:
    """A HEST-1k download: a folder holding ``st/`` and ``wsis/``."""
    return path.is_dir() and (path / "st").is_dir() and (path / "wsis").is_dir()


def hest_h5ad(root: Path, sample_id: str | None) -> Path:
    """``st/<id>.h5ad`` of a HEST-1k folder (the id is required: HEST holds many sections)."""
    if not sample_id:
        found = sorted(p.stem for p in (root / "st").glob("*.h5ad"))[:5]
        raise InvalidParameterError(
            f"{root} is a HEST-1k folder: name the section with --sample-id (e.g. "
            f"{', '.join(found) or 'TENX95'})"
        )
    path = root / "st" / f"{sample_id}.h5ad"
    if not path.exists():
        raise InputNotFoundError(
            f"{root}/st has no {sample_id}.h5ad; download it (hest's iter_hest or "
            "huggingface_hub with allow_patterns) or check the sample id"
        )
    return path


def read_anndata_sample(
    path: Path | str,
    *,
    image: Path | str | None = None,
    mpp: float | None = None,
    sample_id: str | None = None,
    spot_diameter_um: float | None = None,
) -> Sample:
    """Read an AnnData + image sample (see the module docstring)."""
    import anndata as ad

    path = Path(path)
    if is_hest_root(path):
        path = hest_h5ad(path, sample_id)
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; expected an .h5ad of spots")
    what = path.name
    try:
        table = ad.read_h5ad(path)
    except (OSError, ValueError, KeyError) as exc:
        raise SpaceRangerLayoutError(f"could not read {what} as an AnnData: {exc}") from exc
    if "spatial" not in table.obsm:
        raise InvalidParameterError(
            f"{what} has no obsm['spatial']; expected each spot's (x, y) in the full-resolution "
            "pixels of its H&E there (as scanpy, squidpy, HEST and tmescope pseudospots write it)"
        )
    library, library_uns = _library(table)
    sample_id = sample_id or path.stem
    image_path = _image_path(path, image, library_uns, sample_id)
    slide = open_slide(image_path)
    try:
        resolution, source = _resolve_mpp(mpp, slide, path, table)
        diameter_um = spot_diameter_um or _spot_diameter_um(library_uns, resolution)
        counts = table
        if "counts" in table.layers:
            counts = ad.AnnData(X=table.layers["counts"], obs=table.obs, var=table.var)
        in_tissue = (
            table.obs["in_tissue"].to_numpy().astype(bool) if "in_tissue" in table.obs else None
        )
        return sample_from_table(
            counts, np.asarray(table.obsm["spatial"]), slide=slide, sample_id=sample_id,
            mpp=resolution, mpp_source=source, source=path.resolve(), hashed=path.resolve(),
            spot_diameter_um=diameter_um, in_tissue=in_tissue, what=what,
            metadata={"library_id": library} if library else None,
        )  # fmt: skip
    except BaseException:
        slide.close()
        raise


def _library(table: Any) -> tuple[str | None, dict[str, Any]]:
    spatial = table.uns.get("spatial")
    if isinstance(spatial, dict) and len(spatial) >= 1:
        library = next(iter(spatial))
        entry = spatial[library]
        return str(library), entry if isinstance(entry, dict) else {}
    return None, {}


def _image_path(h5ad: Path, image: Path | str | None, library: dict[str, Any], sid: str) -> Path:
    if image is not None:
        return Path(image)
    recorded = (library.get("metadata") or {}).get("source_image_path")
    if recorded and Path(str(recorded)).exists():
        return Path(str(recorded))
    if h5ad.parent.name == "st" and is_hest_root(h5ad.parent.parent):
        for name in (h5ad.stem, sid):
            for suffix in _IMAGE_SUFFIXES:
                candidate = h5ad.parent.parent / "wsis" / f"{name}{suffix}"
                if candidate.exists():
                    return candidate
    raise InvalidParameterError(
        f"{h5ad.name}: no image to embed; pass the full-resolution H&E its obsm['spatial'] "
        "refers to with --image"
    )


def _resolve_mpp(mpp: float | None, slide: Any, h5ad: Path, table: Any) -> tuple[float, str]:
    from tmescope.io.slide_sample import check_mpp

    if mpp is not None:
        check_mpp(mpp)
        return float(mpp), "--mpp"
    if slide.mpp is not None and slide.mpp_source:
        return float(slide.mpp), str(slide.mpp_source)
    meta = h5ad.parent.parent / "metadata" / f"{h5ad.stem}.json"
    if h5ad.parent.name == "st" and meta.exists():
        record = json.loads(meta.read_text(encoding="utf-8"))
        for key in _HEST_MPP_KEYS:
            if isinstance(record.get(key), int | float) and record[key] > 0:
                return float(record[key]), f"HEST metadata:{key}"
    pitch = _pitch_mpp(np.asarray(table.obsm["spatial"], float))
    if pitch is not None:
        return pitch, "spot-pitch"
    raise ResolutionError(
        f"{h5ad.name}: neither the image nor the table says its µm per pixel; pass --mpp "
        "(about 0.25 for a 40× scan, 0.5 for 20×)"
    )


def _pitch_mpp(xy: np.ndarray) -> float | None:
    """µm/px from a Visium lattice (nearest neighbours 100 µm apart), when the spots form one:
    at least 20 spots whose nearest-neighbour distances agree within 5 %."""
    if len(xy) < 20:
        return None
    from scipy.spatial import cKDTree

    distance = cKDTree(xy[:, :2]).query(xy[:, :2], k=2)[0][:, 1]
    step = float(np.median(distance))
    if step <= 0 or np.mean(np.abs(distance / step - 1) < 0.05) < 0.9:
        return None
    return 100.0 / step


def _spot_diameter_um(library: dict[str, Any], mpp: float) -> float | None:
    scalefactors = library.get("scalefactors") or {}
    diameter = scalefactors.get("spot_diameter_fullres")
    return float(diameter) * mpp if isinstance(diameter, int | float) and diameter > 0 else None
