"""The writers that the kill tests (tests/reliability/test_kill_*.py) kill, and their old states.

Each :class:`~kill_harness.Writer` is a real ``tmescope`` command. The old states are laid out
once per test module (a store of two samples with grid tiles and sub-spot features, an index
built before the second sample arrived, a model of another seed, a previous report and exports)
and copied for each trial. What a reader sees is compared by digest, bit for bit; the one line
of a report that differs between two runs (when it was written) is left out.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import reliability_tally
from kill_harness import Writer, array_digest, file_digest, kill_trials

STORE = "store.zarr"
WITH_FUSED = "with_fused"
EMBED = ("--encoder", "test-vit-tiny", "--device", "cpu")
GRID_UM, SUBSPOT_UM = 110.0, 16.0
TRAIN = ("--model", "gat", "--members", "1", "--genes", "20", "--device", "cpu")


def build_base(root: Path) -> Path:
    """The old state every trial starts from, in ``root`` (read-only: trials copy what they need)."""
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.jobs.embed import EmbedSettings, SampleInput
    from tmescope.workflows import build_cohort_index, embed_samples

    n_spots = reliability_tally.trials(80, 150)
    dirs = write_synthetic_cohort(root / "cohort", n_samples=3, n_spots=n_spots, seed=3)
    settings = EmbedSettings(grid_um=GRID_UM, subspot_um=SUBSPOT_UM, chunk_rows=32)
    for d in dirs[:2]:  # the index sees the first only: rebuilding it changes what it covers
        embed_samples([SampleInput(d, image=_image(d))], store=root / STORE,
                      encoder="test-vit-tiny", device="cpu", settings=settings)  # fmt: skip
        if d == dirs[0]:
            build_cohort_index(root / STORE)
    (root / "report.html").write_text("<html><body>the previous report</body></html>\n")
    (root / "cohort.geojson").write_text('{"type": "FeatureCollection", "features": []}\n')
    (root / "cohort_sd.zarr").mkdir()  # a previous export: a Zarr group of spatialdata's
    (root / "cohort_sd.zarr" / "zarr.json").write_text(
        json.dumps(
            {"zarr_format": 3, "node_type": "group", "attributes": {"spatialdata_attrs": {}}}
        )
    )
    return root


def add_model(base: Path) -> Path:
    """A model in :func:`build_base`'s folder, of another seed than the one the trials train."""
    from tmescope.jobs.train import TrainSettings, train_model

    train = TrainSettings(n_genes=20, n_members=1, models=("gat",), device="cpu", seed=1)
    train_model(base / STORE, base / "model", settings=train)
    return base


def add_fused(base: Path) -> Path:
    """Beside :func:`add_model`'s model, a copy of the store holding its fused sets (in
    ``with_fused/``): the old state of a sample's removal, which takes the sets with it."""
    from tmescope.jobs.fused import write_fused

    shutil.copytree(base / STORE, base / WITH_FUSED / STORE, symlinks=True)
    write_fused(base / WITH_FUSED / STORE, base / "model", device="cpu")
    return base


def _image(sample_dir: Path) -> Path:
    return sample_dir / f"{sample_dir.name}_he.tif"


