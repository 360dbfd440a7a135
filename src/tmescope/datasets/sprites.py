"""Drawn cells: a small atlas of nuclei (and red cells) per cell type, at every pyramid level.

Each cell of the grid shows at most one atlas entry, drawn in a window two cells wide centred on
it, so neighbouring windows overlap and nuclei need not sit on a lattice. An entry is rendered
once, supersampled, as stain densities (haematoxylin, and red for erythrocytes); every pyramid
level gets a box-reduced copy, so levels agree and no nucleus is ever drawn per pixel in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from tmescope.datasets.catalogue import TYPE_NAMES

N_ORIENTATIONS = 8  # over [0, π): nuclei are symmetric
N_SHAPES = 8
VARIANTS = N_ORIENTATIONS * N_SHAPES
DENSITY_SCALE = 100.0  # atlas values are uint8 stain densities × this
SUPERSAMPLE = 2
MIN_CELL_PX = 4  # below this many pixels per cell a level is reduced from a finer one

Texture = Literal["dense", "smooth", "vesicular", "rbc", "debris"]


@dataclass(frozen=True)
class NucleusStyle:
    """How one cell type looks: nucleus size, shape, stain and chromatin."""

    radius_um: tuple[float, float]  # semi-major axis
    aspect: tuple[float, float]  # major / minor axis
    density: float  # stain optical density at full strength
    texture: Texture
    counts: tuple[float, ...] = (1.0,)  # probabilities of drawing 1, 2, … objects in a cell
    roughness: float = 0.04  # irregularity of the outline
    nucleolus: bool = False


STYLES: dict[str, NucleusStyle] = {
    # Large, pleomorphic, vesicular chromatin with a darker membrane and a nucleolus.
    "tumour": NucleusStyle(
        (4.6, 6.6), (1.0, 1.6), 1.05, "vesicular", roughness=0.12, nucleolus=True
    ),
    "fibroblast": NucleusStyle((5.0, 7.0), (3.2, 5.0), 1.35, "smooth"),  # spindle
    "t_cell": NucleusStyle((2.8, 3.3), (1.0, 1.15), 1.9, "dense", counts=(0.5, 0.5)),
    "b_cell": NucleusStyle((3.0, 3.6), (1.0, 1.2), 1.75, "dense", counts=(0.55, 0.45)),
    "macrophage": NucleusStyle((4.0, 5.0), (1.2, 1.7), 0.8, "vesicular", roughness=0.1),
    "endothelial": NucleusStyle((4.5, 6.0), (2.6, 4.0), 1.25, "smooth"),  # flat, along the wall
    "erythrocyte": NucleusStyle((3.4, 3.9), (1.0, 1.3), 1.5, "rbc", counts=(0.45, 0.35, 0.2)),
    "osteoclast": NucleusStyle(
        (3.0, 3.7), (1.1, 1.4), 1.05, "vesicular", counts=(0.6, 0.4), nucleolus=True
    ),
    # Karyorrhexis: small dark fragments of dead nuclei.
    "necrotic": NucleusStyle(
        (0.6, 1.6), (1.0, 1.5), 1.5, "debris", counts=(0, 0.2, 0.3, 0.3, 0.2), roughness=0.2
    ),
}


class SpriteAtlas:
    """Entry 0 is empty; entry ``1 + (type * N_ORIENTATIONS + orientation) * N_SHAPES + shape``."""

    def __init__(self, *, cell_px: int, mpp: float, rng: np.random.Generator) -> None:
        self.cell_px = cell_px
        cell_um = cell_px * mpp
        entries = [
            (STYLES[name], objs)
            for name in TYPE_NAMES
            for objs in _draw(STYLES[name], cell_um, rng)
        ]
        self.n_objects = np.array([0] + [len(objs) for _, objs in entries], dtype=np.uint8)
        side = 2 * cell_px * SUPERSAMPLE  # the window is two cells wide
        self._density = _render(entries, side=side, px_um=mpp / SUPERSAMPLE, rng=rng)
        self._levels: dict[int, np.ndarray] = {}

    def entry(
        self, cell_type: np.ndarray, orientation: np.ndarray, shape: np.ndarray
    ) -> np.ndarray:
        """Atlas entries for arrays of type (-1: none), orientation bin and shape index."""
        index = 1 + (cell_type.astype(np.int32) * N_ORIENTATIONS + orientation) * N_SHAPES + shape
        return np.where(cell_type >= 0, index, 0).astype(np.int16)

    def at_level(self, level: int) -> np.ndarray:
        """``(n_entries, 2k, 2k, 2)`` uint8 densities for ``k = cell_px >> level`` pixels a cell."""
        if level not in self._levels:
            factor = SUPERSAMPLE << level
            n, side = self._density.shape[0], self._density.shape[1] // factor
            if side < 2 * MIN_CELL_PX:
                raise ValueError(f"level {level} has fewer than {MIN_CELL_PX} pixels per cell")
            reduced = self._density.reshape(n, side, factor, side, factor, 2).mean(axis=(2, 4))
            self._levels[level] = np.clip(np.rint(reduced * DENSITY_SCALE), 0, 255).astype(np.uint8)
        return self._levels[level]


@dataclass(frozen=True)
class _Object:
    x: float  # centre in µm from the window centre
    y: float
    a: float  # semi-axes in µm
    b: float
    angle: float
    outline: tuple[float, float, float, float]  # harmonics: c2, phase2, c3, phase3
    nucleolus: tuple[float, float]  # its position in units of the semi-axes


def _draw(style: NucleusStyle, cell_um: float, rng: np.random.Generator) -> list[list[_Object]]:
    """The objects of every variant of one type, orientation bin by orientation bin."""
    p = np.array(style.counts) / sum(style.counts)
    variants = []
    for k in range(VARIANTS):
        n = 1 + int(rng.choice(len(p), p=p))
        objects = []
        for _ in range(n):
            a = min(rng.uniform(*style.radius_um), cell_um - 0.6)
            b = a / rng.uniform(*style.aspect)
            # A lone nucleus stays near its cell so density follows composition; several share it.
            reach = max(0.0, cell_um - a - 0.6)
            reach = min(reach, 0.6 * cell_um) if n == 1 else reach
            r, t = reach * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
            angle = (k // N_SHAPES + rng.uniform(-0.5, 0.5)) * math.pi / N_ORIENTATIONS
            c2, c3 = rng.uniform(0, style.roughness, 2)
            p2, p3 = rng.uniform(0, 2 * math.pi, 2)
            nx, ny = rng.uniform(-0.35, 0.35, 2)
            outline = (float(c2), float(p2), float(c3), float(p3))
            objects.append(
                _Object(
                    r * math.cos(t), r * math.sin(t), a, b, angle, outline, (float(nx), float(ny))
                )
            )
        variants.append(objects)
    return variants


def _render(
    entries: list[tuple[NucleusStyle, list[_Object]]],
    *,
    side: int,
    px_um: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(1 + len(entries), side, side, 2)`` float32 densities: haematoxylin, red."""
    out = np.zeros((1 + len(entries), side, side, 2), np.float32)
    grid = (np.arange(side) + 0.5 - side / 2) * px_um
    gx, gy = grid[None, :], grid[:, None]
    for i, (style, objects) in enumerate(entries, start=1):
        # Chromatin: noise smoothed to about 0.4 µm, shared by the objects of one entry.
        chromatin = ndimage.gaussian_filter(rng.standard_normal((side, side)), 0.4 / px_um)
        chromatin /= chromatin.std() or 1.0
        channel = 1 if style.texture == "rbc" else 0
        for obj in objects:
            density = _density(style, obj, gx - obj.x, gy - obj.y, chromatin)
            np.maximum(out[i, :, :, channel], density, out=out[i, :, :, channel])
    return out


