"""Embedding synthetic samples end to end through the Python twin of ``tmescope embed``.

Each sample is read, embedded with ``test-vit-tiny`` and written into a cohort store; the store
is then read back with tmescope and with plain zarr, and checked against the sample's own files
(positions CSV, 10x HDF5, full-resolution TIFF) read independently here.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tifffile
import zarr

from tmescope.datasets import write_synthetic_cohort
from tmescope.errors import InvalidParameterError
from tmescope.jobs.embed import EmbedSettings, EmbedSummary, SampleInput
from tmescope.store import CohortStore, RowKind, SampleStatus
from tmescope.workflows import embed_samples, fullres_image_of

ENCODER = "test-vit-tiny"
DIM = 192
PATCH_UM = 112.0  # test-vit-tiny: 224 px at 0.5 µm/px
CHILD = Path(__file__).parents[1] / "embed_child.py"


def _items(sample_dirs: list[Path]) -> list[SampleInput]:
    return [SampleInput(d, image=fullres_image_of(d)) for d in sample_dirs]


def _embed(
    sample_dirs: list[Path], store: Path, settings: EmbedSettings | None = None
) -> list[EmbedSummary]:
    return embed_samples(
        _items(sample_dirs), store=store, encoder=ENCODER, device="cpu", settings=settings
    )


def _expected_spots(sample_dir: Path) -> pd.DataFrame:
    """In-tissue spots with counts, indexed by barcode: full-resolution ``x`` and ``y``."""
    positions = pd.read_csv(sample_dir / "outs" / "spatial" / "tissue_positions.csv")
    with h5py.File(sample_dir / "outs" / "filtered_feature_bc_matrix.h5", "r") as f:
        with_counts = {b.decode() for b in f["matrix/barcodes"][:]}
    spots = positions[(positions["in_tissue"] == 1) & positions["barcode"].isin(with_counts)]
    return spots.set_index("barcode").rename(
        columns={"pxl_col_in_fullres": "x", "pxl_row_in_fullres": "y"}
    )[["x", "y"]]


def _h5_counts(sample_dir: Path) -> tuple[list[str], list[str], sp.csr_matrix]:
    """Barcodes, gene ids and the barcodes × genes matrix of the sample's 10x HDF5."""
    with h5py.File(sample_dir / "outs" / "filtered_feature_bc_matrix.h5", "r") as f:
        m = f["matrix"]
        genes_by_barcodes = sp.csc_matrix(
            (m["data"][:], m["indices"][:], m["indptr"][:]), shape=tuple(m["shape"][:])
        )
        barcodes = [b.decode() for b in m["barcodes"][:]]
        gene_ids = [g.decode() for g in m["features/id"][:]]
    return barcodes, gene_ids, genes_by_barcodes.T.tocsr()


@pytest.fixture(scope="module")
def embedded(
    synth_embedded: tuple[Path, list[EmbedSummary]],
) -> tuple[Path, list[EmbedSummary]]:
    """Both synthetic samples embedded (spots, cover patches and sub-spot bins at the default
    16 µm, no grid) into one store, as ``_embed`` does (the session's, see conftest.py);
    read-only."""
    return synth_embedded


def test_summaries_say_what_was_embedded(
    embedded: tuple[Path, list[EmbedSummary]], synth_cohort: list[Path]
) -> None:
    _, summaries = embedded
    assert [s.sample_id for s in summaries] == [d.name for d in synth_cohort]
    for summary, sample_dir in zip(summaries, synth_cohort, strict=True):
        n = len(_expected_spots(sample_dir))
        assert summary.status == "embedded"
        assert (summary.n_spots, summary.n_tiles) == (n, 0)
        assert summary.rows_written == n + summary.n_cover
        assert summary.n_bins > 10 * n  # a 112 µm patch holds 49 bins of 16 µm
        assert summary.seconds > 0 and summary.patches_per_s > 0


