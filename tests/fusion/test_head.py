"""The fusion head (head.py) and its training, ensembles and persistence (train.py).

Graphs are small hex lattices whose targets depend on the *neighbours'* embeddings, so a head
that ignores its edges cannot fit them; every fit uses a tiny config to stay within seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from tmescope.errors import InvalidParameterError, ModelMismatchError, TrainingDataError
from tmescope.fusion.head import FusionHead, HeadConfig
from tmescope.fusion.preprocessing import fit_transform, partition_nodes
from tmescope.fusion.train import (
    Ensemble,
    GraphSample,
    TrainedHead,
    fit_ensemble,
    fit_head,
)

SMALL = HeadConfig(
    hidden=16,
    heads=2,
    dropout=0.0,
    lr=1e-2,
    max_steps=80,
    patience=20,
    pca_dim=None,
    sample_norm="none",
)


def hex_lattice(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2)`` Visium-like centres in µm (100 µm pitch) and their symmetric 6-neighbour edges."""
    r, c = np.mgrid[0:rows, 0:cols]
    c = 2 * c + (r % 2)
    xy = np.stack([c.ravel() * 50.0, r.ravel() * 86.6], axis=1)
    pairs = cKDTree(xy).query_pairs(r=125.0, output_type="ndarray")
    return xy, np.concatenate([pairs.T, pairs.T[::-1]], axis=1).astype(np.int64)


def make_sample(
    seed: int, *, rows: int = 12, cols: int = 12, d: int = 8, t: int = 3
) -> GraphSample:
    """Targets: a fixed linear map of the *mean of each node's neighbours'* embeddings."""
    rng = np.random.default_rng(seed)
    _, edges = hex_lattice(rows, cols)
    n = rows * cols
    x = rng.normal(size=(n, d)).astype(np.float32)
    summed = np.zeros_like(x)
    np.add.at(summed, edges[1], x[edges[0]])
    degree = np.bincount(edges[1], minlength=n)[:, None]
    weights = np.random.default_rng(99).normal(size=(d, t))  # the same map in every sample
    y = (summed / degree) @ weights + 0.05 * rng.normal(size=(n, t))
    return GraphSample(f"s{seed}", x, edges, (3.0 * y + 2.0).astype(np.float32), np.ones(n, bool))


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny graphs gain nothing from threads, and on a busy machine OpenMP barriers make them crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cohort() -> list[GraphSample]:
    return [make_sample(i) for i in range(4)]


@pytest.fixture(scope="module")
def head(cohort: list[GraphSample]) -> TrainedHead:
    return fit_head(cohort[:2], cohort[2:3], config=SMALL, seed=3)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# --- HeadConfig and FusionHead ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"hidden": 30, "heads": 4},
        {"dropout": 1.0},
        {"lr": 0.0},
        {"max_steps": 0},
        {"sample_norm": "batch"},
        {"pca_dim": 0},
        {"weight_decay": -1.0},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        HeadConfig(**bad)  # type: ignore[arg-type]


def test_config_round_trips_and_rejects_unknown_keys() -> None:
    assert HeadConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(InvalidParameterError, match="unknown"):
        HeadConfig.from_dict({**SMALL.to_dict(), "layers": 3})


def test_forward_shapes_and_attention_is_a_softmax_over_incoming_edges() -> None:
    _, edges = hex_lattice(5, 6)
    n = 30
    module = FusionHead(7, 4, hidden=16, heads=2).eval()
    x = torch.randn(n, 7)
    plain = module(x, torch.from_numpy(edges))
    trace = module(x, torch.from_numpy(edges), return_attention=True)
    assert plain.shape == (n, 4)
    torch.testing.assert_close(trace.prediction, plain)
    assert trace.fused.shape == (n, 16)
    assert len(trace.attention) == 2
    for looped, alpha in trace.attention:
        assert looped.shape == (2, edges.shape[1] + n)  # one self loop per node added
        assert alpha.shape == (edges.shape[1] + n, 2)
        incoming = torch.zeros(n, 2).index_add_(0, looped[1], alpha)
        torch.testing.assert_close(incoming, torch.ones(n, 2))