def _copy(base: Path, *names: str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        for name in (STORE, "cohort", *names):
            source = base / name
            if source.is_dir():
                shutil.copytree(source, folder / name, symlinks=True)
            else:
                shutil.copy2(source, folder / name)

    return prepare


def _copy_with_fused(base: Path) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        shutil.copytree(base / WITH_FUSED / STORE, folder / STORE, symlinks=True)

    return prepare


# --- what a reader sees -------------------------------------------------------------------------


def _samples_seen(folder: Path) -> object:
    from tmescope.store import CohortStore

    store = CohortStore.open(folder / STORE)
    seen = {}
    for sid in store.sample_ids():  # complete samples only: the others are invisible
        arrays = [store.read_embeddings(sid), store.read_coords(sid), store.read_barcodes(sid)]
        if store.sample_record(sid).bins is not None:
            arrays += [store.read_bin_features(sid), store.read_bins(sid).coords]
        seen[sid] = array_digest(*arrays)
    return seen  # sample by sample: each is written whole on its own


def _fused_seen(folder: Path) -> object:
    from tmescope.store import CohortStore
    from tmescope.store.fused import fused_models, read_fused_sample

    store = CohortStore.open(folder / STORE)
    seen = {}
    for info in fused_models(store):
        for entry in sorted((folder / STORE / "fused" / info.model_id).iterdir()):
            if entry.is_dir() and not entry.name.startswith((".", "_")):
                data = read_fused_sample(store, info.model_id, entry.name)
                arrays = (data.rows, data.fused, data.states, data.states_std, data.expression)
                seen[(info.model_id, entry.name)] = array_digest(*arrays)
    return seen  # set by set: each sample's set is written whole on its own


def _samples_and_fused_seen(folder: Path) -> object:
    return {**_samples_seen(folder), **_fused_seen(folder)}  # each sample, each set: whole


def _removal_begun(folder: Path) -> bool:
    """Whether the removal of synth_01 has touched the store (its fused sets go first)."""
    fused = [m / "synth_01" for m in (folder / STORE / "fused").iterdir() if m.is_dir()]
    return not (folder / STORE / "samples" / "synth_01").is_dir() or not all(
        p.is_dir() for p in fused
    )


def _removal_finished(folder: Path) -> bool:
    samples = folder / STORE / "samples"
    return not (samples / "synth_01").exists() and not any(samples.glob(".synth_01.removed-*"))


def _index_seen(folder: Path) -> object:
    from tmescope.store import CohortStore
    from tmescope.store.index import read_index_info

    info = read_index_info(CohortStore.open(folder / STORE))
    if info is None:
        return None
    directory = folder / STORE / "index"
    with np.load(directory / info.files["rows"], allow_pickle=False) as rows:
        digest = array_digest(*(rows[k] for k in sorted(rows.files)))
    covered = tuple(s.sample_id for s in info.samples)
    return covered, info.n, digest, file_digest(directory / info.files["faiss"])


def _model_seen(folder: Path) -> object:
    model = folder / "model"
    if not model.exists():
        return None
    header = json.loads((model / "model.json").read_text())  # a model is whole, or no model
    weights = tuple(file_digest(p) for p in sorted((model / "head").glob("*.safetensors")))
    return json.dumps(header["target"], sort_keys=True), weights


def _h5ad_seen(folder: Path) -> object:
    import anndata as ad

    path = folder / "pred.h5ad"
    if not path.exists():
        return None
    adata = ad.read_h5ad(path)
    return tuple(adata.obs_names), tuple(adata.var_names), array_digest(np.asarray(adata.X))


def _report_seen(folder: Path) -> object:
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>"), "a report cut short"
    stamp = r"<th>written</th><td>[^<]*</td>"  # the one line that differs between two runs
    return file_digest_text(re.sub(stamp, "", page))


def file_digest_text(text: str) -> str:
    return array_digest(np.frombuffer(text.encode(), dtype=np.uint8))


def _geojson_seen(folder: Path) -> object:
    return (
        file_digest(folder / "cohort.geojson")
        if json.loads((folder / "cohort.geojson").read_text())
        else None
    )


def _spatialdata_seen(folder: Path) -> object:
    path = folder / "cohort_sd.zarr"
    if not any(p.name != "zarr.json" for p in path.iterdir()):
        return "the previous export"
    import spatialdata

    sdata = spatialdata.read_zarr(path)
    tables = tuple(
        (
            name,
            tuple(t.obs_names),
            array_digest(np.asarray(t.X.todense() if hasattr(t.X, "todense") else t.X)),
        )
        for name, t in sorted(sdata.tables.items())
    )
    return tuple(sorted(sdata.shapes)), tuple(sorted(sdata.images)), tables


# --- the writers ----------------------------------------------------------------------------------


def _stuck_writing(problem: str) -> bool:
    return "stuck in 'writing'" in problem


def writers(base: Path) -> dict[str, Writer]:
    s2 = "cohort/synth_02"
    return {
        "embedding: spots, grid tiles, sub-spot features": Writer(
            "embedding: spots, grid tiles, sub-spot features",
            _copy(base),
            lambda f: [
                "embed",
                s2,
                "--image",
                f"{s2}/synth_02_he.tif",
                "--store",
                STORE,
                *EMBED,
                "--grid",
                str(GRID_UM),
                "--subspot",
                str(SUBSPOT_UM),
                "--batch-size",
                "16",
            ],
            _samples_seen,
            resumable=_stuck_writing,
        ),
        "embedding: H&E-only slide tiles": Writer(
            "embedding: H&E-only slide tiles",
            _copy(base),
            lambda f: [
                "embed",
                "--slide",
                f"{s2}/synth_02_he.tif",
                "--sample-id",
                "slide_02",
                "--store",
                STORE,
                *EMBED,
                "--batch-size",
                "16",
            ],
            _samples_seen,
            resumable=_stuck_writing,
        ),
        "fused sets": Writer(
            "fused sets",
            _copy(base, "model"),
            lambda f: ["niches", STORE, "model", "--k", "3", "--device", "cpu"],
            _fused_seen,
        ),
        "similarity index": Writer(
            "similarity index", _copy(base), lambda f: ["index", STORE], _index_seen
        ),
        # the sample, and every model's fused set of it; run again, it finishes a cut-short one
        "sample removal": Writer(
            "sample removal",
            _copy_with_fused(base),
            lambda f: ["store", "rm", STORE, "synth_01", "--missing-ok"],
            _samples_and_fused_seen,
            begun=_removal_begun,
            finished=_removal_finished,
        ),
        "model directory": Writer(
            "model directory",
            _copy(base, "model"),
            lambda f: ["train", STORE, "--out", "model", *TRAIN, "--seed", "0"],
            _model_seen,
        ),
        "predictions (h5ad)": Writer(
            "predictions (h5ad)",
            _copy(base, "model"),
            lambda f: [
                "predict",
                STORE,
                "model",
                "--sample",
                "synth_00",
                "--out",
                "pred.h5ad",
                "--grid",
                "--device",
                "cpu",
            ],
            _h5ad_seen,
        ),
        "report": Writer(
            "report",
            _copy(base, "model", "report.html"),
            lambda f: ["report", STORE, "--model", "model", "--out", "report.html"],
            _report_seen,
        ),
        "export: GeoJSON": Writer(
            "export: GeoJSON",
            _copy(base, "model", "cohort.geojson"),
            lambda f: [
                "export",
                STORE,
                "--to",
                "geojson",
                "cohort.geojson",
                "--model",
                "model",
                "--overwrite",
            ],
            _geojson_seen,
        ),
        "export: SpatialData": Writer(
            "export: SpatialData",
            _copy(base, "model", "cohort_sd.zarr"),
            lambda f: [
                "export",
                STORE,
                "--to",
                "spatialdata",
                "cohort_sd.zarr",
                "--model",
                "model",
                "--overwrite",
            ],
            _spatialdata_seen,
        ),
    }


def kill_writer(
    name: str, sizes: tuple[int, int], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The body of the kill tests: ``sizes`` trials (make test, make reliability) of writer
    ``name`` from the test module's ``base`` fixture, counted for docs/reliability.md."""
    trials = reliability_tally.trials(*sizes)
    if trials == 0:
        pytest.skip("in the full matrix only (make reliability)")
    base = request.getfixturevalue("base")  # built only where a writer is killed
    # make test kills at the same moments every run; the full matrix at new ones (said on failure).
    seed = secrets.randbelow(2**32) if reliability_tally.full() else zlib.crc32(name.encode())
    outcome = kill_trials(writers(base)[name], tmp_path, trials, np.random.default_rng(seed))
    reliability_tally.count("writer", name, **outcome.counts, lost=0)
    assert outcome.counts["resumed identical"] == trials, f"seed {seed}: {outcome.counts}"
