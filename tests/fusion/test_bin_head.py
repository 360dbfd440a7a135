"""The weakly supervised sub-spot head on a planted case: bins recovered from spot aggregates,
and trained on minibatches streamed from disk as well as on rows held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError
from tmescope.fusion.bin_head import (
    BinHeadConfig,
    WeakSample,
    fit_bin_heads,
    fit_bin_heads_streamed,
    predict_shares,
    standardise_per_sample,
)
from tmescope.fusion.bin_rows import DiskRows, MemoryRows, SpotRows, gather, write_rows

PER_DISC = 9


def planted(seed: int, n_spots: int = 150) -> tuple[WeakSample, np.ndarray]:
    """Bins of three pure types, their type readable from their features; only spot means
    (over discs of nine bins of random types) are given."""
    rng = np.random.default_rng(seed)
    n = n_spots * PER_DISC
    kind = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    x = centres[kind] + rng.normal(scale=0.5, size=(n, 4))
    truth = np.eye(3)[kind]
    discs = sp.csr_matrix(
        (np.full(n, 1.0 / PER_DISC), (np.repeat(np.arange(n_spots), PER_DISC), np.arange(n))),
        shape=(n_spots, n),
    )
    sample = WeakSample(x=standardise_per_sample(x), discs=discs, shares=discs @ truth)
    return sample, kind


def test_bins_are_recovered_from_their_spot_aggregates_alone() -> None:
    train, _ = planted(0)
    config = BinHeadConfig(hidden=16, dropout=0.0, steps=300, n_members=2, lr=1e-2)
    heads = fit_bin_heads([train], config=config, seed=1)
    test, kind = planted(1)
    mean, std = predict_shares(heads, test.x)
    assert mean.shape == std.shape == (len(kind), 3)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-5)
    assert (mean.argmax(axis=1) == kind).mean() > 0.9  # no bin was ever labelled
    assert (std >= 0).all() and std.max() > 0  # members differ


def test_spots_without_a_composition_are_left_out_and_bad_settings_refused() -> None:
    sample, _ = planted(0, n_spots=20)
    shares = sample.shares.copy()
    shares[:] = np.nan
    with pytest.raises(InvalidParameterError, match="no spot with a composition"):
        fit_bin_heads([WeakSample(sample.x, sample.discs, shares)])
    with pytest.raises(InvalidParameterError, match="steps"):
        BinHeadConfig(steps=0)
    with pytest.raises(InvalidParameterError, match="discs must be"):
        WeakSample(sample.x[:5], sample.discs, sample.shares)


def test_traces_below_the_floor_are_dropped_and_rows_stay_compositions() -> None:
    from tmescope.fusion.subspot_data import without_traces

    shares = np.array([[0.5, 0.47, 0.03], [0.04, 0.03, 0.02], [np.nan, np.nan, np.nan]])
    out = without_traces(shares, floor=0.05)
    np.testing.assert_allclose(out[0], [0.5 / 0.97, 0.47 / 0.97, 0.0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [1.0, 0.0, 0.0])  # all below: the largest stays
    assert np.isnan(out[2]).all()


def rows_of(sample: WeakSample, name: str) -> SpotRows:
    """The planted sample's rows: its bins are already in spot order, nine to a disc."""
    n_spots = sample.shares.shape[0]
    starts = np.arange(n_spots + 1, dtype=np.int64) * PER_DISC
    area = np.full(len(sample.x), 1.0 / PER_DISC, dtype=np.float32)
    return SpotRows(
        name, sample.x.astype(np.float32), starts, sample.shares.astype(np.float32), area
    )


def test_streamed_training_equals_training_in_memory_when_a_batch_holds_every_spot() -> None:
    # Two samples of different sizes: each sample's spots weigh as one sample, as in memory.
    (a, _), (b, _) = planted(0, n_spots=60), planted(2, n_spots=25)
    config = BinHeadConfig(hidden=16, dropout=0.0, steps=60, n_members=2, lr=1e-2)
    in_memory = fit_bin_heads([a, b], config=config, seed=3)
    streamed = fit_bin_heads_streamed(
        MemoryRows([rows_of(a, "a"), rows_of(b, "b")]), config=config, seed=3
    )
    test, _ = planted(1, n_spots=40)
    for old, new in zip(in_memory, streamed, strict=True):
        expected, _ = predict_shares([old], test.x)
        got, _ = predict_shares([new], test.x)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_rows_on_disk_give_the_batches_of_rows_in_memory(tmp_path: Path) -> None:
    (a, _), (b, _) = planted(0, n_spots=50), planted(2, n_spots=30)
    rows = [rows_of(a, "a"), rows_of(b, "b")]
    folders = [write_rows(tmp_path / r.sample_id, r) for r in rows]
    picks = [np.array([0, 3, 49]), np.array([7, 8])]
    memory, disk = MemoryRows(rows).batch(picks), DiskRows(folders).batch(picks)
    for name in ("x", "owner", "shares", "weights", "area"):
        np.testing.assert_array_equal(getattr(disk, name), getattr(memory, name))
    assert memory.x.shape == (5 * PER_DISC, a.x.shape[1])
    np.testing.assert_allclose(memory.weights, [1 / 50] * 3 + [1 / 30] * 2)
    # A minibatch smaller than the cohort: the same steps from disk as from memory.
    config = BinHeadConfig(hidden=8, dropout=0.0, steps=20, n_members=1, batch_spots=16)
    test, _ = planted(1, n_spots=10)
    from_memory = predict_shares(fit_bin_heads_streamed(MemoryRows(rows), config=config), test.x)
    from_disk = predict_shares(fit_bin_heads_streamed(DiskRows(folders), config=config), test.x)
    np.testing.assert_allclose(from_disk[0], from_memory[0], atol=1e-6)


