"""Sub-spot features: the encoder's patch tokens pooled to square bins (e.g. 16 µm) over tissue.

A foundation model sees a patch (112 µm for a 224 px ViT at 0.5 µm/px) as a grid of tokens
(16 µm for 32 px tokens, 8 µm for 16 px ones). Bins lie on one lattice per sample, anchored at
full-resolution pixel (0, 0), so bins of neighbouring patches line up. Each tissue bin is
*owned* by the patch whose centre is nearest to its own (a Voronoi partition of the patches):
its feature is the area-weighted mean of that patch's tokens over the bin's square, so it is
computed once, from the patch that sees it best-centred, when that patch's row chunk is
embedded. Bins of one row chunk are therefore written with that chunk, and a killed run resumes
to identical features.

Token features wider than :data:`MAX_DIM` are reduced by a fixed random orthogonal projection
(seeded, data independent): fixed per store, part of its fingerprint, and it preserves distances
between features up to small distortions (Johnson–Lindenstrauss), whatever the cohort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tmescope.errors import InvalidParameterError

MAX_DIM = 256  # stored sub-spot features are at most this wide
DEFAULT_BIN_UM = 16.0
MIN_TISSUE = 0.5  # a bin is tissue when at least half its square is
REDUCTION_SEED = 0


@dataclass(frozen=True)
class SubspotSpec:
    """How a store's sub-spot features are made: bin size, token geometry and reduction.

    ``token_dim`` is the encoder's token width, ``dim`` the stored width (``token_dim`` when it
    is at most :data:`MAX_DIM`, else :data:`MAX_DIM` through the projection of ``seed``).
    """

    bin_um: float
    token_um: float
    token_dim: int
    dim: int
    seed: int = REDUCTION_SEED

    @property
    def reduction(self) -> str:
        return "none" if self.dim == self.token_dim else "random-orthogonal"

    def to_json(self) -> dict[str, object]:
        return {
            "bin_um": self.bin_um,
            "token_um": self.token_um,
            "token_dim": self.token_dim,
            "dim": self.dim,
            "reduction": self.reduction,
            "seed": self.seed,
        }


def subspot_spec(*, bin_um: float, patch_um: float, grid: int, token_dim: int) -> SubspotSpec:
    """The spec for bins of ``bin_um`` from ``grid`` × ``grid`` tokens over a ``patch_um`` patch.

    A bin finer than one token would only repeat the token: refused, naming the token size.
    """
    token_um = patch_um / grid
    if not (isinstance(bin_um, int | float) and math.isfinite(bin_um) and bin_um > 0):
        raise InvalidParameterError(
            f"--subspot must be a bin size in µm (or 0: off), got {bin_um!r}"
        )
    if bin_um < token_um - 1e-6:
        raise InvalidParameterError(
            f"--subspot {bin_um:g} µm is finer than this encoder's tokens ({token_um:g} µm: "
            f"{grid} × {grid} tokens over a {patch_um:g} µm patch); use --subspot "
            f"{math.ceil(token_um - 1e-6):g} or more"
        )
    return SubspotSpec(
        bin_um=float(bin_um), token_um=float(token_um), token_dim=int(token_dim),
        dim=min(int(token_dim), MAX_DIM),
    )  # fmt: skip


def reduction_matrix(spec: SubspotSpec) -> np.ndarray | None:
    """``(token_dim, dim)`` float32 orthonormal columns, or ``None`` when nothing is reduced."""
    if spec.dim == spec.token_dim:
        return None
    rng = np.random.default_rng(spec.seed)
    gaussian = rng.standard_normal((spec.token_dim, spec.dim))
    q, r = np.linalg.qr(gaussian)
    q *= np.sign(np.diag(r))[None, :]  # a unique Q: the same matrix with any LAPACK
    return np.ascontiguousarray(q, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class BinPlan:
    """The tissue bins of one sample, ordered by the row of the patch that owns them.

    ``coords`` are bin centres ``(n_bins, 2)`` in full-resolution pixels ``(x, y)``; ``cells``
    the bins' ``(column, row)`` on the sample's lattice; ``owner`` the patch row each bin is
    pooled from; ``bin_px`` the bin side in full-resolution pixels.
    """

    coords: np.ndarray  # (n_bins, 2) float32
    cells: np.ndarray  # (n_bins, 2) int32
    owner: np.ndarray  # (n_bins,) int64, ascending
    bin_px: float

    def __len__(self) -> int:
        return int(self.owner.size)

    def chunk_offsets(self, *, n_rows: int, chunk_rows: int) -> np.ndarray:
        """``(n_chunks + 1,)`` int64: the bins of row chunk ``c`` are ``offsets[c]:offsets[c+1]``."""
        edges = np.arange(0, n_rows + chunk_rows, chunk_rows)[: math.ceil(n_rows / chunk_rows) + 1]
        edges[-1] = n_rows
        return np.searchsorted(self.owner, edges, side="left").astype(np.int64)


def plan_bins(
    centres: np.ndarray,
    *,
    patch_px: float,
    bin_px: float,
    tissue: object,
    min_tissue: float = MIN_TISSUE,
) -> BinPlan:
    """Tissue bins inside at least one patch, each owned by the patch nearest its centre.

    ``centres`` are the patches' full-resolution centres in row order; ``tissue`` has a
    ``fractions(centres, side=)`` method (an :class:`~tmescope.embed.tissue_mask.TissueMask`).
    """
    from scipy.spatial import cKDTree

    half = patch_px / 2
    cells, xy = _lattice(centres.min(axis=0) - half, centres.max(axis=0) + half, bin_px)
    tree = cKDTree(centres)
    distance, _ = tree.query(xy, p=np.inf)  # Chebyshev: inside a square patch when <= half
    xy, cells = xy[distance <= half], cells[distance <= half]
    keep = tissue.fractions(xy, side=bin_px) >= min_tissue  # type: ignore[attr-defined]
    xy, cells = xy[keep], cells[keep]
    nearest = _nearest_containing(tree, centres, xy, half=half)
    order = np.lexsort((cells[:, 0], cells[:, 1], nearest))
    return BinPlan(
        coords=xy[order].astype(np.float32),
        cells=cells[order].astype(np.int32),
        owner=nearest[order].astype(np.int64),
        bin_px=float(bin_px),
    )


def cover_centres(
    centres: np.ndarray,
    *,
    patch_px: float,
    bin_px: float,
    tissue: object,
    region: tuple[float, float, float, float],
    min_tissue: float = MIN_TISSUE,
) -> np.ndarray:
    """Centres of the extra patches that give every tissue bin of ``region`` a patch.

    ``region`` is ``(x0, y0, x1, y1)`` in full-resolution pixels (the capture area). Tissue bins
    whose centre no patch of ``centres`` contains are gathered into squares of a lattice of
    ``patch_px`` (anchored at (0, 0), so covers never overlap each other); each square holding
    one gets a patch at its centre. Returns ``(m, 2)`` float64, in raster order.
    """
    from scipy.spatial import cKDTree

    _, xy = _lattice(np.asarray(region[:2], float), np.asarray(region[2:], float), bin_px)
    xy = xy[tissue.fractions(xy, side=bin_px) >= min_tissue]  # type: ignore[attr-defined]
    if len(centres) and len(xy):
        distance, _ = cKDTree(centres).query(xy, p=np.inf)
        xy = xy[distance > patch_px / 2]
    if not len(xy):
        return np.zeros((0, 2))
    squares = np.unique(np.floor(xy / patch_px).astype(np.int64), axis=0)  # (column, row)
    squares = squares[np.lexsort((squares[:, 0], squares[:, 1]))]
    return (squares + 0.5) * patch_px


def _lattice(low: np.ndarray, high: np.ndarray, bin_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The sample lattice's cells ``(m, 2)`` (column, row) and their centres over a box."""
    first = np.floor(low / bin_px).astype(np.int64)
    last = np.ceil(high / bin_px).astype(np.int64)
    cols, rows = np.meshgrid(np.arange(first[0], last[0]), np.arange(first[1], last[1]))
    cells = np.column_stack([cols.ravel(), rows.ravel()])
    return cells, (cells + 0.5) * bin_px