def test_the_store_verifies_and_plain_zarr_reads_it(
    embedded: tuple[Path, list[EmbedSummary]], synth_cohort: list[Path]
) -> None:
    path, _ = embedded
    store = CohortStore.open(path)
    assert store.verify() == []
    assert store.sample_ids() == [d.name for d in synth_cohort]
    assert store.fingerprint["model"] == ENCODER

    root = zarr.open_group(path, mode="r")
    assert root.attrs["tmescope"]["fingerprint"]["embed_dim"] == DIM
    for sample_dir in synth_cohort:
        group = root[f"samples/{sample_dir.name}"]
        n_spots = len(_expected_spots(sample_dir))
        assert group.attrs["status"] == "complete"
        assert store.sample_status(sample_dir.name) is SampleStatus.COMPLETE
        embeddings = group["embeddings"][:]
        kind = group["kind"][:]
        n = n_spots + group.attrs["n_cover"]
        assert embeddings.dtype == np.float16
        assert embeddings.shape == (n, DIM)
        assert np.isfinite(embeddings).all()
        assert group["coords"].shape == (n, 2)
        assert (kind == RowKind.SPOT).sum() == n_spots
        assert set(kind.tolist()) <= {RowKind.SPOT, RowKind.COVER}
        bins = group["bin_features"][:]
        assert bins.dtype == np.float16 and bins.shape[1] == DIM and np.isfinite(bins).all()
        assert group["chunks_written"][:].all()
        assert group["counts"].attrs["encoding-type"] == "anndata"


def test_rows_are_the_in_tissue_spots_at_their_positions(
    embedded: tuple[Path, list[EmbedSummary]], synth_cohort: list[Path]
) -> None:
    store = CohortStore.open(embedded[0])
    for sample_dir in synth_cohort:
        expected = _expected_spots(sample_dir)
        spots = store.read_kind(sample_dir.name) == RowKind.SPOT
        barcodes = store.read_barcodes(sample_dir.name)[spots]
        assert sorted(barcodes.tolist()) == sorted(expected.index)
        coords = store.read_coords(sample_dir.name)[spots]
        assert coords.dtype == np.float32
        np.testing.assert_array_equal(coords, expected.loc[barcodes, ["x", "y"]].to_numpy())
        fraction = store.read_tissue_fraction(sample_dir.name)
        assert ((fraction >= 0) & (fraction <= 1)).all()


def test_counts_rows_follow_the_store_spot_order(
    embedded: tuple[Path, list[EmbedSummary]], synth_cohort: list[Path]
) -> None:
    store = CohortStore.open(embedded[0])
    for sample_dir in synth_cohort:
        spots = store.read_kind(sample_dir.name) == RowKind.SPOT
        barcodes = store.read_barcodes(sample_dir.name)[spots]
        counts = store.read_counts(sample_dir.name)
        assert counts is not None
        assert counts.obs_names.tolist() == barcodes.tolist()
        h5_barcodes, gene_ids, matrix = _h5_counts(sample_dir)
        assert counts.var["gene_ids"].tolist() == gene_ids
        rows = [h5_barcodes.index(b) for b in barcodes]
        stored = counts.X.toarray() if sp.issparse(counts.X) else np.asarray(counts.X)
        np.testing.assert_array_equal(stored, matrix[rows].toarray())


