"""Where the tissue and its regions lie, on the cell grid of one section.

A smooth random *tissue field* decides what is tissue: the ``n_spots`` capture spots where it is
highest are under tissue, and the image is tissue wherever the field passes the same threshold,
so ``in_tissue`` and the picture agree. Within the tissue, smooth fields and stamped shapes lay
out tumour nests with necrotic cores far from vessels, fibrous stroma, lymphoid aggregates,
vessels and a bone-resorption region (trabeculae lined by osteoclasts). Arrays are
``(n_rows, n_cols)`` of the cell grid; index ``(i, j)`` is the cell centred at level-0 pixel
``((j + 0.5) * cell_px, (i + 0.5) * cell_px)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import RectBivariateSpline

from tmescope.datasets.catalogue import REGION_INDEX
from tmescope.datasets.geometry import SlideGeometry, grid_values_at

VESSELS_PER_MM2 = 14.0
AGGREGATES_PER_MM2 = 0.9
OSTEOCLASTS_PER_MM2 = 90.0
NECROSIS_MIN_VESSEL_UM = 110.0  # necrosis only this far from any vessel


@dataclass(frozen=True, eq=False)
class TissueLayout:
    """The regions of one section on the cell grid, and the distances that drive expression."""

    cell_um: float
    field: np.ndarray  # float32 tissue field; tissue where it passes ``threshold``
    threshold: float
    alpha: np.ndarray  # float32 tissue cover 0..1, a soft edge one cell wide
    region: np.ndarray  # int8 index into catalogue.REGIONS, -1 off tissue
    lumen: np.ndarray  # bool: inside a vessel
    wall_angle: np.ndarray  # float32 tangent of vessel walls (rad), NaN off walls
    trabecula: np.ndarray  # bool: bone matrix
    giant: np.ndarray  # float32 0..1: osteoclast cytoplasm
    giant_core: np.ndarray  # bool: where osteoclast nuclei cluster
    fibre_mix: np.ndarray  # float32 0..1: weight of the first collagen orientation
    border_um: np.ndarray  # float32 distance to the nearest tumour border (either side)
    vessel_um: np.ndarray  # float32 distance to the nearest vessel


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], scale_cells: float
) -> np.ndarray:
    """Gaussian random field with features about ``scale_cells`` wide; mean 0, sd 1, float32."""
    step = max(scale_cells / 2.0, 1.0)
    coarse = ndimage.gaussian_filter(
        rng.standard_normal((int(shape[0] / step) + 6, int(shape[1] / step) + 6)), 1.0
    )
    spline = RectBivariateSpline(np.arange(coarse.shape[0]), np.arange(coarse.shape[1]), coarse)
    field = spline(np.arange(shape[0]) / step + 3, np.arange(shape[1]) / step + 3)
    field -= field.mean()
    return (field / (field.std() or 1.0)).astype(np.float32)


def lay_out_tissue(
    geometry: SlideGeometry, *, n_spots: int, rng: np.random.Generator
) -> tuple[TissueLayout, np.ndarray]:
    """Lay out one section; returns it and ``in_tissue`` of every capture spot (exactly ``n_spots``)."""
    shape, um = geometry.grid_shape, geometry.cell_um
    field, threshold, in_tissue = _tissue_field(geometry, n_spots=n_spots, rng=rng)
    tissue = field > threshold
    grad = np.hypot(*np.gradient(field))
    alpha = np.clip((field - threshold) / np.maximum(grad, 1e-6) + 0.5, 0.0, 1.0)
    area_mm2 = tissue.sum() * um * um / 1e6

    t_field = smooth_noise(rng, shape, 350 / um) + 0.35 * smooth_noise(rng, shape, 100 / um)
    tumour = tissue & (t_field > np.quantile(t_field[tissue], 1 - rng.uniform(0.32, 0.5)))
    rest = tissue & ~tumour
    b_field = smooth_noise(rng, shape, 450 / um)
    bone_share = min(0.9, rng.uniform(0.10, 0.2) * tissue.sum() / max(rest.sum(), 1))
    bone = rest & (b_field > np.quantile(b_field[rest], 1 - bone_share)) if rest.any() else rest
    trabecula = bone & (np.abs(smooth_noise(rng, shape, 180 / um)) < 0.4)

    immune = np.zeros(shape, bool)
    wobble = 1 + 0.25 * smooth_noise(rng, shape, 60 / um)
    for (ci, cj), radius in _centres(
        rng, rest & ~bone, AGGREGATES_PER_MM2 * area_mm2, 1, (110, 260)
    ):
        box, d = _ellipse(shape, ci, cj, radius / um, radius / um, 0.0, reach=1.5)
        immune[box] |= d < wobble[box]
    immune &= rest

    lumen, wall, wall_angle = _vessels(rng, tissue & ~trabecula, tumour, area_mm2, um)
    vessel_um = _distance_um(lumen | wall, um)
    core = tumour & (t_field > np.quantile(t_field[tumour], 0.72))
    necrosis = ndimage.binary_opening(core & (vessel_um > NECROSIS_MIN_VESSEL_UM))
    border_um = np.where(tumour, _distance_um(~tumour, um), _distance_um(tumour, um))
    giant, giant_core = _osteoclasts(rng, bone, trabecula, um)
    trabecula &= giant < 0.3

    region = np.full(shape, -1, np.int8)
    for name, mask in (
        ("stroma", tissue), ("bone", bone), ("immune", immune), ("tumour", tumour),
        ("necrosis", necrosis), ("vessel", (lumen | wall) & tissue),
    ):  # fmt: skip
        region[mask] = REGION_INDEX[name]
    layout = TissueLayout(
        cell_um=um,
        field=field,
        threshold=threshold,
        alpha=alpha.astype(np.float32),
        region=region,
        lumen=lumen & tissue,
        wall_angle=np.where(wall & tissue, wall_angle, np.nan).astype(np.float32),
        trabecula=trabecula & (region == REGION_INDEX["bone"]),
        giant=giant,
        giant_core=giant_core & (region == REGION_INDEX["bone"]),
        fibre_mix=(1 / (1 + np.exp(-6 * smooth_noise(rng, shape, 250 / um)))).astype(np.float32),
        border_um=border_um,
        vessel_um=vessel_um,
    )
    return layout, in_tissue


def _distance_um(targets: np.ndarray, um: float) -> np.ndarray:
    """Distance from every cell to the nearest ``targets`` cell; the grid's diagonal if none."""
    if not targets.any():
        return np.full(targets.shape, math.hypot(*targets.shape) * um, np.float32)
    return (ndimage.distance_transform_edt(~targets) * um).astype(np.float32)