def test_receive_only_tiles_leave_spot_predictions_unchanged() -> None:
    """Grid tiles get edges from spots but send none: adding them must not move any spot."""
    xy, edges = hex_lattice(6, 6)
    n_spots, n_tiles = 36, 10
    rng = np.random.default_rng(0)
    tile_xy = rng.uniform(0, xy.max(axis=0), size=(n_tiles, 2))
    _, nearest = cKDTree(xy).query(tile_xy, k=6)  # (n_tiles, 6) spots feeding each tile
    tile_edges = np.stack([nearest.ravel(), np.repeat(np.arange(n_spots, n_spots + n_tiles), 6)])
    module = FusionHead(5, 3, hidden=8, heads=2).eval()
    x = torch.randn(n_spots + n_tiles, 5)
    spots_only = module(x[:n_spots], torch.from_numpy(edges))
    with_tiles = module(x, torch.from_numpy(np.concatenate([edges, tile_edges], axis=1)))
    torch.testing.assert_close(with_tiles[:n_spots], spots_only)
    assert torch.isfinite(with_tiles[n_spots:]).all()
    # Each tile's first-layer attention covers its 6 spots plus itself.
    trace = module(
        x, torch.from_numpy(np.concatenate([edges, tile_edges], axis=1)), return_attention=True
    )
    looped = trace.attention[0][0]
    assert (
        np.bincount(looped[1].numpy(), minlength=n_spots + n_tiles)[n_spots:].tolist()
        == [7] * n_tiles
    )


# --- fitting ---------------------------------------------------------------------------------


def test_head_learns_a_target_that_needs_the_neighbours(
    cohort: list[GraphSample], head: TrainedHead
) -> None:
    test = cohort[3]
    output = head.predict(test)
    assert output.mean.shape == (test.x.shape[0], 3)
    assert output.fused.shape == (test.x.shape[0], 16)
    assert pearson(output.mean, test.y) > 0.9  # type: ignore[arg-type]
    # Without edges the same head only sees each node itself, which does not hold the answer.
    alone = GraphSample("alone", test.x, np.zeros((2, 0), np.int64))
    assert pearson(head.predict(alone).mean, test.y) < 0.5  # type: ignore[arg-type]


def test_early_stopping_restores_the_best_epoch(
    cohort: list[GraphSample], head: TrainedHead
) -> None:
    history = head.history
    assert history.best_epoch == int(np.argmin(history.val_loss))
    assert len(history.val_loss) == len(history.train_loss) == len(history.steps)
    assert history.steps[-1] <= SMALL.max_steps
    assert np.all(np.diff(history.steps) == 2)  # two training samples: two steps per epoch
    # The restored weights reproduce the best validation loss, in standardised units.
    val = cohort[2]
    scaled = (head.predict(val).mean - head.transform.y_mean) / head.transform.y_std
    reference = head.transform.scale_targets(val.y)  # type: ignore[arg-type]
    assert float(np.mean((scaled - reference) ** 2)) == pytest.approx(
        history.best_val_loss, rel=1e-4
    )


def test_stops_after_patience_steps_without_progress(cohort: list[GraphSample]) -> None:
    config = HeadConfig(
        hidden=8, heads=2, dropout=0.0, lr=0.3, max_steps=300, patience=6, pca_dim=None
    )
    fitted = fit_head(cohort[:2], cohort[2:3], config=config, seed=0)
    history = fitted.history
    assert history.steps[-1] - history.steps[history.best_epoch] == config.patience
    assert history.steps[-1] < config.max_steps