def test_minibatches_recover_the_bins_from_their_spot_aggregates() -> None:
    train, _ = planted(0)
    config = BinHeadConfig(hidden=16, dropout=0.0, steps=300, n_members=1, lr=1e-2, batch_spots=32)
    heads = fit_bin_heads_streamed(MemoryRows([rows_of(train, "a")]), config=config, seed=1)
    test, kind = planted(1)
    mean, _ = predict_shares(heads, test.x)
    assert (mean.argmax(axis=1) == kind).mean() > 0.9


def test_gather_reads_each_spots_bins_and_bad_rows_are_refused() -> None:
    x = np.arange(12, dtype=np.float32)[:, None]
    starts = np.array([0, 2, 2, 7, 12])  # spot 1 has no bin
    rows, owner = gather(x, starts, np.array([0, 1, 3]))
    np.testing.assert_array_equal(rows.ravel(), [0, 1, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(owner, [0, 0, 2, 2, 2, 2, 2])
    with pytest.raises(InvalidParameterError, match="starts must be"):
        SpotRows("s", x, starts[:-1], np.zeros((4, 2), np.float32), np.ones(12, np.float32))
    with pytest.raises(InvalidParameterError, match="area must be"):
        SpotRows("s", x, starts, np.zeros((4, 2), np.float32), np.ones(11, np.float32))
    with pytest.raises(InvalidParameterError, match="batch_spots"):
        BinHeadConfig(batch_spots=0)


def planted_densities(seed: int, n_spots: int = 200) -> tuple[WeakSample, np.ndarray, np.ndarray]:
    """As :func:`planted`, but a bin holds one cell or five (its features say which), and a
    spot measures shares of its *cells*: the dense bins weigh five times the sparse ones."""
    rng = np.random.default_rng(seed)
    n = n_spots * PER_DISC
    kind = rng.integers(0, 3, n)
    cells = np.where(rng.random(n) < 0.5, 1.0, 5.0)
    centres = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    x = np.c_[centres[kind], cells] + rng.normal(scale=0.3, size=(n, 4))
    owner = np.repeat(np.arange(n_spots), PER_DISC)
    discs = sp.csr_matrix((np.full(n, 1.0 / PER_DISC), (owner, np.arange(n))), shape=(n_spots, n))
    counted = sp.csr_matrix((cells, (owner, np.arange(n))), shape=(n_spots, n))
    shares = (counted @ np.eye(3)[kind]) / np.asarray(counted.sum(axis=1))
    return WeakSample(x=standardise_per_sample(x), discs=discs, shares=shares), kind, cells


def test_a_cell_weighted_head_learns_which_bins_hold_more_cells_from_the_spots_alone() -> None:
    from tmescope.fusion.bin_head import member_outputs

    train, _, _ = planted_densities(0)
    test, kind, cells = planted_densities(1)
    fitted = {}
    for weighted in (True, False):
        config = BinHeadConfig(
            hidden=16, dropout=0.0, steps=300, n_members=1, lr=1e-2, cell_weighted=weighted
        )
        fitted[weighted] = fit_bin_heads([train], config=config, seed=1)
    logits, density = member_outputs(fitted[True], test.x)
    assert density is not None and density.shape == (len(kind),)
    assert np.isclose(density.mean(), 1.0)
    # No bin's count was given: the spots' shares of cells alone tell dense bins from sparse.
    assert np.median(density[cells == 5]) > 3 * np.median(density[cells == 1])
    assert (logits[0].argmax(axis=1) == kind).mean() > 0.9
    # The spots' shares, as each head aggregates its bins: weighing by density fits them better.
    errors = {}
    for weighted, heads in fitted.items():
        shares, _ = predict_shares(heads, test.x)
        weight = density if weighted else np.ones(len(kind))
        summed = test.discs @ (weight[:, None] * shares)
        aggregate = summed / (test.discs @ weight)[:, None]
        errors[weighted] = float(np.abs(aggregate - test.shares).mean())
    assert errors[True] < 0.5 * errors[False]
    _, none = member_outputs(fitted[False], test.x)
    assert none is None
