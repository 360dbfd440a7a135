"""``read_visium``: a Space Ranger run (Visium or Visium HD) as a :class:`Sample`."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from tmescope.errors import (
    CountsFormatError,
    ImageMismatchError,
    InvalidParameterError,
    ResolutionError,
    SpaceRangerLayoutError,
    TmescopeWarning,
)
from tmescope.io._keys import HD_FINEST_BIN_UM, VISIUM_SPOT_DIAMETER_UM
from tmescope.io.counts import describe_disagreement, read_10x_h5, read_10x_mtx
from tmescope.io.hd_aggregate import aggregate_hd_bins
from tmescope.io.layout import SpaceRangerLayout, locate_spaceranger_files
from tmescope.io.positions import read_positions
from tmescope.io.resolution import check_agreement, mpp_from_spot_pitch
from tmescope.io.sample import ImageKind, Sample
from tmescope.io.scalefactors import Scalefactors, read_scalefactors
from tmescope.io.slide import Slide
from tmescope.io.slide_backends import open_slide

log = logging.getLogger(__name__)

# Foundation models read patches at about 0.5 µm/px; beyond this an image cannot feed them.
LOW_RESOLUTION_MPP = 2.0


def read_visium(
    path: Path | str,
    *,
    image: Path | str | None = None,
    sample_id: str | None = None,
    bin_size_um: float | None = None,
    mpp: float | None = None,
) -> Sample:
    """Read one Space Ranger run.

    ``path`` is an ``outs/`` folder, its parent, or a folder holding ``spatial/`` and the
    matrix. ``image`` is the full-resolution H&E given to Space Ranger (pyramidal TIFF, SVS,
    OME-TIFF, NDPI with the ``slides`` extra, PNG/JPEG); without it the hires PNG is used, else
    the lowres one. ``bin_size_um`` picks the Visium HD bin size (default 8 µm when present); a
    multiple of 2 µm that Space Ranger did not write is summed from the 2 µm bins, streamed.
    ``mpp`` (µm per full-resolution pixel) overrides the image metadata and the spot pitch.
    """
    if mpp is not None and not mpp > 0:
        raise InvalidParameterError(f"mpp must be a positive number of µm per pixel, got {mpp}")
    layout = locate_spaceranger_files(path, bin_size_um=bin_size_um)
    scalefactors = (
        read_scalefactors(layout.scalefactors)
        if layout.scalefactors
        else Scalefactors(hires=None, lowres=None, spot_diameter_fullres=None)
    )
    if layout.summed_from is None:
        positions = read_positions(layout.positions)
        counts = _read_counts(layout)
    else:
        positions, counts, scalefactors = _sum_bins(layout, scalefactors)
    spots = _join_spots(counts, positions, layout)
    slide, kind = _open_image(layout, image)
    try:
        scale = scalefactors.for_image(kind)
        _check_image_covers_spots(slide, spots, scale=scale, kind=kind)
        if mpp is not None:
            mpp_source = "user"
        else:
            mpp, mpp_source = _resolve_mpp(layout, positions, scalefactors, slide, scale)
        if kind != "fullres" and mpp / scale > LOW_RESOLUTION_MPP:
            warnings.warn(
                f"{layout.sample_id}: using {slide.path.name} at {mpp / scale:.1f} µm/px, too coarse "
                "for a pathology foundation model (they read about 0.5 µm/px); pass the "
                "full-resolution H&E with --image",
                TmescopeWarning,
                stacklevel=2,
            )
    except Exception:
        slide.close()
        raise
    counts.obs = spots.set_index("barcode")[["in_tissue", "array_row", "array_col"]].copy()
    counts.obs.index.name = None
    counts.obsm["spatial"] = spots[["x", "y"]].to_numpy(np.float64)
    spot_um = float(layout.bin_size_um) if layout.bin_size_um else VISIUM_SPOT_DIAMETER_UM
    return Sample(
        sample_id=sample_id or layout.sample_id,
        spots=spots,
        counts=counts,
        slide=slide,
        image_kind=kind,
        image_scale=scale,
        mpp=mpp,
        mpp_source=mpp_source,
        spot_diameter_um=spot_um,
        platform="visium_hd" if layout.platform == "visium_hd" else "visium",
        scalefactors=scalefactors,
        layout=layout,
        bin_size_um=float(layout.bin_size_um) if layout.bin_size_um else None,
        metadata=dict(counts.uns.pop("10x_metadata", {})),
    )


def _read_counts(layout: SpaceRangerLayout) -> ad.AnnData:
    if layout.h5 is None:
        assert layout.mtx_dir is not None  # the layout guarantees one of them
        return read_10x_mtx(layout.mtx_dir)
    counts = read_10x_h5(layout.h5)
    if layout.mtx_dir is not None:
        try:
            difference = describe_disagreement(counts, read_10x_mtx(layout.mtx_dir))
        except CountsFormatError as exc:
            difference = f"the Matrix Market folder is unreadable ({exc})"
        if difference:
            warnings.warn(
                f"{layout.h5.name} and {layout.mtx_dir.name}/ disagree ({difference}); using "
                f"{layout.h5.name}",
                TmescopeWarning,
                stacklevel=3,
            )
    return counts


def _sum_bins(
    layout: SpaceRangerLayout, fine: Scalefactors
) -> tuple[pd.DataFrame, ad.AnnData, Scalefactors]:
    """Positions, counts and scale factors of bins Space Ranger did not write, summed from its
    2 µm bins a block at a time (see :mod:`tmescope.io.hd_aggregate`), as a written size's."""
    assert layout.summed_from is not None and layout.bin_size_um is not None  # the caller's test
    summed = aggregate_hd_bins(layout.summed_from, size_um=layout.bin_size_um)
    log.info(
        "%s: %d bins of %d µm summed from %s", layout.sample_id, summed.counts.n_obs,
        summed.size_um, layout.summed_from,
    )  # fmt: skip
    finest = fine.bin_size_um or HD_FINEST_BIN_UM
    return summed.positions, summed.counts, fine.summed(from_um=finest, to_um=summed.size_um)


