"""Where to cut patches: under every spot in tissue, on a dense grid over the tissue, as cover
patches over tissue that no other patch reaches (for sub-spot bins), and as tiles over the whole
tissue of an H&E-only slide.

Patches are cut at the encoder's µm/px, centred on full-resolution pixel coordinates, and
visited in raster order (bands of rows, left to right) so that consecutive patches share slide
tiles and each tile is decoded about once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tmescope.embed.tissue_mask import TissueMask
from tmescope.errors import InvalidParameterError, SampleContentError
from tmescope.io import Sample
from tmescope.io.slide_sample import SlideSample

SPOT, TILE, COVER = 0, 1, 2  # values of PatchPlan.kind (store.RowKind)
DEFAULT_MIN_TISSUE = 0.25  # grid tiles with less tissue than this are left out


@dataclass(frozen=True, eq=False)
class PatchPlan:
    """The patches of one sample, in reading order."""

    ids: np.ndarray  # (n,) str: spot barcodes, "tile_<row>_<col>", or "cover_<row>_<col>"
    kind: np.ndarray  # (n,) uint8: SPOT, TILE or COVER
    centres: np.ndarray  # (n, 2) float64, full-resolution pixels (x, y)
    tissue_fraction: np.ndarray  # (n,) float32
    size_um: float
    size_px: int

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_spots(self) -> int:
        return int((self.kind == SPOT).sum())

    def subset(self, keep: np.ndarray) -> PatchPlan:
        """The patches where boolean ``keep`` is true, in the same order."""
        return replace(
            self, ids=self.ids[keep], kind=self.kind[keep], centres=self.centres[keep],
            tissue_fraction=self.tissue_fraction[keep],
        )  # fmt: skip


def plan_patches(
    sample: Sample,
    *,
    size_um: float,
    size_px: int,
    grid_step_um: float | None = None,
    min_tissue: float = DEFAULT_MIN_TISSUE,
    mask: TissueMask | None = None,
) -> PatchPlan:
    """Patches under every in-tissue spot, then (with ``grid_step_um``) grid tiles over tissue."""
    if not size_um > 0 or size_px < 8:
        raise InvalidParameterError(
            f"patch size must be positive ({size_um} µm) and at least 8 px ({size_px} px)"
        )
    spots = sample.spots[sample.spots["in_tissue"].to_numpy(bool)]
    if spots.empty:
        raise SampleContentError(
            f"{sample.sample_id}: none of its {sample.n_spots} spots is in tissue "
            "(in_tissue is 0 everywhere); check the positions file"
        )
    mask = mask or TissueMask.from_sample(sample)
    side = size_um / sample.mpp
    ids = [spots["barcode"].to_numpy(str)]
    kinds = [np.full(len(spots), SPOT, np.uint8)]
    centres = [spots[["x", "y"]].to_numpy(np.float64)]
    if grid_step_um is not None:
        if not grid_step_um > 0:
            raise InvalidParameterError(f"--grid must be a positive step in µm, got {grid_step_um}")
        tile_ids, tile_centres = _grid_over_tissue(
            sample, mask, step_px=grid_step_um / sample.mpp, side=side, min_tissue=min_tissue
        )
        ids.append(tile_ids)
        kinds.append(np.full(len(tile_ids), TILE, np.uint8))
        centres.append(tile_centres)
    # Spots and tiles share one raster order, so each slide tile is decoded about once.
    joined = np.concatenate(centres)
    order = raster_order(joined, band=side)
    return PatchPlan(
        ids=np.concatenate(ids)[order],
        kind=np.concatenate(kinds)[order],
        centres=joined[order],
        tissue_fraction=mask.fractions(joined[order], side=side),
        size_um=float(size_um),
        size_px=int(size_px),
    )


def with_cover_patches(
    plan: PatchPlan, centres: np.ndarray, *, side_px: float, mask: TissueMask
) -> PatchPlan:
    """``plan`` with cover patches at ``centres`` (full-res px, the centres of a lattice of
    ``side_px`` squares), all rows back in one raster order. A cover id names its lattice cell:
    ``cover_<row>_<col>``."""
    if len(centres) == 0:
        return plan
    cells = np.floor(np.asarray(centres) / side_px).astype(np.int64)
    ids = np.char.add(
        np.char.add("cover_", cells[:, 1].astype(str)), np.char.add("_", cells[:, 0].astype(str))
    ).astype(str)
    joined = np.concatenate([plan.centres, centres])
    order = raster_order(joined, band=side_px)
    return replace(
        plan,
        ids=np.concatenate([plan.ids.astype(str), ids])[order],
        kind=np.concatenate([plan.kind, np.full(len(centres), COVER, np.uint8)])[order],
        centres=joined[order],
        tissue_fraction=np.concatenate(
            [plan.tissue_fraction, mask.fractions(centres, side=side_px).astype(np.float32)]
        )[order],
    )


def raster_order(centres: np.ndarray, *, band: float) -> np.ndarray:
    """Permutation visiting ``(x, y)`` centres band by band (height ``band``), left to right."""
    rows = np.floor(centres[:, 1] / max(band, 1e-9)).astype(np.int64)
    return np.lexsort((centres[:, 0], rows))


def _grid_over_tissue(
    sample: Sample, mask: TissueMask, *, step_px: float, side: float, min_tissue: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of a square grid (full-res px) whose patches hold at least ``min_tissue``."""
    width = sample.slide.width / sample.image_scale
    height = sample.slide.height / sample.image_scale
    xs = np.arange(step_px / 2, width, step_px)
    ys = np.arange(step_px / 2, height, step_px)
    gx, gy = np.meshgrid(xs, ys)  # row-major: already in raster order
    centres = np.column_stack([gx.ravel(), gy.ravel()])
    rows, cols = np.divmod(np.arange(len(centres)), len(xs))
    keep = mask.fractions(centres, side=side) >= min_tissue
    ids = np.char.add(
        np.char.add("tile_", rows[keep].astype(str)), np.char.add("_", cols[keep].astype(str))
    )
    return ids.astype(str), centres[keep]


def plan_slide_tiles(
    sample: SlideSample, *, size_um: float, size_px: int, bin_um: float, mask: TissueMask
) -> PatchPlan:
    """Tiles of an H&E-only slide: a lattice of patch-sized squares (anchored at pixel (0, 0),
    so tiles never overlap) wherever one holds a tissue bin of ``bin_um``; every tissue bin of
    the slide then lies in a tile. A :class:`SampleContentError` when no tissue is found."""
    from tmescope.embed.subspot import cover_centres

    side = size_um / sample.mpp
    region = (0.0, 0.0, float(sample.slide.width), float(sample.slide.height))
    centres = cover_centres(
        np.zeros((0, 2)), patch_px=side, bin_px=bin_um / sample.mpp, tissue=mask, region=region
    )
    if not len(centres):
        raise SampleContentError(
            f"no tissue found on slide {sample.source} ({sample.slide.width} × "
            f"{sample.slide.height} px): tissue is found as stained, non-white pixels on a "
            "thumbnail; check that this is a brightfield H&E slide"
        )
    cells = np.floor(centres / side).astype(np.int64)
    ids = np.char.add(
        np.char.add("tile_", cells[:, 1].astype(str)), np.char.add("_", cells[:, 0].astype(str))
    ).astype(str)
    return PatchPlan(
        ids=ids, kind=np.full(len(ids), TILE, np.uint8), centres=centres,
        tissue_fraction=mask.fractions(centres, side=side), size_um=float(size_um),
        size_px=int(size_px),
    )  # fmt: skip
