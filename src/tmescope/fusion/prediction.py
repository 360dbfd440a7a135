"""A trained model's prediction for one stored sample, as arrays (``jobs.predict`` makes it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplePrediction:
    """A model's prediction for every spot (and grid tile) of one stored sample.

    Rows are the sample's spots, then its tiles when predicted; ``store_rows`` maps each to
    its row in the store's sample tables. ``expression``/``states`` are ensemble means,
    ``*_std`` their spread; ``measured`` the measured target expression of spots (NaN for
    tiles; ``None`` when the sample has no counts); ``fused`` the head's hidden representation
    (``(n, hidden × members)``); ``attention`` one ``(edge_index, weight)`` per attention layer,
    edge_index row 0 the neighbour attended to, row 1 the node attending, weight the mean over
    heads.
    """

    sample_id: str
    model_id: str
    mpp: float
    names: np.ndarray  # (n,) str: barcodes, then tile names
    kinds: np.ndarray  # (n,) str: "spot" or "tile"
    store_rows: np.ndarray  # (n,) int64
    coords_px: np.ndarray  # (n, 2) float32 full-resolution pixels (x, y)
    genes: tuple[str, ...]
    state_names: tuple[str, ...]
    expression: np.ndarray  # (n, genes) float32
    expression_std: np.ndarray
    states: np.ndarray  # (n, states) float32
    states_std: np.ndarray
    measured: np.ndarray | None  # (n, genes) float32
    fused: np.ndarray  # (n, d) float32
    attention: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def n(self) -> int:
        return int(self.names.size)

    @property
    def is_spot(self) -> np.ndarray:
        return self.kinds == "spot"

    @property
    def coords_um(self) -> np.ndarray:
        return self.coords_px.astype(np.float64) * self.mpp
