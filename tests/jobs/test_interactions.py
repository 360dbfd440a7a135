"""The interaction job on fused sets built by hand: labels, refusals and pooled planted structure.

No model is run: a :class:`FusedCohort` is assembled from a lattice with planted TME states, so
each test says exactly what the statistics see.
"""

from __future__ import annotations

import numpy as np
import pytest

from planted_tissue import hex_lattice, planted_labels
from tmescope.errors import TrainingDataError
from tmescope.jobs.fused import FusedCohort, FusedRows
from tmescope.jobs.interactions import InteractionSettings, dominant_states, interactions_of
from tmescope.store.fused import FusedModelInfo, FusedSample

STATES = ("immune", "stroma", "tumour", "vessel")
FAST = InteractionSettings(n_perms=200, crosscorr_perms=19)


def _rows(sample_id: str, states: np.ndarray, coords_um: np.ndarray) -> FusedRows:
    n = len(coords_um)
    data = FusedSample(
        rows=np.arange(n), fused=np.zeros((n, 4), np.float32), states=states.astype(np.float32),
        states_std=np.ones_like(states, dtype=np.float32), expression=np.zeros((n, 0), np.float32),
    )  # fmt: skip
    return FusedRows(
        sample_id=sample_id, mpp=0.5, names=np.array([f"s{i}" for i in range(n)]),
        kinds=np.full(n, "spot"), coords_px=(coords_um / 0.5).astype(np.float32), data=data,
    )  # fmt: skip


def _cohort(samples: dict[str, FusedRows]) -> FusedCohort:
    info = FusedModelInfo(
        model_id="m", model_dir="/m", dim=4, genes=(), state_names=STATES, fingerprint={}
    )
    return FusedCohort(info=info, samples=samples, written=())


def _planted(sample_id: str, seed: int) -> FusedRows:
    """States scoring 1 where the planted label is that state, small noise elsewhere."""
    coords = hex_lattice()
    labels = planted_labels(coords, seed)
    rng = np.random.default_rng(seed)
    states = rng.normal(scale=0.1, size=(len(coords), len(STATES)))
    for j, state in enumerate(STATES):
        states[labels == state, j] += 1.0
    return _rows(sample_id, states, coords)


def test_dominant_states_recover_the_planted_labels() -> None:
    rows = _planted("A", seed=1)
    labels = dominant_states(_cohort({"A": rows}))["A"]
    planted = planted_labels(hex_lattice(), 1)
    assert (labels == planted).mean() > 0.95


def test_pooled_enrichment_finds_the_planted_border_in_every_sample() -> None:
    cohort = _cohort({f"S{i}": _planted(f"S{i}", seed=i) for i in range(3)})
    report = interactions_of(cohort, list(cohort.samples), FAST)
    assert report.cohort is not None and report.categories == STATES
    i, t, v = STATES.index("immune"), STATES.index("tumour"), STATES.index("vessel")
    # Immune lines the tumour in every sample: consistently enriched (Stouffer z combines the
    # samples); vessels were dropped anywhere: no relation to immune cells.
    assert report.cohort.mean_z[i, t] > 1.5 and report.cohort.stouffer_z[i, t] > 3
    assert abs(report.cohort.mean_z[i, v]) < 2
    z = np.stack([s.enrichment.zscore for s in report.samples])
    np.testing.assert_allclose(report.cohort.mean_z, z.mean(axis=0))
    np.testing.assert_allclose(report.cohort.std_z, z.std(axis=0))
    assert report.crosscorr_mean is not None and report.crosscorr_mean.shape == (4, 4)


def test_a_sample_with_one_population_is_refused() -> None:
    coords = hex_lattice(10, 10)
    n = len(coords)
    only_tumour = np.tile([0.0, 0.0, 1.0, 0.0], (n, 1))
    only_stroma = np.tile([0.0, 1.0, 0.0, 0.0], (n, 1))
    cohort = _cohort({"A": _rows("A", only_tumour, coords), "B": _rows("B", only_stroma, coords)})
    with pytest.raises(TrainingDataError, match="population"):
        interactions_of(cohort, ["A"], FAST)


def test_one_state_cannot_be_a_dominant_label() -> None:
    coords = hex_lattice(5, 5)
    rows = _rows("A", np.zeros((len(coords), 1)), coords)
    info = FusedModelInfo(model_id="m", model_dir="/m", dim=4, genes=(), state_names=("tumour",),
                          fingerprint={})  # fmt: skip
    with pytest.raises(TrainingDataError, match="at least 2"):
        dominant_states(FusedCohort(info=info, samples={"A": rows}, written=()))
