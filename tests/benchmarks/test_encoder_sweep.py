"""The simulated encoder of benchmarks/encoder_sweep.py: compositions, features, the store copy."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from tmescope.store import CohortStore
from tmescope.store.bins import SampleBins

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "store"))  # the store tests' sample factory

from cohort_factories import FINGERPRINT, make_sample  # noqa: E402


def _load() -> ModuleType:
    path = TESTS.parent / "benchmarks" / "encoder_sweep.py"
    spec = importlib.util.spec_from_file_location("encoder_sweep", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep = _load()


def test_a_bin_without_cells_takes_its_nearest_bins_composition() -> None:
    xy = np.array([[10.0, 10.0], [42.0, 10.0], [74.0, 10.0]])  # 32 px bins in a row
    cells = pd.DataFrame(
        {"x": [5.0, 12.0, 80.0], "y": [8.0, 14.0, 9.0], "cell_type": ["a", "b", "b"]}
    )
    composition, full = sweep.bin_compositions(xy, cells, ["a", "b"], 32.0)
    np.testing.assert_array_equal(full, [True, False, True])
    np.testing.assert_allclose(composition, [[0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])


def test_features_carry_the_composition_at_the_asked_signal_to_noise() -> None:
    rng = np.random.default_rng(0)
    composition = rng.dirichlet(np.ones(5), size=20_000)
    mixing = sweep.mixing_matrix(5, 64)
    assert mixing.shape == (5, 64)
    np.testing.assert_array_equal(mixing, sweep.mixing_matrix(5, 64))  # one fixed encoder
    exact = sweep.simulated_features(composition, mixing, sd=0.0, seed=1)
    assert exact.dtype == np.float16
    np.testing.assert_allclose(exact, composition @ mixing, atol=2e-3)
    signal = composition @ mixing
    sd = sweep.noise_sd([signal[:10_000], signal[10_000:]], 0.5)
    noisy = sweep.simulated_features(composition, mixing, sd=sd, seed=1).astype(float)
    snr = signal.var(axis=0).mean() / (noisy - signal).var(axis=0).mean()
    assert snr == pytest.approx(0.5, rel=0.02)
    assert sweep.noise_sd([signal], math.inf) == 0.0
    assert sweep.level_name(math.inf) == "inf" and sweep.level_name(0.25) == "0.25"


def test_written_features_read_back_in_bin_order(tmp_path: Path) -> None:
    data = make_sample(n_spots=40, n_tiles=0)
    owner = np.repeat(np.arange(data.rows.n), 2)
    owner = owner[(owner < 16) | (owner >= 32)]  # row chunk 1 owns no bin
    bins = SampleBins(
        coords=np.c_[np.arange(owner.size) * 40.0, np.zeros(owner.size)],
        cells=np.c_[np.arange(owner.size), np.zeros(owner.size)],
        owner=owner,
        offsets=np.searchsorted(owner, [0, 16, 32, data.rows.n]),
        bin_um=16.0,
        bin_px=40.0,
    )
    spec = {"bin_um": 16.0, "token_um": 16.0, "token_dim": 4, "dim": 4, "reduction": "none"}
    store = CohortStore.open(tmp_path / "c.zarr", mode="a", fingerprint=FINGERPRINT)
    writer = store.begin_sample(
        "S1", rows=data.rows, meta=data.meta, dim=data.embeddings.shape[1], chunk_rows=16,
        bins=bins, bin_dim=4, bin_spec=spec,
    )  # fmt: skip
    assert writer is not None
    with writer:
        for i in writer.pending_chunks():
            owned = writer.bin_range(i)
            zeros = np.zeros((owned.stop - owned.start, 4), np.float32)
            writer.write_chunk(i, data.embeddings[writer.rows(i)], zeros)
        writer.finish(data.counts)
    features = np.arange(bins.n * 4, dtype=np.float16).reshape(bins.n, 4) / 8
    sweep.write_bin_features(tmp_path / "c.zarr", "S1", features)
    reopened = CohortStore.open(tmp_path / "c.zarr", mode="r")
    np.testing.assert_array_equal(reopened.read_bin_features("S1"), features)
    assert reopened.verify() == []
    with pytest.raises(ValueError, match="do not fit"):
        sweep.write_bin_features(tmp_path / "c.zarr", "S1", features[:, :2])