def _density(
    style: NucleusStyle, obj: _Object, dx: np.ndarray, dy: np.ndarray, chromatin: np.ndarray
) -> np.ndarray:
    cos, sin = math.cos(obj.angle), math.sin(obj.angle)
    u = (dx * cos + dy * sin) / obj.a
    v = (-dx * sin + dy * cos) / obj.b
    phi = np.arctan2(v, u)
    c2, p2, c3, p3 = obj.outline
    rho = np.hypot(u, v) / (1 + c2 * np.cos(2 * phi + p2) + c3 * np.cos(3 * phi + p3))
    cover = np.clip((1 - rho) * obj.b / 0.45 + 0.5, 0, 1)  # a soft edge about 0.5 µm wide
    d = style.density
    if style.texture == "vesicular":
        rim = np.clip((rho - 0.62) / 0.3, 0, 1)  # chromatin clumps on the nuclear membrane
        value = d * (0.42 + 0.5 * rim + 0.28 * np.clip(chromatin, 0, 2))
        if style.nucleolus:
            nu, nv = obj.nucleolus
            r2 = ((u - nu) * obj.a) ** 2 + ((v - nv) * obj.b) ** 2
            value = value + 0.9 * d * np.exp(-r2 / 0.75**2)
    elif style.texture == "rbc":
        value = d * (1 - 0.4 * np.exp(-((rho / 0.5) ** 2)))  # the biconcave pale centre
    elif style.texture == "dense":
        value = d * (0.88 + 0.15 * chromatin)
    else:  # smooth spindles and debris
        value = d * (0.9 + 0.12 * chromatin)
    return (value * cover).astype(np.float32)
