"""Visium HD supervision: measured square bins, not 55 µm discs, tell the sub-spot bins what
they hold (a measured bin as large as a sub-spot bin or larger directly; finer ones summed)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tmescope.fusion.reference import ReferenceProfiles
from tmescope.fusion.subspot_data import spot_compositions, square_supervision

GENES = tuple(f"g{i}" for i in range(8))
# Two populations with four markers each: a marker pseudo-reference needs no cells behind it.
MARKERS = ReferenceProfiles(
    cell_types=("a", "b"),
    genes=GENES,
    profiles=np.repeat(np.eye(2, dtype=np.float32), 4, axis=1) / 4,
    n_cells=(0, 0),
    markers=True,
)


def _lattice(n: int, side: float) -> np.ndarray:
    """Centres of an ``n`` × ``n`` grid of ``side`` squares anchored at pixel (0, 0)."""
    return np.array([(c, r) for r in range(n) for c in range(n)], float) * side + side / 2


def _counts(n: int, seed: int) -> sp.csr_matrix:
    """Counts where unit i leans towards population ``a`` by i's parity."""
    rng = np.random.default_rng(seed)
    lean = np.where(np.arange(n) % 2 == 0, 0.8, 0.2)[:, None]
    mean = 20 * np.hstack([np.repeat(lean, 4, axis=1), np.repeat(1 - lean, 4, axis=1)])
    return sp.csr_matrix(rng.poisson(mean).astype(np.int32))


def test_a_measured_bin_of_the_sub_spot_size_supervises_that_bin_alone() -> None:
    bins = _lattice(4, 16.0)
    units = bins[::-1].copy()  # the same squares, listed in another order
    counts = _counts(len(units), seed=1)
    disc, measured = square_supervision(
        bins, units, counts, GENES, MARKERS, unit_px=16.0, bin_px=16.0
    )
    np.testing.assert_array_equal(disc, np.arange(len(bins))[::-1])
    np.testing.assert_array_equal(measured, spot_compositions(counts, GENES, MARKERS))


def test_a_coarser_measured_bin_holds_the_sub_spot_bins_in_its_square() -> None:
    bins = _lattice(4, 8.0)  # 8 px bins under 16 px measured squares: four each
    units = _lattice(2, 16.0)
    counts = _counts(len(units), seed=2)
    disc, _ = square_supervision(bins, units, counts, GENES, MARKERS, unit_px=16.0, bin_px=8.0)
    expected = (bins[:, 1] // 16) * 2 + bins[:, 0] // 16
    np.testing.assert_array_equal(disc, expected.astype(np.int64))


def test_finer_measured_bins_are_summed_into_the_sub_spot_bin_that_holds_them() -> None:
    bins = _lattice(2, 16.0)[:3]  # the fourth sub-spot bin is not tissue: its units answer to none
    units = _lattice(4, 8.0)
    counts = _counts(len(units), seed=3)
    disc, measured = square_supervision(
        bins, units, counts, GENES, MARKERS, unit_px=8.0, bin_px=16.0
    )
    home = (units[:, 1] // 16) * 2 + units[:, 0] // 16
    first = [int(np.flatnonzero(home == b)[0]) for b in range(3)]
    np.testing.assert_array_equal(disc, first)
    summed = np.vstack([counts[np.flatnonzero(home == b)].sum(axis=0) for b in range(3)])
    np.testing.assert_allclose(
        measured[first], spot_compositions(summed, GENES, MARKERS), atol=1e-6
    )
    others = np.setdiff1d(np.arange(len(units)), first)
    assert np.isnan(measured[others]).all()
