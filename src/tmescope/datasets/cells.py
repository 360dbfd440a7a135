"""The cells of one section: a cell type, a drawn sprite and background stains per grid cell.

Every grid cell holds at most one cell, drawn at random from its region's composition, with
immune cells infiltrating around tumour borders and structures (red cells in lumens, osteoclast
nuclei in giant cells, acellular bone) placed by the layout. The counts and the ground truth are
computed from exactly these cells, so they agree with what the image shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tmescope.datasets.catalogue import (
    BORDER_INFILTRATE,
    BORDER_INFILTRATE_UM,
    REGION_COMPOSITION,
    REGION_INDEX,
    REGIONS,
    TYPE_INDEX,
    TYPE_NAMES,
    ImmunePhenotype,
)
from tmescope.datasets.sprites import N_ORIENTATIONS, N_SHAPES, SpriteAtlas
from tmescope.datasets.tissue import TissueLayout, smooth_noise

# Background stain of each region between its cells: eosin, haematoxylin, red, fibre amplitude.
REGION_STAIN = {
    "stroma": (0.52, 0.03, 0.0, 0.50),  # pink collagen with clefts
    "tumour": (0.30, 0.11, 0.0, 0.06),  # cytoplasm, faintly basophilic
    "immune": (0.18, 0.08, 0.0, 0.05),
    "vessel": (0.58, 0.04, 0.0, 0.25),  # the wall
    "necrosis": (0.30, 0.10, 0.0, 0.02),  # pale, smudged
    "bone": (0.36, 0.03, 0.0, 0.35),  # loose fibrous stroma between trabeculae
}
LUMEN_STAIN = (0.06, 0.0, 0.05, 0.0)  # plasma
TRABECULA_STAIN = (0.95, 0.07, 0.0, 0.07)  # dense, glassy bone matrix
GIANT_STAIN = (0.80, 0.30, 0.0, 0.0)  # osteoclast cytoplasm, pink-purple
MAX_CELLULARITY = 0.97


@dataclass(frozen=True, eq=False)
class CellMap:
    """One entry per grid cell; arrays are ``(n_rows, n_cols)`` unless said otherwise."""

    cell_type: np.ndarray  # int8 index into catalogue.TYPE_NAMES, -1 where no cell
    sprite: np.ndarray  # int16 atlas entry, 0 where nothing is drawn
    n_objects: np.ndarray  # uint8 nuclei (red cells) drawn in the cell
    stains: np.ndarray  # float32 (5, n_rows, n_cols): eosin, haematoxylin, red, fibre 0, fibre 1


def populate_cells(
    layout: TissueLayout,
    *,
    atlas: SpriteAtlas,
    fibre_angles: tuple[float, float],
    rng: np.random.Generator,
    phenotype: ImmunePhenotype | None = None,
) -> CellMap:
    """Draw every cell of the section and the stains between them; ``phenotype`` places the
    T cells as that immune phenotype does (None: as every region's composition has them)."""
    cell_type = _draw_types(layout, rng, phenotype)
    shape = cell_type.shape
    orientation = rng.uniform(0, math.pi, shape)
    # Fibroblasts lie along the collagen around them; endothelium along its vessel wall.
    along = np.where(layout.fibre_mix > 0.5, fibre_angles[0], fibre_angles[1])
    along = along + rng.normal(0, 0.25, shape)
    orientation = np.where(cell_type == TYPE_INDEX["fibroblast"], along, orientation)
    wall = (cell_type == TYPE_INDEX["endothelial"]) & np.isfinite(layout.wall_angle)
    orientation = np.where(wall, layout.wall_angle, orientation)
    bins = np.rint(orientation / (math.pi / N_ORIENTATIONS)).astype(np.int32) % N_ORIENTATIONS
    sprite = atlas.entry(cell_type, bins, rng.integers(0, N_SHAPES, shape))
    return CellMap(
        cell_type=cell_type,
        sprite=sprite,
        n_objects=atlas.n_objects[sprite],
        stains=_stains(layout, rng),
    )


def _draw_types(
    layout: TissueLayout, rng: np.random.Generator, phenotype: ImmunePhenotype | None
) -> np.ndarray:
    shape, region = layout.region.shape, layout.region
    prob = np.zeros((len(TYPE_NAMES), *shape), np.float32)
    for r, name in enumerate(REGIONS):
        mask = region == r
        for type_name, p in REGION_COMPOSITION[name].items():
            prob[TYPE_INDEX[type_name]][mask] = p
    prob *= np.clip(1 + 0.2 * smooth_noise(rng, shape, 120 / layout.cell_um), 0.5, 1.5)
    open_tissue = np.isin(region, [REGION_INDEX[n] for n in ("stroma", "tumour", "immune")])
    near_border = np.exp(-layout.border_um / BORDER_INFILTRATE_UM) * open_tissue
    for type_name, p in BORDER_INFILTRATE.items():
        prob[TYPE_INDEX[type_name]] += p * near_border
    if phenotype is not None:
        _place_t_cells(prob[TYPE_INDEX["t_cell"]], layout, open_tissue, phenotype)
    # Structures override the random draw (None: acellular).
    structures: list[tuple[np.ndarray, str | None, float]] = [
        (layout.lumen, "erythrocyte", 0.8),
        (layout.trabecula, None, 0.0),
        (layout.giant > 0.3, None, 0.0),
        (layout.giant_core, "osteoclast", 0.7),
    ]
    for mask, drawn_type, p in structures:
        prob[:, mask] = 0
        if drawn_type is not None:
            prob[TYPE_INDEX[drawn_type]][mask] = p
    total = prob.sum(axis=0)
    prob *= np.where(total > MAX_CELLULARITY, MAX_CELLULARITY / np.maximum(total, 1e-9), 1.0)
    np.cumsum(prob, axis=0, out=prob)
    u = rng.random(shape, dtype=np.float32)
    drawn = np.zeros(shape, np.int8)  # the first type whose cumulative probability passes u
    for cumulative in prob:
        drawn += u >= cumulative
    return np.where(drawn < len(TYPE_NAMES), drawn, -1).astype(np.int8)


def _place_t_cells(
    t_cell: np.ndarray, layout: TissueLayout, open_tissue: np.ndarray, phenotype: ImmunePhenotype
) -> None:
    """Set the T-cell probabilities (in place) as ``phenotype`` places them: inside the nests,
    at their margin in the stroma, everywhere scaled. Draws nothing, so a cohort without
    phenotypes keeps its bytes."""
    nest = layout.region == REGION_INDEX["tumour"]
    t_cell[nest] = phenotype.nest_t_cell
    outside = open_tissue & ~nest
    d = layout.border_um
    margin = np.exp(-d / phenotype.margin_um) * (d <= 2 * phenotype.margin_um) * outside
    t_cell += phenotype.margin_t_cell * margin
    t_cell *= phenotype.t_cell_scale


def _stains(layout: TissueLayout, rng: np.random.Generator) -> np.ndarray:
    """Eosin, haematoxylin, red and fibre amplitudes between cells, times the tissue cover."""
    table = np.array([REGION_STAIN[name] for name in REGIONS], np.float32)
    # Off tissue takes stroma values so the soft tissue edge does not fade into a dark rim.
    base = table[np.where(layout.region >= 0, layout.region, REGION_INDEX["stroma"])]
    base[layout.lumen] = LUMEN_STAIN
    base[layout.trabecula] = TRABECULA_STAIN
    g = layout.giant[..., None]
    base = base * (1 - g) + np.array(GIANT_STAIN, np.float32) * g
    stains = np.moveaxis(base, -1, 0)  # (4, n_rows, n_cols)
    shape, scale = layout.region.shape, 150 / layout.cell_um
    stains[0] *= 1 + 0.12 * smooth_noise(rng, shape, scale)  # uneven staining
    stains[1] *= 1 + 0.12 * smooth_noise(rng, shape, scale)
    stains = ndimage.gaussian_filter(stains, (0, 0.6, 0.6))
    mix = layout.fibre_mix
    out = np.stack([stains[0], stains[1], stains[2], stains[3] * mix, stains[3] * (1 - mix)])
    return (np.clip(out, 0, None) * layout.alpha[None]).astype(np.float32)