def _tissue_field(
    geometry: SlideGeometry, *, n_spots: int, rng: np.random.Generator
) -> tuple[np.ndarray, float, np.ndarray]:
    """A tissue-shaped blob over the capture grid; the threshold that puts ``n_spots`` under it."""
    shape, um = geometry.grid_shape, geometry.cell_um
    spots = geometry.spots
    x, y = spots["x"].to_numpy(float), spots["y"].to_numpy(float)
    centre = ((x.min() + x.max()) / 2, (y.min() + y.max()) / 2)
    half = (max((x.max() - x.min()) / 2, 1.0), max((y.max() - y.min()) / 2, 1.0))
    rows = (np.arange(shape[0]) + 0.5) * geometry.cell_px
    cols = (np.arange(shape[1]) + 0.5) * geometry.cell_px
    dx, dy = (cols[None, :] - centre[0]) / half[0], (rows[:, None] - centre[1]) / half[1]
    # A blob over the capture area that falls off steeply past a wobbly rounded square, so
    # little tissue lies beyond the capture area and its outline never runs straight.
    wx = dx + 0.12 * smooth_noise(rng, shape, 400 / um)
    wy = dy + 0.12 * smooth_noise(rng, shape, 400 / um)
    beyond = np.maximum((wx**4 + wy**4) ** 0.25 - 0.95, 0)
    field = (
        -1.3 * (dx**2 + dy**2)
        - 8.0 * beyond
        + 0.45 * smooth_noise(rng, shape, 700 / um)
        + 0.12 * smooth_noise(rng, shape, 150 / um)
    ).astype(np.float32)
    # Glass all around the slide edges; a ramp, as a step would blur the soft tissue edge.
    to_edge = np.minimum.outer(
        np.minimum(np.arange(shape[0]), np.arange(shape[0])[::-1]),
        np.minimum(np.arange(shape[1]), np.arange(shape[1])[::-1]),
    )
    field -= 10.0 * np.clip(1 - to_edge / 6, 0, 1).astype(np.float32)
    values = grid_values_at(field, x, y, cell_px=geometry.cell_px)
    order = np.argsort(-values, kind="stable")
    in_tissue = np.zeros(len(spots), bool)
    in_tissue[order[:n_spots]] = True
    threshold = float((values[order[n_spots - 1]] + values[order[n_spots]]) / 2)
    return field, threshold, in_tissue


