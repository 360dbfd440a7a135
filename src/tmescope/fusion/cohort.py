"""What fusion reads from a cohort store: per sample, its spots (and tiles) as plain arrays.

Training never re-embeds: it reads the stored embeddings, the spot coordinates (converted to
micrometres with the sample's own µm/px, so that graphs mean the same on every slide) and the
counts, whose rows the store keeps in the order of the sample's spot rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tmescope.errors import SampleNotFoundError, TrainingDataError
from tmescope.store import CohortStore, RowKind


@dataclass(frozen=True)
class SpotTable:
    """The spots of one sample: embeddings, positions and (when stored) counts."""

    sample_id: str
    mpp: float  # µm per full-resolution pixel
    rows: np.ndarray  # (n,) int64 rows of the store's sample that are spots
    embeddings: np.ndarray  # (n, dim) float32
    coords_px: np.ndarray  # (n, 2) float32 full-resolution pixels (x, y)
    barcodes: np.ndarray  # (n,) str
    counts: sp.csr_matrix | None  # (n, n_genes) float32 raw counts
    genes: tuple[str, ...]  # gene symbols of the counts' columns

    @property
    def n(self) -> int:
        return int(self.rows.size)

    @property
    def coords_um(self) -> np.ndarray:
        """``(n, 2)`` float64 positions in micrometres."""
        return self.coords_px.astype(np.float64) * self.mpp


@dataclass(frozen=True)
class TileTable:
    """The dense-grid tiles of one sample (no counts of their own)."""

    sample_id: str
    rows: np.ndarray  # (m,) int64
    embeddings: np.ndarray  # (m, dim) float32
    coords_px: np.ndarray  # (m, 2) float32
    names: np.ndarray  # (m,) str, ``tile_<row>_<col>``

    @property
    def n(self) -> int:
        return int(self.rows.size)


def check_samples(store: CohortStore, sample_ids: Sequence[str]) -> list[str]:
    """``sample_ids`` if each is a complete sample of ``store``; a named error otherwise."""
    known = store.sample_ids()
    missing = [s for s in sample_ids if s not in known]
    if missing:
        raise SampleNotFoundError(
            f"no complete sample {', '.join(map(repr, missing))} in {store.path}; it holds "
            f"{', '.join(known) or 'none'}"
        )
    return list(sample_ids)


def read_spot_table(store: CohortStore, sample_id: str, *, counts: bool = True) -> SpotTable:
    """The spots of ``sample_id``; with ``counts``, a :class:`TrainingDataError` if it has none."""
    check_samples(store, [sample_id])
    kind = store.read_kind(sample_id)
    rows = np.flatnonzero(kind == RowKind.SPOT).astype(np.int64)
    if rows.size == 0:
        raise TrainingDataError(
            f"sample {sample_id!r} of {store.path} holds no spot rows (only grid tiles); "
            "embed it again from its Space Ranger output"
        )
    matrix: sp.csr_matrix | None = None
    genes: tuple[str, ...] = ()
    if counts:
        adata = store.read_counts(sample_id)
        if adata is None:
            raise TrainingDataError(
                f"sample {sample_id!r} of {store.path} was stored without counts, so there is "
                "nothing to train on; embed it again from a Space Ranger output with its matrix"
            )
        if adata.n_obs != rows.size:
            raise TrainingDataError(
                f"sample {sample_id!r} has {adata.n_obs} count rows for {rows.size} spots; run "
                "`tmescope store verify STORE`"
            )
        matrix = sp.csr_matrix(adata.X, dtype=np.float32)
        genes = tuple(str(g) for g in adata.var_names)
    return SpotTable(
        sample_id=sample_id,
        mpp=float(store.sample_record(sample_id).meta.mpp),
        rows=rows,
        embeddings=np.asarray(store.read_embeddings(sample_id)[rows], dtype=np.float32),
        coords_px=np.asarray(store.read_coords(sample_id)[rows], dtype=np.float32),
        barcodes=store.read_barcodes(sample_id)[rows],
        counts=matrix,
        genes=genes,
    )


def read_tile_table(store: CohortStore, sample_id: str) -> TileTable:
    """The grid tiles of ``sample_id``; a :class:`TrainingDataError` if it was embedded without."""
    check_samples(store, [sample_id])
    rows = np.flatnonzero(store.read_kind(sample_id) == RowKind.TILE).astype(np.int64)
    if rows.size == 0:
        raise TrainingDataError(
            f"sample {sample_id!r} of {store.path} has no grid tiles: embed it with "
            "`tmescope embed ... --grid 55` (a tile every 55 µm) to predict between spots"
        )
    return TileTable(
        sample_id=sample_id,
        rows=rows,
        embeddings=np.asarray(store.read_embeddings(sample_id)[rows], dtype=np.float32),
        coords_px=np.asarray(store.read_coords(sample_id)[rows], dtype=np.float32),
        names=store.read_barcodes(sample_id)[rows],
    )


def standardise_by_spots(spots: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each embedding dimension centred and scaled by the sample's own spots.

    A slide-level correction of staining and scanner shifts: it uses the slide's embeddings
    only (never expression), so it may be applied to a held-out slide too, and it is applied
    to every model alike — head and baselines — so that a gain is never credited to it.
    ``others`` (e.g. the slide's grid tiles) are scaled with the same spot statistics.
    """
    mean = spots.mean(axis=0, dtype=np.float64)
    std = spots.std(axis=0, dtype=np.float64)
    std[std < 1e-6] = 1.0
    centre, scale = mean.astype(np.float32), std.astype(np.float32)
    return tuple(((x - centre) / scale).astype(np.float32) for x in (spots, *others))