def _join_spots(
    counts: ad.AnnData, positions: pd.DataFrame, layout: SpaceRangerLayout
) -> pd.DataFrame:
    """One spot per matrix barcode, in matrix order; every barcode must have a position."""
    indexed = positions.set_index("barcode")
    barcodes = counts.obs_names
    missing = ~barcodes.isin(indexed.index)
    if missing.any():
        raise SpaceRangerLayoutError(
            f"{int(missing.sum())} of {len(barcodes)} matrix barcodes (e.g. {barcodes[missing][0]!r}) "
            f"are missing from {layout.positions.name}: the matrix and the positions come from "
            "different runs; use the files of one Space Ranger outs/ folder"
        )
    if len(barcodes) == 0:
        raise CountsFormatError(f"the count matrix of {layout.root} holds no barcodes")
    return indexed.loc[barcodes].rename_axis("barcode").reset_index()


def _open_image(layout: SpaceRangerLayout, image: Path | str | None) -> tuple[Slide, ImageKind]:
    if image is not None:
        return open_slide(image), "fullres"
    found: tuple[tuple[Path | None, ImageKind], ...] = (
        (layout.hires_image, "hires"),
        (layout.lowres_image, "lowres"),
    )
    candidates = [(p, k) for p, k in found if p is not None]
    if not candidates:
        raise SpaceRangerLayoutError(
            f"{layout.root} has neither {'tissue_hires_image.png'} nor tissue_lowres_image.png; "
            "pass the full-resolution H&E with --image"
        )
    for i, (path, kind) in enumerate(candidates):
        slide = open_slide(path)
        if i + 1 < len(candidates) and _is_blank(slide):
            warnings.warn(
                f"{path.name} is a blank image (a placeholder?); using {candidates[i + 1][0].name}",
                TmescopeWarning,
                stacklevel=3,
            )
            slide.close()
            continue
        return slide, kind
    raise AssertionError("unreachable: the last candidate is always returned")


def _is_blank(slide: Slide) -> bool:
    thumb = slide.thumbnail(128)
    return int(thumb.max()) - int(thumb.min()) <= 2


def _check_image_covers_spots(
    slide: Slide, spots: pd.DataFrame, *, scale: float, kind: str
) -> None:
    xy = spots[["x", "y"]].to_numpy(float) * scale
    # A spot centre may lie within a spot's width of the edge; beyond that the image is wrong.
    slack = 0.02 * max(slide.width, slide.height) + 1
    x_max, y_max = xy.max(axis=0)
    x_min, y_min = xy.min(axis=0)
    if x_max > slide.width + slack or y_max > slide.height + slack or min(x_min, y_min) < -slack:
        hint = (
            "is this the image given to Space Ranger, at full resolution?"
            if kind == "fullres"
            else "the scalefactors do not fit this image"
        )
        raise ImageMismatchError(
            f"spots reach ({x_max:.0f}, {y_max:.0f}) px on {slide.path.name} but the image is "
            f"{slide.width}×{slide.height} px: {hint}"
        )


def _resolve_mpp(
    layout: SpaceRangerLayout,
    positions: pd.DataFrame,
    scalefactors: Scalefactors,
    slide: Slide,
    scale: float,
) -> tuple[float, str]:
    """µm per full-resolution pixel: scalefactors (HD), the slide's metadata, else the pitch."""
    platform = layout.platform
    pitch = float(layout.bin_size_um) if layout.bin_size_um else None
    try:
        pitch_mpp: float | None = mpp_from_spot_pitch(positions, platform=platform, pitch_um=pitch)
        pitch_error: ResolutionError | None = None
    except ResolutionError as exc:
        pitch_mpp, pitch_error = None, exc
    if platform == "visium_hd" and scalefactors.microns_per_pixel:
        return scalefactors.microns_per_pixel, "scalefactors:microns_per_pixel"
    if slide.mpp is not None and slide.mpp_source:
        mpp = slide.mpp * scale  # µm per image pixel × image pixels per full-res pixel
        if pitch_mpp is not None:
            check_agreement(mpp, pitch_mpp, image=slide.path.name)
        return mpp, slide.mpp_source
    if pitch_mpp is None:
        raise ResolutionError(
            f"{layout.sample_id}: the image has no resolution metadata and {pitch_error}"
        ) from pitch_error
    return pitch_mpp, "spot-pitch"