def _centres(
    rng: np.random.Generator,
    where: np.ndarray,
    expected: float,
    at_least: int,
    radius_um: tuple[float, float],
) -> list[tuple[tuple[float, float], float]]:
    """Random cell centres (jittered within their cell) in ``where``, with random radii."""
    candidates = np.flatnonzero(where)
    n = min(max(at_least, int(rng.poisson(expected))), candidates.size)
    chosen = rng.choice(candidates, size=n, replace=False) if n else candidates[:0]
    ci, cj = np.unravel_index(chosen, where.shape)
    jitter = rng.uniform(-0.5, 0.5, (2, n))
    radii = rng.uniform(*radius_um, n)
    return [((ci[k] + jitter[0, k], cj[k] + jitter[1, k]), radii[k]) for k in range(n)]


def _ellipse(
    shape: tuple[int, int], ci: float, cj: float, a: float, b: float, angle: float, *, reach: float
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Normalised elliptic distance (1 on the outline) to ``(ci, cj)``, in a box of the grid."""
    r = max(a, b) * reach + 1
    box = (
        slice(max(0, math.floor(ci - r)), min(shape[0], math.ceil(ci + r) + 1)),
        slice(max(0, math.floor(cj - r)), min(shape[1], math.ceil(cj + r) + 1)),
    )
    di = np.arange(box[0].start, box[0].stop)[:, None] - ci
    dj = np.arange(box[1].start, box[1].stop)[None, :] - cj
    u = dj * math.cos(angle) + di * math.sin(angle)
    v = -dj * math.sin(angle) + di * math.cos(angle)
    return box, np.sqrt((u / a) ** 2 + (v / b) ** 2)


def _vessels(
    rng: np.random.Generator, where: np.ndarray, tumour: np.ndarray, area_mm2: float, um: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vessel cross-sections: lumens, walls one endothelial layer thick, and wall tangents."""
    shape = where.shape
    lumen, wall = np.zeros(shape, bool), np.zeros(shape, bool)
    wall_angle = np.zeros(shape, np.float32)
    # Tumour nests are less vascular than stroma, which is why their cores starve.
    weights = np.where(tumour, 0.5, 1.0) * where
    candidates = np.flatnonzero(weights)
    if candidates.size == 0:
        return lumen, wall, wall_angle
    n = min(int(rng.poisson(VESSELS_PER_MM2 * area_mm2)) + 1, candidates.size)
    p = weights.ravel()[candidates]
    chosen = rng.choice(candidates, size=n, replace=False, p=p / p.sum())
    radii = np.clip(rng.lognormal(math.log(11.0), 0.45, n), 4.0, 45.0) / um
    aspects = rng.uniform(1.0, 2.2, n)
    angles = rng.uniform(0, math.pi, n)
    for k, (ci, cj) in enumerate(zip(*np.unravel_index(chosen, shape), strict=True)):
        ri, rj = ci + rng.uniform(-0.4, 0.4), cj + rng.uniform(-0.4, 0.4)
        a, b = radii[k] * aspects[k], radii[k]
        box, d = _ellipse(shape, ri, rj, a, b, angles[k], reach=1 + 1.2 / b)
        inner = d < 1
        inner[ci - box[0].start, cj - box[1].start] = True  # even a capillary has a lumen
        ring = ~inner & (d < 1 + 1.0 / b)
        di = np.arange(box[0].start, box[0].stop)[:, None] - ri
        dj = np.arange(box[1].start, box[1].stop)[None, :] - rj
        tangent = (np.arctan2(di, dj) + math.pi / 2) % math.pi
        lumen[box] |= inner
        wall[box] |= ring
        wall_angle[box] = np.where(ring, tangent, wall_angle[box])
    return lumen, wall & ~lumen, wall_angle


def _osteoclasts(
    rng: np.random.Generator, bone: np.ndarray, trabecula: np.ndarray, um: float
) -> tuple[np.ndarray, np.ndarray]:
    """Multinucleated giant cells lining the trabeculae: cytoplasm cover and nuclear cluster."""
    giant = np.zeros(bone.shape, np.float32)
    core = np.zeros(bone.shape, bool)
    edge = bone & ~trabecula & ndimage.binary_dilation(trabecula, iterations=2)
    bone_mm2 = bone.sum() * um * um / 1e6
    for (ci, cj), radius in _centres(rng, edge, OSTEOCLASTS_PER_MM2 * bone_mm2, 0, (13, 26)):
        aspect, angle = rng.uniform(1.0, 1.6), rng.uniform(0, math.pi)
        a, b = radius * aspect / um, radius / um
        box, d = _ellipse(bone.shape, ci, cj, a, b, angle, reach=1.2)
        giant[box] = np.maximum(giant[box], np.clip((1 - d) * 4.0, 0, 1))
        core[box] |= d < 0.55
    return giant, core
