"""Saved sub-spot maps and their pair statistics in the store: read back whole, fresh while the
sample is unchanged, verified, and kept only for the version of the maps they came from."""

from __future__ import annotations

import numpy as np
import pytest
from cohort_factories import make_sample
from test_bins import make_bins, write_with_bins

from tmescope.errors import InvalidParameterError
from tmescope.store import CohortStore
from tmescope.store.maps import (
    MapsModelInfo,
    SavedMaps,
    fresh_maps,
    maps_directory,
    read_maps,
    write_maps,
    write_maps_info,
)
from tmescope.store.pair_stats import MATRICES, read_pair_stats, write_pair_stats

MODEL = "m0123456789a"
POPULATIONS = ("tumour", "t_cell", "fibroblast")


def _maps(n_bins: int, seed: int = 0) -> SavedMaps:
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.ones(len(POPULATIONS)), size=n_bins).astype(np.float32)
    return SavedMaps(
        reconciled=shares, image=shares[:, ::-1].copy(), std=shares / 10,
        disc=rng.integers(-1, 40, n_bins).astype(np.int32), temperature=1.5,
        measured_spots=40, bin_um=16.0, spread=0.25,
    )  # fmt: skip


@pytest.fixture
def with_bins(store: CohortStore) -> CohortStore:
    data = make_sample(seed=0)
    write_with_bins(store, "S1", data, make_bins(data))
    write_maps_info(
        store,
        MapsModelInfo(
            model_id=MODEL, model_dir="/m", bin_um=16.0, populations=POPULATIONS,
            populations_from="reference", fingerprint=store.fingerprint,
        ),
    )  # fmt: skip
    return store


def test_maps_read_back_bit_for_bit_and_pass_verify(with_bins: CohortStore) -> None:
    maps = _maps(with_bins.sample_record("S1").bins.n_bins)  # type: ignore[union-attr]
    created = write_maps(with_bins, MODEL, "S1", maps)
    back = read_maps(with_bins, MODEL, "S1")
    for name in ("reconciled", "image", "std", "disc"):
        np.testing.assert_array_equal(getattr(back, name), getattr(maps, name))
    assert back.temperature == 1.5 and back.spread == 0.25 and back.version == created
    assert set(fresh_maps(with_bins, MODEL)) == {"S1"} and with_bins.verify() == []
    # A set written before the spread was chosen (no such attribute) spread its corrections in full.
    import zarr

    group = zarr.open_group(maps_directory(with_bins, MODEL) / "S1", mode="r+")
    del group.attrs["spread"]
    assert read_maps(with_bins, MODEL, "S1").spread == 1.0


def test_a_set_that_does_not_fit_its_sample_is_one_problem(with_bins: CohortStore) -> None:
    write_maps(with_bins, MODEL, "S1", _maps(7))
    (problem,) = with_bins.verify()
    assert problem.startswith(f"maps/{MODEL}/S1: bins do not fit") and "delete it" in problem
    with pytest.raises(InvalidParameterError, match="finite"):
        bad = _maps(7)
        bad.image[0, 0] = np.nan
        write_maps(with_bins, MODEL, "S1", bad)


def test_pair_statistics_belong_to_one_version_of_the_maps(with_bins: CohortStore) -> None:
    n_bins = with_bins.sample_record("S1").bins.n_bins  # type: ignore[union-attr]
    created = write_maps(with_bins, MODEL, "S1", _maps(n_bins))
    params = {"radius_um": 30.0, "n_shifts": 19, "seed": 0}
    matrices = {name: np.full((3, 3), i + 0.5) for i, name in enumerate(MATRICES)}
    write_pair_stats(with_bins, MODEL, "S1", params=params, maps_version=created,
                     matrices=matrices, attrs={"n": n_bins})  # fmt: skip
    found = read_pair_stats(with_bins, MODEL, "S1", params=params, maps_version=created)
    assert found is not None and found[1]["n"] == n_bins
    np.testing.assert_array_equal(found[0]["zscore"], matrices["zscore"])
    other = {**params, "seed": 1}
    assert read_pair_stats(with_bins, MODEL, "S1", params=other, maps_version=created) is None
    assert with_bins.verify() == []
    # Maps written again (a sample embedded again, say) start with no statistics.
    again = write_maps(with_bins, MODEL, "S1", _maps(n_bins, seed=1))
    assert read_pair_stats(with_bins, MODEL, "S1", params=params, maps_version=again) is None
