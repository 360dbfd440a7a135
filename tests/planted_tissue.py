"""A Visium-like lattice with planted TME structure, shared by the spatial-statistics tests."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def hex_lattice(n_rows: int = 30, n_cols: int = 30, pitch: float = 100.0) -> np.ndarray:
    """Visium-like spot centres in µm: odd rows shifted by half a pitch, 6 neighbours at `pitch`."""
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    x = c * pitch + (r % 2) * pitch / 2
    y = r * pitch * np.sqrt(3) / 2
    return np.column_stack([x.ravel(), y.ravel()])


def planted_labels(coords: np.ndarray, seed: int) -> np.ndarray:
    """Tumour disk, immune on the spots touching its border, vessels anywhere at random."""
    tumour = np.linalg.norm(coords - coords.mean(axis=0), axis=1) < 700
    touching = np.zeros(len(coords), dtype=bool)
    for nbrs in cKDTree(coords).query_ball_point(coords[tumour], r=125):
        touching[nbrs] = True
    labels = np.where(tumour, "tumour", np.where(touching, "immune", "stroma")).astype(object)
    rng = np.random.default_rng(seed)
    # Vessels are drawn over all spots (overriding), so they are independent of immune by
    # construction; drawn from the non-tumour rest only they would be depleted next to immune.
    labels[rng.choice(len(coords), size=len(coords) // 10, replace=False)] = "vessel"
    return labels
