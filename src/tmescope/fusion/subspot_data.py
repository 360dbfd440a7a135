"""A sample's sub-spot bins as the sub-spot model sees them: inputs, discs and spot compositions.

Inputs are the stored bin features with their context-ring means, standardised per sample
(:mod:`tmescope.fusion.bin_head`). A spot's composition comes from its measured counts and a
single-cell reference: Poisson maximum-likelihood shares of RNA
(:func:`tmescope.fusion.reference.deconvolve_poisson`), converted to shares of cells with each
type's counts per cell (:func:`tmescope.fusion.reference.cell_shares`), and shares below
:data:`MIN_SHARE` set to zero: a deconvolution leaves small spurious shares of every type, and
the conversion to cells inflates those of RNA-poor types, which would flatten every
co-location towards "no preference".

With a pseudo-reference of marker genes (:mod:`tmescope.fusion.marker_reference`) the
compositions are the deconvolution's shares of marker signal, floored the same way: there are no
counts per cell to convert them with.

A Visium HD sample's measured units are square bins, not 55 µm discs: a measured bin as large
as the sub-spot bins or larger supervises the bins whose centre lies in its square (each
measured bin directly, at 8 µm on 8 µm bins the one bin it is); measured bins finer than the
sub-spot bins (8 µm bins under 16 µm ones) are summed into the sub-spot bin whose square holds
their centre, as Space Ranger sums 2 µm bins into coarser ones, and that bin's composition is
recorded on the first of them (the others' are left unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError, ReferenceDataError
from tmescope.fusion.bin_geometry import (
    context_operators,
    disc_areas,
    disc_of_bins,
    owner_discs,
    spot_discs,
    square_owner,
    with_context,
)
from tmescope.fusion.bin_head import standardise_per_sample
from tmescope.fusion.cohort import read_spot_table
from tmescope.fusion.reference import ReferenceProfiles, cell_shares, deconvolve_poisson
from tmescope.store import CohortStore

VISIUM_SPOT_UM = 55.0  # a spot's diameter when the sample does not say
HD_PLATFORM = "visium_hd"  # the stored platform of a sample whose measured units are square bins
MIN_REFERENCE_CELLS = 10  # fewer cells of a type make its profile noise
MIN_SHARE = 0.05  # a spot's cell shares below this are taken as absent
MIN_MARKER_GENES = 4  # markers a spot's deconvolution needs against a marker pseudo-reference


@dataclass(frozen=True, eq=False)
class BinSample:
    """One sample's bins: ``xy`` ``(n, 2)`` full-res centres, ``x`` ``(n, d)`` model inputs,
    ``discs`` ``(n_spots, n)`` what each spot measured of the bins (a mean over them, a bin
    weighed by the share of its square under the disc: training and calibration), ``disc``
    ``(n,)`` the spot whose disc holds each bin's centre (-1: between spots; reconciliation),
    and its spots' positions ``spot_xy`` and compositions ``measured`` (NaN rows: no
    estimate)."""

    sample_id: str
    xy: np.ndarray
    x: np.ndarray
    discs: sp.csr_matrix
    disc: np.ndarray
    spot_xy: np.ndarray
    measured: np.ndarray
    mpp: float
    bin_um: float


def without_traces(shares: np.ndarray, *, floor: float = MIN_SHARE) -> np.ndarray:
    """Compositions with shares below ``floor`` set to zero and the rest rescaled to one (a row
    whose every share is below keeps its largest; rows of NaN stay NaN)."""
    shares = np.asarray(shares, dtype=np.float64)
    kept = np.where(shares >= floor, shares, 0.0)
    largest = np.nanargmax(np.nan_to_num(shares, nan=-1.0), axis=1)
    empty = ~(kept > 0).any(axis=1) & np.isfinite(shares).all(axis=1)
    kept[empty, largest[empty]] = 1.0
    kept[~np.isfinite(shares).all(axis=1)] = np.nan
    return (kept / kept.sum(axis=1, keepdims=True)).astype(np.float32)


def check_reference(reference: ReferenceProfiles) -> None:
    """Refuse a reference that cannot give cell shares: too few cells of a type, or no counts
    per cell to convert RNA shares with (a marker pseudo-reference has neither, by design)."""
    if reference.markers:
        return
    small = {
        t: n
        for t, n in zip(reference.cell_types, reference.n_cells, strict=True)
        if n < MIN_REFERENCE_CELLS
    }
    if small:
        raise ReferenceDataError(
            f"cell types with fewer than {MIN_REFERENCE_CELLS} cells in the reference: "
            f"{small}; merge or drop them, or use a larger reference"
        )
    if reference.counts_per_cell is None:
        raise ReferenceDataError(
            "the reference holds no counts per cell, so RNA shares cannot become cell shares; "
            "load it again from its raw counts"
        )


def check_resolution(store: CohortStore, sample_id: str, resolution_um: float) -> None:
    """Refuse a bin size the sample's stored bins cannot give: finer than the encoder's tokens
    (naming their size), or other than the bins it was embedded with."""
    layout = store.sample_record(sample_id).bins
    if layout is None:
        store.read_bins(sample_id)  # raises MissingBinsError, which names --subspot
        return
    token_um = float(layout.spec.get("token_um", layout.bin_um))
    if resolution_um < token_um - 1e-6:
        raise InvalidParameterError(
            f"--resolution {resolution_um:g} µm is finer than the encoder's tokens ({token_um:g} "
            f"µm): sample {sample_id!r} has nothing finer to tell; use --resolution "
            f"{layout.bin_um:g}"
        )
    if abs(resolution_um - layout.bin_um) > 1e-6:
        raise InvalidParameterError(
            f"sample {sample_id!r} holds {layout.bin_um:g} µm bins, not {resolution_um:g} µm; use "
            f"--resolution {layout.bin_um:g}, or embed it again with --subspot {resolution_um:g}"
        )


def spot_compositions(
    counts: sp.spmatrix | np.ndarray, genes: tuple[str, ...], reference: ReferenceProfiles
) -> np.ndarray:
    """``(n_spots, P)`` compositions of measured spots: shares of cells against a single-cell
    reference, shares of marker signal against a marker pseudo-reference; traces removed."""
    if reference.markers:
        signal, _ = deconvolve_poisson(counts, genes, reference, min_shared_genes=MIN_MARKER_GENES)
        return without_traces(signal)
    rna, _ = deconvolve_poisson(counts, genes, reference)
    return without_traces(cell_shares(rna, reference.counts_per_cell or ()))


def read_bin_sample(
    store: CohortStore, sample_id: str, *, reference: ReferenceProfiles, bin_um: float
) -> BinSample:
    """The bins of ``sample_id`` with the compositions its measured spots give (none for an
    H&E-only slide: ``measured`` and ``spot_xy`` are empty and every bin lies between spots)."""
    record = store.sample_record(sample_id)
    check_resolution(store, sample_id, bin_um)
    bins = store.read_bins(sample_id)
    features = store.read_bin_features(sample_id)
    x = standardise_per_sample(with_context(features, context_operators(bins.cells)))
    mpp = float(record.meta.mpp)
    diameter = float(record.meta.extra.get("spot_diameter_um") or VISIUM_SPOT_UM)
    xy = np.asarray(bins.coords, dtype=np.float64)
    if record.has_counts:
        table = read_spot_table(store, sample_id)
        assert table.counts is not None  # read_spot_table refuses a sample without counts
        spot_xy = np.asarray(table.coords_px, dtype=np.float64)
        if record.meta.extra.get("platform") == HD_PLATFORM:
            disc, measured = square_supervision(
                xy, spot_xy, table.counts, table.genes, reference,
                unit_px=diameter / mpp, bin_px=float(bins.bin_um) / mpp,
            )  # fmt: skip
            return BinSample(
                sample_id=sample_id, xy=xy, x=x, discs=owner_discs(disc, len(spot_xy)),
                disc=disc, spot_xy=spot_xy, measured=measured, mpp=mpp,
                bin_um=float(bins.bin_um),
            )  # fmt: skip
        measured = spot_compositions(table.counts, table.genes, reference)
    else:  # an H&E-only slide: no spot measures anything, the image alone speaks
        measured = np.zeros((0, len(reference.cell_types)), dtype=np.float32)
        spot_xy = np.zeros((0, 2))
    radius_px = diameter / 2 / mpp
    discs = disc_areas(xy, spot_xy, radius_px=radius_px, bin_px=float(bins.bin_um) / mpp)
    centres = disc_of_bins(spot_discs(xy, spot_xy, radius_px=radius_px))
    return BinSample(
        sample_id=sample_id, xy=xy, x=x, discs=discs, disc=centres,
        spot_xy=spot_xy, measured=measured, mpp=mpp, bin_um=float(bins.bin_um),
    )  # fmt: skip


def square_supervision(
    bin_xy: np.ndarray,
    unit_xy: np.ndarray,
    counts: sp.spmatrix | np.ndarray,
    genes: tuple[str, ...],
    reference: ReferenceProfiles,
    *,
    unit_px: float,
    bin_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Which measured square supervises each sub-spot bin, and the squares' compositions.

    ``bin_xy`` ``(n_bins, 2)`` and ``unit_xy`` ``(n_units, 2)`` are full-resolution centres of
    the sub-spot bins (side ``bin_px``) and of the measured bins (side ``unit_px``), ``counts``
    the measured bins' ``(n_units, genes)``. Returns ``disc`` ``(n_bins,)``, the measured bin
    each sub-spot bin answers to (-1: none), and ``measured`` ``(n_units, P)`` (NaN rows: no
    composition). Measured bins finer than the sub-spot bins are summed per sub-spot bin first
    (see the module docstring).
    """
    n_units = len(unit_xy)
    if unit_px >= bin_px * (1 - 1e-6):
        disc = square_owner(bin_xy, unit_xy, side_px=unit_px)
        return disc, spot_compositions(counts, genes, reference)
    home = square_owner(unit_xy, bin_xy, side_px=bin_px)  # (n_units,) the bin holding each
    units = np.flatnonzero(home >= 0)
    held, first, group = np.unique(home[units], return_index=True, return_inverse=True)
    summing = sp.csr_matrix(
        (np.ones(units.size), (group.ravel(), units)), shape=(held.size, n_units)
    )
    measured = np.full((n_units, len(reference.cell_types)), np.nan, dtype=np.float32)
    disc = np.full(len(bin_xy), -1, dtype=np.int64)
    if held.size:
        first_unit = units[first]  # units ascend, so the first of each bin's units
        measured[first_unit] = spot_compositions(summing @ counts, genes, reference)
        disc[held] = first_unit
    return disc, measured