def test_each_row_holds_the_embedding_of_its_own_patch(
    embedded: tuple[Path, list[EmbedSummary]], synth_cohort: list[Path]
) -> None:
    """Embedding each spot's patch here, one by one, gives the stored row (to float16)."""
    import torch

    from tmescope.embed.registry import create_encoder
    from tmescope.io import read_visium

    store = CohortStore.open(embedded[0])
    encoder = create_encoder(ENCODER)
    mean = torch.tensor(encoder.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(encoder.spec.std).view(1, 3, 1, 1)
    sample_dir = synth_cohort[0]
    coords = store.read_coords(sample_dir.name)
    with read_visium(sample_dir, image=fullres_image_of(sample_dir)) as sample:
        patches = np.stack(
            [sample.read_patch(x, y, size_um=PATCH_UM, size_px=224) for x, y in coords]
        )  # (n, 224, 224, 3) uint8
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        direct = encoder((x - mean) / std).numpy()  # (n, 192)
    stored = store.read_embeddings(sample_dir.name).astype(np.float32)
    np.testing.assert_allclose(stored, direct, rtol=2e-3, atol=2e-3)
    distances = ((stored[:, None, :] - direct[None, :, :]) ** 2).sum(-1)
    assert (distances.argmin(axis=1) == np.arange(len(stored))).all()


def test_a_grid_adds_tiles_that_lie_on_tissue(tmp_path: Path, synth_cohort: list[Path]) -> None:
    sample_dir = synth_cohort[1]
    path = tmp_path / "grid.zarr"
    (summary,) = _embed([sample_dir], path, EmbedSettings(grid_um=150.0))
    expected = _expected_spots(sample_dir)
    assert summary.status == "embedded"
    assert summary.n_spots == len(expected) and summary.n_tiles > 0
    assert summary.rows_written == summary.n_spots + summary.n_tiles + summary.n_cover

    store = CohortStore.open(path)
    assert store.verify() == []
    sid = sample_dir.name
    kind, barcodes = store.read_kind(sid), store.read_barcodes(sid)
    coords, fraction = store.read_coords(sid), store.read_tissue_fraction(sid)
    tiles, spots = kind == RowKind.TILE, kind == RowKind.SPOT
    assert kind.dtype == np.uint8 and {RowKind.SPOT, RowKind.TILE} <= set(kind.tolist())
    assert int(tiles.sum()) == summary.n_tiles
    assert int((kind == RowKind.COVER).sum()) == summary.n_cover
    assert all(b.startswith("tile_") for b in barcodes[tiles])
    assert sorted(barcodes[spots].tolist()) == sorted(expected.index)
    np.testing.assert_array_equal(
        coords[spots], expected.loc[barcodes[spots], ["x", "y"]].to_numpy()
    )
    assert store.read_embeddings(sid).shape == (summary.rows_written, DIM)
    counts = store.read_counts(sid)
    assert counts is not None and counts.obs_names.tolist() == barcodes[spots].tolist()

    # On tissue, judged from the slide's pixels here: stained, not glass-white.
    assert (fraction[tiles] >= 0.25).all()
    grey = tifffile.imread(fullres_image_of(sample_dir), level=0).mean(axis=2)
    half = PATCH_UM / 0.5 / 2
    height, width = grey.shape
    for x, y in coords[tiles]:
        assert 0 <= x < width and 0 <= y < height
        box = grey[int(max(y - half, 0)) : int(y + half), int(max(x - half, 0)) : int(x + half)]
        assert (box < 220).mean() > 0.15, (x, y)


def test_a_rerun_skips_and_overwrite_redoes(
    tmp_path: Path,
    embedded: tuple[Path, list[EmbedSummary]],
    synth_cohort: list[Path],
) -> None:
    path = tmp_path / "copy.zarr"
    shutil.copytree(embedded[0], path)
    sid = synth_cohort[0].name
    before = CohortStore.open(path)
    embeddings = before.read_embeddings(sid)
    completed = before.sample_record(sid).completed

    skipped = _embed(synth_cohort, path)
    assert [s.status for s in skipped] == ["skipped", "skipped"]
    assert [s.rows_written for s in skipped] == [0, 0]
    assert [s.n_spots for s in skipped] == [s.n_spots for s in embedded[1]]
    assert CohortStore.open(path).sample_record(sid).completed == completed

    (redone,) = _embed([synth_cohort[0]], path, EmbedSettings(overwrite=True))
    assert redone.status == "embedded"
    assert redone.rows_written == redone.n_spots + redone.n_cover == len(embeddings)
    after = CohortStore.open(path)
    assert after.verify() == []
    assert after.sample_ids() == [d.name for d in synth_cohort]
    np.testing.assert_array_equal(after.read_embeddings(sid), embeddings)


@pytest.mark.slow
def test_a_killed_embedding_resumes_to_the_same_bits(tmp_path: Path) -> None:
    """SIGKILL part-way, run again: status "resumed", embeddings and sub-spot features
    bit-identical to a clean run."""
    chunk_rows = 32  # 200 spots: 7 chunks, killed in the 4th
    (sample_dir,) = write_synthetic_cohort(tmp_path / "big", n_samples=1, n_spots=200, seed=7)
    sid = sample_dir.name
    path = tmp_path / "resumed.zarr"
    # The child stops once 3 chunks are written, mid-way through the 4th: killed there.
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(chunk_rows), str(sample_dir),
         "--hold-after", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # "holding", or "" if the child died first
        assert line.strip() == "holding", (
            f"child ended early: {line} {child.stderr.read() if child.stderr else ''}"
        )
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL

    interrupted = CohortStore.open(path)
    assert interrupted.sample_ids() == []  # unfinished samples are invisible
    assert interrupted.sample_status(sid) is SampleStatus.WRITING
    (state,) = interrupted.summary()
    assert state.chunks_written == 3 and state.n_chunks == -(-state.n // chunk_rows) > 4
    assert state.n_spots == 200 and state.n_bins > 0

    settings = EmbedSettings(chunk_rows=chunk_rows)
    (resumed,) = _embed([sample_dir], path, settings)
    assert resumed.status == "resumed"
    assert resumed.rows_written == state.n - state.chunks_written * chunk_rows
    (clean,) = _embed([sample_dir], tmp_path / "clean.zarr", settings)
    assert clean.status == "embedded" and clean.rows_written == state.n

    a, b = CohortStore.open(path), CohortStore.open(tmp_path / "clean.zarr")
    assert a.verify() == [] and b.verify() == []
    assert a.sample_status(sid) is SampleStatus.COMPLETE
    np.testing.assert_array_equal(
        a.read_embeddings(sid).view(np.uint16), b.read_embeddings(sid).view(np.uint16)
    )
    np.testing.assert_array_equal(
        a.read_bin_features(sid).view(np.uint16), b.read_bin_features(sid).view(np.uint16)
    )
    bins_a, bins_b = a.read_bins(sid), b.read_bins(sid)
    np.testing.assert_array_equal(bins_a.coords, bins_b.coords)
    np.testing.assert_array_equal(bins_a.owner, bins_b.owner)
    np.testing.assert_array_equal(a.read_coords(sid), b.read_coords(sid))
    np.testing.assert_array_equal(a.read_barcodes(sid), b.read_barcodes(sid))
    counts_a, counts_b = a.read_counts(sid), b.read_counts(sid)
    assert counts_a is not None and counts_b is not None
    spots = a.read_kind(sid) == RowKind.SPOT
    assert (
        counts_a.obs_names.tolist()
        == counts_b.obs_names.tolist()
        == a.read_barcodes(sid)[spots].tolist()
    )


BAD_SETTINGS = [
    pytest.param({"precision": "fp16"}, "fp16", id="fp16-on-cpu"),
    pytest.param({"batch_size": 0}, "batch.size", id="batch-size-0"),
]


@pytest.mark.parametrize(("settings", "fragment"), BAD_SETTINGS)
def test_bad_settings_are_refused(
    tmp_path: Path, synth_cohort: list[Path], settings: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidParameterError, match=fragment):
        _embed(synth_cohort[:1], tmp_path / "never.zarr", EmbedSettings(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(("settings", "fragment"), BAD_SETTINGS)
def test_bad_settings_leave_no_store_behind(
    tmp_path: Path, synth_cohort: list[Path], settings: dict[str, object], fragment: str
) -> None:
    path = tmp_path / "never.zarr"
    with pytest.raises(InvalidParameterError, match=fragment):
        _embed(synth_cohort[:1], path, EmbedSettings(**settings))  # type: ignore[arg-type]
    assert not path.exists()


def test_cover_patches_reach_the_tissue_beyond_the_spots(
    tmp_path: Path, synth_cohort: list[Path], embedded: tuple[Path, list[EmbedSummary]]
) -> None:
    from tmescope.embed.subspot import cover_centres
    from tmescope.embed.tissue_mask import TissueMask
    from tmescope.io import read_visium

    sample_dir = synth_cohort[0]
    path = tmp_path / "cover.zarr"
    plain = embedded[1][0]  # the same sample embedded without covers
    (summary,) = _embed([sample_dir], path, EmbedSettings(cover=True))
    assert plain.n_cover == 0 and plain.rows_written == plain.n_spots  # rows are the spots
    assert summary.n_cover > 0 and summary.rows_written == summary.n_spots + summary.n_cover
    assert summary.n_bins > plain.n_bins
    store = CohortStore.open(path)
    assert store.verify() == []
    sid = sample_dir.name
    kind, barcodes = store.read_kind(sid), store.read_barcodes(sid)
    assert all(b.startswith("cover_") for b in barcodes[kind == RowKind.COVER])
    counts = store.read_counts(sid)
    assert counts is not None and counts.n_obs == summary.n_spots  # covers have no counts
    # With the covers, no tissue bin of the capture area is left without a patch.
    with read_visium(sample_dir, image=fullres_image_of(sample_dir)) as sample:
        mask = TissueMask.from_sample(sample)
        xy = sample.spots[["x", "y"]].to_numpy(float)
    half = PATCH_UM / 0.5 / 2
    region = (*(xy.min(axis=0) - half), *(xy.max(axis=0) + half))
    left = cover_centres(
        store.read_coords(sid).astype(float), patch_px=2 * half, bin_px=32.0, tissue=mask,
        region=region,  # type: ignore[arg-type]
    )  # fmt: skip
    assert left.shape == (0, 2)