def test_same_seed_same_start_and_member_zero_equals_fit_head(
    cohort: list[GraphSample],
) -> None:
    """The seed fixes the initial weights, dropout and sample order; member 0 is fit_head's.

    Two trainings are compared after two steps, not eighty: float rounding (which differs with
    the BLAS kernel and thread schedule) would be amplified by a long run into differences that
    say nothing about seeding, while different seeds start from different weights altogether.
    """
    config = HeadConfig(**{**SMALL.to_dict(), "max_steps": 2, "dropout": 0.2})
    rng_before = torch.get_rng_state()
    single = fit_head(cohort[:2], cohort[2:3], config=config, seed=3)
    again = fit_ensemble(cohort[:2], cohort[2:3], n_members=2, config=config, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    first = again.members[0].module.state_dict()
    for name, tensor in single.module.state_dict().items():
        torch.testing.assert_close(first[name], tensor, rtol=1e-4, atol=1e-5)
    second = again.members[1].module.state_dict()
    assert max(float((second[k] - v).abs().max()) for k, v in first.items()) > 0.05


def test_targets_are_standardised_on_train_so_units_do_not_matter(
    cohort: list[GraphSample], head: TrainedHead
) -> None:
    """Targets in other units reach the loss as the same standardised numbers, and predictions
    come back in the caller's units; the statistics come from the training samples only."""

    def rescaled(s: GraphSample) -> GraphSample:
        return GraphSample(s.sample_id, s.x, s.edge_index, s.y * 1000.0 - 7.0, s.target_mask)  # type: ignore[operator]

    train, other = cohort[:2], cohort[2]
    base = fit_transform(train, pca_dim=None, seed=0)
    scaled = fit_transform([rescaled(s) for s in train], pca_dim=None, seed=0)
    pooled = np.concatenate([s.y for s in train])  # type: ignore[misc]
    np.testing.assert_allclose(scaled.y_mean, pooled.mean(axis=0) * 1000.0 - 7.0, rtol=1e-5)
    np.testing.assert_allclose(scaled.y_std, pooled.std(axis=0) * 1000.0, rtol=1e-5)
    # What the loss sees (standardised targets) is the same whatever the units ...
    np.testing.assert_allclose(
        scaled.scale_targets(rescaled(other).y),  # type: ignore[arg-type]
        base.scale_targets(other.y),  # type: ignore[arg-type]
        rtol=1e-4,
        atol=1e-4,
    )
    # ... so the same network gives the same predictions, in the units of its targets.
    network_in_other_units = TrainedHead(
        head.module, scaled, config=head.config, history=head.history, seed=head.seed
    )
    in_head_units = TrainedHead(
        head.module, base, config=head.config, history=head.history, seed=head.seed
    )
    np.testing.assert_allclose(
        network_in_other_units.predict(cohort[3]).mean,
        in_head_units.predict(cohort[3]).mean * 1000.0 - 7.0,
        rtol=1e-4,
        atol=0.05,
    )
    # A fitted head's statistics are its training samples', not its validation sample's.
    fitted = fit_head([rescaled(train[0])], [rescaled(other)], config=SMALL, seed=1)
    np.testing.assert_allclose(
        fitted.transform.y_mean, rescaled(train[0]).y.mean(axis=0), rtol=1e-5  # type: ignore[union-attr]
    )


def test_transform_is_fitted_on_train_only_with_pca(cohort: list[GraphSample]) -> None:
    shifted = GraphSample(
        "far", cohort[1].x + 100.0, cohort[1].edge_index, cohort[1].y, cohort[1].target_mask
    )
    fitted = fit_head(
        cohort[:1],
        [shifted],
        config=HeadConfig(**{**SMALL.to_dict(), "pca_dim": 4, "max_steps": 2}),
    )
    np.testing.assert_allclose(fitted.transform.x_mean, cohort[0].x.mean(axis=0), atol=1e-5)
    assert fitted.transform.components is not None
    assert fitted.transform.components.shape == (4, 8)
    assert fitted.module.in_dim == 4
    # The principal axes are orthonormal rows.
    np.testing.assert_allclose(
        fitted.transform.components @ fitted.transform.components.T, np.eye(4), atol=1e-5
    )


def test_unmasked_nodes_are_ignored(cohort: list[GraphSample]) -> None:
    s = cohort[0]
    mask = np.arange(s.x.shape[0]) % 3 != 0
    y = s.y.copy()  # type: ignore[union-attr]
    y[~mask] = np.nan  # a masked-out node's target must never reach the loss or the statistics
    fitted = fit_head([GraphSample("m", s.x, s.edge_index, y, mask)], [], config=SMALL, seed=0)
    assert np.isfinite(fitted.history.val_loss).all()
    assert np.isfinite(fitted.transform.y_mean).all()


def test_empty_val_holds_out_training_nodes(cohort: list[GraphSample]) -> None:
    fitted = fit_head(cohort[:2], [], config=SMALL, seed=0)
    assert len(fitted.history.val_loss) >= 1
    assert pearson(fitted.predict(cohort[3]).mean, cohort[3].y) > 0.8  # type: ignore[arg-type]


def test_ensemble_mean_std_fused_and_attention(cohort: list[GraphSample]) -> None:
    ensemble = fit_ensemble(cohort[:2], cohort[2:3], n_members=3, config=SMALL, seed=5)
    test = cohort[3]
    out = ensemble.predict(test)
    members = [m.predict(test) for m in ensemble.members]
    means = np.stack([m.mean for m in members])
    np.testing.assert_allclose(out.mean, means.mean(axis=0), rtol=1e-6)
    # The spread is the members' disagreement plus the residual noise on validation nodes.
    assert ensemble.noise_std is not None and (ensemble.noise_std > 0).all()
    expected = np.sqrt(means.var(axis=0) + ensemble.noise_std**2)
    np.testing.assert_allclose(out.std, expected, rtol=1e-5, atol=1e-6)
    assert (out.std > means.std(axis=0)).all()
    np.testing.assert_allclose(
        out.fused, np.concatenate([m.fused for m in members], axis=1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(out.attention[1].alpha, members[0].attention[1].alpha)


def test_noise_estimate_survives_save_and_load(cohort: list[GraphSample], tmp_path: Path) -> None:
    ensemble = fit_ensemble(cohort[:2], [], n_members=2, config=SMALL, seed=1)
    loaded = Ensemble.load(ensemble.save(tmp_path / "e"))
    assert loaded.noise_std is not None
    np.testing.assert_allclose(loaded.noise_std, ensemble.noise_std)  # type: ignore[arg-type]
    np.testing.assert_allclose(loaded.predict(cohort[3]).std, ensemble.predict(cohort[3]).std)


def test_partition_covers_each_node_once_and_is_exact_for_core_nodes() -> None:
    _, edges = hex_lattice(20, 15)
    n = 300
    pieces = partition_nodes(edges, n, max_core=64, hops=2)
    cores = np.concatenate([nodes[core] for nodes, core in pieces])
    assert sorted(cores.tolist()) == list(range(n))
    assert all(core.sum() <= 64 for _, core in pieces)
    assert sum(len(nodes) for nodes, _ in pieces) < 3 * n  # compact cores: a modest halo
    module = FusionHead(4, 2, hidden=8, heads=2).eval()
    x = torch.randn(n, 4)
    whole = module(x, torch.from_numpy(edges))
    for nodes, core in pieces:
        index = np.full(n, -1)
        index[nodes] = np.arange(len(nodes))
        local = index[edges]
        local = local[:, (local >= 0).all(axis=0)]
        part = module(x[torch.from_numpy(nodes)], torch.from_numpy(local))
        torch.testing.assert_close(
            part[torch.from_numpy(core)], whole[torch.from_numpy(nodes[core])]
        )


def test_large_samples_train_in_pieces(
    monkeypatch: pytest.MonkeyPatch, cohort: list[GraphSample]
) -> None:
    import tmescope.fusion.train as train_module

    monkeypatch.setattr(train_module, "PIECE_NODES", 50)  # 144 nodes → 3 pieces per sample
    fitted = fit_head(cohort[:2], cohort[2:3], config=SMALL, seed=0)
    assert fitted.history.steps[:2] == (6, 12)
    assert pearson(fitted.predict(cohort[3]).mean, cohort[3].y) > 0.85  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["standardise", "centre"])
def test_sample_norm_removes_slide_level_shifts(cohort: list[GraphSample], mode: str) -> None:
    config = HeadConfig(**{**SMALL.to_dict(), "sample_norm": mode, "max_steps": 10})
    fitted = fit_head(cohort[:2], cohort[2:3], config=config, seed=0)
    test = cohort[3]
    scale = np.linspace(0.5, 3.0, 8, dtype=np.float32) if mode == "standardise" else 1.0
    stained = GraphSample("stained", test.x * scale + 4.0, test.edge_index)
    np.testing.assert_allclose(
        fitted.predict(stained).mean, fitted.predict(test).mean, rtol=1e-4, atol=1e-4
    )
    # Without it the same shift moves the predictions.
    plain = fit_head(
        cohort[:2],
        cohort[2:3],
        config=HeadConfig(**{**config.to_dict(), "sample_norm": "none"}),
        seed=0,
    )
    assert np.abs(plain.predict(stained).mean - plain.predict(test).mean).max() > 0.1


def test_grid_tiles_at_predict_time_leave_spots_unchanged(
    head: TrainedHead, cohort: list[GraphSample]
) -> None:
    """Tiles appended to a sample (receiving from spots, outside target_mask) change no spot."""
    test = cohort[3]
    n = test.x.shape[0]
    config = HeadConfig(**{**SMALL.to_dict(), "sample_norm": "standardise", "max_steps": 10})
    fitted = fit_head(cohort[:2], cohort[2:3], config=config, seed=0)
    tiles = np.random.default_rng(1).normal(5.0, 9.0, size=(20, 8)).astype(np.float32)
    feeding = np.stack([np.arange(20) % n, n + np.arange(20)])  # spot i → tile i
    gridded = GraphSample(
        "grid",
        np.concatenate([test.x, tiles]),
        np.concatenate([test.edge_index, feeding], axis=1),
        target_mask=np.arange(n + 20) < n,
    )
    spots_only = GraphSample("spots", test.x, test.edge_index, target_mask=np.ones(n, bool))
    for model in (head, fitted):
        out = model.predict(gridded)
        assert out.mean.shape == (n + 20, 3)
        np.testing.assert_allclose(
            out.mean[:n], model.predict(spots_only).mean, rtol=1e-5, atol=1e-5
        )


# --- persistence -----------------------------------------------------------------------------


def test_save_load_round_trip_without_pickle(tmp_path: Path, cohort: list[GraphSample]) -> None:
    config = HeadConfig(**{**SMALL.to_dict(), "pca_dim": 5, "max_steps": 5})
    ensemble = fit_ensemble(
        cohort[:2],
        cohort[2:3],
        n_members=2,
        config=config,
        seed=0,
        metadata={"genes": ["A", "B", "C"]},
    )
    ensemble.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "head.json",
        "member_0.safetensors",
        "member_1.safetensors",
        "transform.safetensors",
    ]
    loaded = Ensemble.load(tmp_path / "model")
    assert loaded.metadata == {"genes": ["A", "B", "C"]}
    assert loaded.members[1].config == config
    assert loaded.members[1].history == ensemble.members[1].history
    before, after = ensemble.predict(cohort[3]), loaded.predict(cohort[3])
    np.testing.assert_array_equal(after.mean, before.mean)
    np.testing.assert_array_equal(after.attention[0].edge_index, before.attention[0].edge_index)
    with pytest.raises(ModelMismatchError, match=r"Ensemble\.load"):
        TrainedHead.load(tmp_path / "model")


def test_single_head_round_trip(
    tmp_path: Path, cohort: list[GraphSample], head: TrainedHead
) -> None:
    loaded = TrainedHead.load(head.save(tmp_path / "one"))
    np.testing.assert_array_equal(loaded.predict(cohort[3]).mean, head.predict(cohort[3]).mean)
    assert loaded.seed == head.seed


def test_unreadable_directories_raise_model_mismatch(tmp_path: Path, head: TrainedHead) -> None:
    with pytest.raises(ModelMismatchError):
        TrainedHead.load(tmp_path / "missing")
    directory = head.save(tmp_path / "broken")
    (directory / "member_0.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ModelMismatchError, match="not a readable"):
        TrainedHead.load(directory)
    header = json.loads((directory / "head.json").read_text())
    (directory / "head.json").write_text(json.dumps({**header, "version": 99}))
    with pytest.raises(ModelMismatchError, match="version 99"):
        TrainedHead.load(directory)


def test_metadata_must_be_json_and_a_failed_save_keeps_the_old_model(
    tmp_path: Path, cohort: list[GraphSample], head: TrainedHead
) -> None:
    config = HeadConfig(**{**SMALL.to_dict(), "max_steps": 1})
    fitted = fit_head(cohort[:1], cohort[1:2], config=config, metadata={"x": object()})
    head.save(tmp_path / "m")
    with pytest.raises(InvalidParameterError, match="JSON"):
        fitted.save(tmp_path / "m")
    np.testing.assert_array_equal(
        TrainedHead.load(tmp_path / "m").predict(cohort[3]).mean, head.predict(cohort[3]).mean
    )


# --- input errors ----------------------------------------------------------------------------


def test_sample_shape_errors() -> None:
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(TrainingDataError, match="refers to nodes"):
        GraphSample("a", x, np.array([[0, 1], [1, 4]]))
    with pytest.raises(TrainingDataError, match=r"\(2, E\)"):
        GraphSample("a", x, np.zeros((3, 2), np.int64))
    with pytest.raises(TrainingDataError, match="y must be"):
        GraphSample("a", x, np.zeros((2, 0), np.int64), np.zeros((3, 2), np.float32))
    with pytest.raises(TrainingDataError, match="target_mask"):
        GraphSample(
            "a", x, np.zeros((2, 0), np.int64), np.zeros((4, 2), np.float32), np.ones(4, int)
        )


def test_training_input_errors(cohort: list[GraphSample], head: TrainedHead) -> None:
    s = cohort[0]
    with pytest.raises(TrainingDataError, match="no training sample"):
        fit_head([], [], config=SMALL)
    with pytest.raises(TrainingDataError, match="no targets"):
        fit_head([GraphSample("p", s.x, s.edge_index)], [], config=SMALL)
    with pytest.raises(TrainingDataError, match="targets, the first"):
        fit_head([s], [GraphSample("v", s.x, s.edge_index, s.y[:, :2])], config=SMALL)  # type: ignore[index]
    with pytest.raises(TrainingDataError, match="NaN"):
        fit_head([GraphSample("n", s.x, s.edge_index, s.y * np.nan)], [], config=SMALL)  # type: ignore[operator]
    with pytest.raises(ModelMismatchError, match="8-dim"):
        head.predict(GraphSample("w", np.zeros((3, 5), np.float32), np.zeros((2, 0), np.int64)))
    with pytest.raises(InvalidParameterError, match="n_members"):
        fit_ensemble([s], [], n_members=0, config=SMALL)


def test_device_errors(cohort: list[GraphSample]) -> None:
    with pytest.raises(InvalidParameterError):
        fit_head(cohort[:1], [], config=SMALL, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="CUDA is not available"):
            fit_head(cohort[:1], [], config=SMALL, device="cuda")


def test_pieces_kept_on_disk_train_the_same_heads(
    monkeypatch: pytest.MonkeyPatch, cohort: list[GraphSample], tmp_path: Path
) -> None:
    """With a spill folder the pieces wait on disk between steps: the same tensors are read
    back, so the heads are those of a fit in memory, and the folder is emptied afterwards."""
    import tmescope.fusion.train as train_module

    monkeypatch.setattr(train_module, "PIECE_NODES", 50)  # several pieces per sample
    config = HeadConfig(**{**SMALL.to_dict(), "max_steps": 12})
    kept = fit_ensemble(cohort[:2], [], n_members=2, config=config, seed=2)
    spilled = fit_ensemble(cohort[:2], [], n_members=2, config=config, seed=2, spill=tmp_path)
    for a, b in zip(kept.members, spilled.members, strict=True):
        for name, tensor in a.module.state_dict().items():
            torch.testing.assert_close(b.module.state_dict()[name], tensor, rtol=0, atol=0)
    np.testing.assert_array_equal(kept.noise_std, spilled.noise_std)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
