"""``SampleRows``: the per-row tables of a sample, known before any embedding is computed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmescope.errors import InvalidParameterError
from tmescope.store.schema import RowKind


@dataclass(frozen=True, eq=False)
class SampleRows:
    """One row per patch: where it is, what it is called, whether it is a spot or a tile.

    ``coords`` ``(n, 2)`` patch centres (x, y) in full-resolution pixels; ``barcodes`` ``(n,)``
    unique non-empty names (spot barcodes; ``"tile_<i>"`` for tiles); ``kind`` ``(n,)``
    :class:`RowKind` codes; ``tissue_fraction`` ``(n,)`` share of each patch under tissue, in
    [0, 1]. Arrays are validated and converted to their stored dtypes on construction.
    """

    coords: np.ndarray  # (n, 2) float32
    barcodes: np.ndarray  # (n,) str
    kind: np.ndarray  # (n,) uint8
    tissue_fraction: np.ndarray  # (n,) float32

    def __post_init__(self) -> None:
        xy = np.asarray(self.coords)
        if xy.ndim != 2 or xy.shape[1] != 2 or xy.dtype.kind not in "fiu":
            raise InvalidParameterError(
                f"coords must be an (n, 2) array of numbers, got {xy.shape} {xy.dtype}"
            )
        if not np.isfinite(xy).all():
            raise InvalidParameterError("coords hold NaN or infinite values")
        n = len(xy)
        object.__setattr__(self, "coords", xy.astype(np.float32))
        object.__setattr__(self, "barcodes", _checked_barcodes(self.barcodes, n))
        object.__setattr__(self, "kind", _checked_kind(self.kind, n))
        fraction = np.asarray(self.tissue_fraction)
        if fraction.shape != (n,) or fraction.dtype.kind not in "fiu":
            raise InvalidParameterError(
                f"tissue_fraction must be ({n},) numbers, got {fraction.shape} {fraction.dtype}"
            )
        if n and not (np.isfinite(fraction).all() and fraction.min() >= 0 and fraction.max() <= 1):
            raise InvalidParameterError("tissue_fraction must lie in [0, 1] (and be finite)")
        object.__setattr__(self, "tissue_fraction", fraction.astype(np.float32))

    @property
    def n(self) -> int:
        return len(self.coords)

    @property
    def n_spots(self) -> int:
        return int((self.kind == RowKind.SPOT).sum())

    @property
    def n_tiles(self) -> int:
        return int((self.kind == RowKind.TILE).sum())

    @property
    def n_cover(self) -> int:
        return int((self.kind == RowKind.COVER).sum())


def _checked_barcodes(barcodes: np.ndarray, n: int) -> np.ndarray:
    names = np.asarray(barcodes)
    if names.shape != (n,) or (n and names.dtype.kind not in "UTO"):
        raise InvalidParameterError(
            f"barcodes must be ({n},) strings, got {names.shape} {names.dtype}"
        )
    names = names.astype(str)
    if n and (min(map(len, names.tolist())) == 0 or len(set(names.tolist())) != n):
        raise InvalidParameterError("barcodes must be non-empty and unique within a sample")
    return names


def _checked_kind(kind: np.ndarray, n: int) -> np.ndarray:
    codes = np.asarray(kind)
    allowed = {int(k) for k in RowKind}
    if (
        codes.shape != (n,)
        or (n and codes.dtype.kind not in "iu")
        or not set(np.unique(codes).tolist()) <= allowed
    ):
        names = ", ".join(f"{k.value} = {k.name.lower()}" for k in RowKind)
        raise InvalidParameterError(
            f"kind must be ({n},) RowKind codes ({names}), got {codes.shape} {codes.dtype}"
        )
    return codes.astype(np.uint8)