def _nearest_containing(
    tree: object, centres: np.ndarray, xy: np.ndarray, *, half: float
) -> np.ndarray:
    """Per bin centre, the Euclidean-nearest patch among those whose square contains it."""
    k = min(8, len(centres))
    _, candidates = tree.query(xy, k=k)  # type: ignore[attr-defined]  # (n, k), nearest first
    candidates = np.asarray(candidates).reshape(len(xy), k)
    offsets = np.abs(centres[candidates] - xy[:, None, :]).max(axis=2)  # (n, k) Chebyshev
    contains = offsets <= half
    first = contains.argmax(axis=1)
    chosen = candidates[np.arange(len(xy)), first]
    missing = ~contains.any(axis=1)  # none of the k nearest contains it: the Chebyshev nearest
    if missing.any():
        chosen[missing] = tree.query(xy[missing], p=np.inf)[1]  # type: ignore[attr-defined]
    return chosen


def pool_weights(
    offsets: np.ndarray, *, bin_px: float, patch_px: float, grid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Separable overlap weights of bins with a patch's token grid.

    ``offsets`` ``(n, 2)`` are bin centres minus their patch's centre (full-res px). Returns
    ``(wx, wy)``, each ``(n, grid)``: the length of the bin's side that each token column (row)
    covers, clipped to the patch; a bin's weights sum to the area it shares with the patch.
    """
    token = patch_px / grid
    edges = np.arange(grid + 1) * token - patch_px / 2  # (grid + 1,) token boundaries
    lo = offsets - bin_px / 2  # (n, 2)
    hi = offsets + bin_px / 2
    start = np.maximum(lo[:, :, None], edges[None, None, :-1])  # (n, 2, grid)
    stop = np.minimum(hi[:, :, None], edges[None, None, 1:])
    overlap = np.clip(stop - start, 0.0, None)
    return overlap[:, 0], overlap[:, 1]


class BinPooler:
    """Pools the token grids of consecutive patch rows into the features of the bins they own.

    ``centres`` are the patches' full-resolution centres (row order), ``plan`` the sample's
    bins; ``projection`` was already applied to the grids (see ``GridEmbedder``).
    """

    def __init__(self, plan: BinPlan, centres: np.ndarray, *, patch_px: float) -> None:
        self.plan = plan
        self.centres = np.asarray(centres, dtype=np.float64)
        self.patch_px = float(patch_px)
        # Bins of patch row r: starts[r]:starts[r + 1] (bins are sorted by owner).
        self._starts = np.searchsorted(plan.owner, np.arange(len(centres) + 1), side="left")

    def bins_of(self, rows: slice) -> slice:
        """The bins owned by patch rows ``rows``: one contiguous range."""
        return slice(int(self._starts[rows.start]), int(self._starts[rows.stop]))

    def pool(self, rows: slice, grids: np.ndarray) -> np.ndarray:
        """``(n, k)`` float32 features of the bins rows ``rows`` own, from their ``(B, g, g, k)``
        token grids."""
        if grids.shape[0] != rows.stop - rows.start or grids.shape[1] != grids.shape[2]:
            raise ValueError(f"{grids.shape} token grids for rows {rows}: one square grid a row")
        import scipy.sparse as sp

        span = self.bins_of(rows)
        n, grid, width = span.stop - span.start, grids.shape[1], grids.shape[3]
        if n == 0:
            return np.empty((0, width), dtype=np.float32)
        owner = self.plan.owner[span] - rows.start  # (n,) the bin's patch within the batch
        offsets = self.plan.coords[span].astype(np.float64) - self.centres[self.plan.owner[span]]
        wx, wy = pool_weights(offsets, bin_px=self.plan.bin_px, patch_px=self.patch_px, grid=grid)
        weight = (wy[:, :, None] * wx[:, None, :]).reshape(n, grid * grid)  # (n, g²)
        total = weight.sum(axis=1)
        if np.any(total <= 0):
            raise ValueError("a bin shares no area with its patch: the bin plan is inconsistent")
        # One sparse product for the whole batch: bin k reads the g² tokens of its own patch.
        columns = owner[:, None] * grid * grid + np.arange(grid * grid)[None, :]
        pooling = sp.csr_matrix(
            ((weight / total[:, None]).ravel(), columns.ravel(), np.arange(n + 1) * grid * grid),
            shape=(n, grids.shape[0] * grid * grid),
        )
        tokens = np.asarray(grids, dtype=np.float32).reshape(-1, width)
        return np.asarray(pooling @ tokens, dtype=np.float32)
