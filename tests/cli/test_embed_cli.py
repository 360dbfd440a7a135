"""``tmescope embed``, ``store`` and ``encoders`` end to end: output, JSON, exit codes, the store.

Runs that need a real process of their own (concurrent writers, a Dask cluster, the proof that
nothing prints a traceback) start ``python -m tmescope``; the many bad-input cases call the same
entry point, ``tmescope.cli.main:main``, in this process, which saves a torch start-up each
(both in cli_calls.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from cli_calls import Result, call_cli, run_cli
from tmescope.jobs.embed import SampleInput
from tmescope.store import CohortStore, RowKind, SampleStatus
from tmescope.workflows import embed_samples, fullres_image_of

ENCODER = "test-vit-tiny"


def start_cli(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tmescope", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """Exit 2, no traceback, and stderr is a single ``error:`` line holding every fragment."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def embed_args(sample_dirs: list[Path], store: Path, *extra: str | Path) -> list[str | Path]:
    images = [arg for d in sample_dirs for arg in ("--image", fullres_image_of(d))]
    return ["embed", *sample_dirs, *images, "--store", store, "--encoder", ENCODER, *extra]


def tree_digest(root: Path) -> dict[str, str]:
    """Every file (by content) and folder under ``root``."""
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
        )
        for p in sorted(root.rglob("*"))
    }


def copy_sample(sample_dir: Path, to: Path) -> Path:
    """A writable copy of a synthetic sample (its id is the new folder's name)."""
    shutil.copytree(sample_dir, to)
    return to


@pytest.fixture(scope="module")
def cli_store(
    tmp_path_factory: pytest.TempPathFactory, synth_cohort: list[Path]
) -> tuple[Path, list[dict[str, object]]]:
    """Both synthetic samples embedded by ``tmescope embed --json``; read-only."""
    store = tmp_path_factory.mktemp("cli") / "cohort.zarr"
    result = call_cli(*embed_args(synth_cohort, store, "--device", "cpu", "--json"))
    assert result.returncode == 0, result.stderr
    return store, json.loads(result.stdout)


@pytest.fixture
def store_copy(tmp_path: Path, cli_store: tuple[Path, list[dict[str, object]]]) -> Path:
    path = tmp_path / "copy.zarr"
    shutil.copytree(cli_store[0], path)
    return path


# --- embedding ------------------------------------------------------------------------------


def test_embed_json_summarises_each_sample(
    cli_store: tuple[Path, list[dict[str, object]]], synth_cohort: list[Path]
) -> None:
    path, summaries = cli_store
    assert [s["sample_id"] for s in summaries] == [d.name for d in synth_cohort]
    for summary in summaries:
        assert summary["status"] == "embedded"
        assert summary["n_spots"] == 60 and summary["n_tiles"] == 0
        assert summary["rows_written"] == 60 + summary["n_cover"]
        assert summary["n_bins"] > 0  # sub-spot bins are on by default
    store = CohortStore.open(path)
    assert store.verify() == []
    assert store.read_embeddings(synth_cohort[0].name).shape == (summaries[0]["rows_written"], 192)


def test_embed_again_skips_and_says_so(store_copy: Path, synth_cohort: list[Path]) -> None:
    before = tree_digest(store_copy)
    result = call_cli(*embed_args(synth_cohort, store_copy))
    assert result.returncode == 0, result.stderr
    for sample_dir in synth_cohort:
        assert f"{sample_dir.name}: skipped" in result.stderr
    assert "2 skipped" in " ".join(result.stdout.split())  # rich wraps at 80 columns
    assert tree_digest(store_copy) == before


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_single_process_embeddings(
    tmp_path: Path,
    cli_store: tuple[Path, list[dict[str, object]]],
    synth_cohort: list[Path],
) -> None:
    path = tmp_path / "dask.zarr"
    result = run_cli(*embed_args(synth_cohort, path, "--scheduler", "local:2", "--json"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summaries = json.loads(result.stdout)
    assert [s["sample_id"] for s in summaries] == [d.name for d in synth_cohort]
    assert [s["status"] for s in summaries] == ["embedded", "embedded"]
    dask, single = CohortStore.open(path), CohortStore.open(cli_store[0])
    assert dask.verify() == []
    assert dask.fingerprint == single.fingerprint
    for sample_dir in synth_cohort:
        sid = sample_dir.name
        # A Dask worker runs torch on its one thread, the single process on all the cores: the
        # same sums in another order may round to the neighbouring float16, never further.
        a = dask.read_embeddings(sid).astype(np.float32)
        b = single.read_embeddings(sid).astype(np.float32)
        step = np.spacing(np.abs(b).astype(np.float16)).astype(np.float32)  # one float16 step
        np.testing.assert_array_less(np.abs(a - b), step * 1.01)
        np.testing.assert_array_equal(dask.read_coords(sid), single.read_coords(sid))
        np.testing.assert_array_equal(dask.read_barcodes(sid), single.read_barcodes(sid))


def test_two_processes_embed_into_one_new_store(
    tmp_path: Path,
    cli_store: tuple[Path, list[dict[str, object]]],
    synth_cohort: list[Path],
) -> None:
    path = tmp_path / "shared.zarr"
    children = [start_cli(*embed_args([d], path, "--json")) for d in synth_cohort]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        assert [s["status"] for s in json.loads(stdout)] == ["embedded"]
    store, reference = CohortStore.open(path), CohortStore.open(cli_store[0])
    assert store.sample_ids() == [d.name for d in synth_cohort]
    assert store.verify() == []
    assert not list(path.parent.glob(".*.creating"))  # the loser's staging folder is gone
    for sample_dir in synth_cohort:
        sid = sample_dir.name
        assert store.sample_status(sid) is SampleStatus.COMPLETE
        np.testing.assert_array_equal(store.read_embeddings(sid), reference.read_embeddings(sid))
        counts = store.read_counts(sid)
        assert counts is not None
        spots = store.read_kind(sid) == RowKind.SPOT
        assert counts.obs_names.tolist() == store.read_barcodes(sid)[spots].tolist()


def test_a_store_of_another_encoder_is_refused_and_left_untouched(
    tmp_path: Path, synth_cohort: list[Path]
) -> None:
    path = tmp_path / "small.zarr"
    embed_samples(
        [SampleInput(synth_cohort[0], image=fullres_image_of(synth_cohort[0]))],
        store=path,
        encoder="test-vit-small",
        device="cpu",
    )
    before = tree_digest(path)
    result = run_cli(*embed_args(synth_cohort, path))
    assert_one_line_error(result, "test-vit-small", ENCODER, "Nothing was written")
    assert tree_digest(path) == before


# --- bad input: one line, exit 2 ------------------------------------------------------------


def test_unknown_encoder_suggests_close_names(tmp_path: Path, synth_cohort: list[Path]) -> None:
    store = tmp_path / "new.zarr"
    args = embed_args(synth_cohort[:1], store)
    args[args.index(ENCODER)] = "test-vit-tin"
    line = assert_one_line_error(call_cli(*args), "unknown encoder 'test-vit-tin'")
    assert "did you mean 'test-vit-tiny'" in line
    assert not store.exists()


def test_weights_that_do_not_fit_are_refused(tmp_path: Path, synth_cohort: list[Path]) -> None:
    import torch
    from safetensors.torch import save_file

    weights = tmp_path / "random.safetensors"
    save_file({"blocks.0.attn.qkv.weight": torch.randn(8, 4), "head.bias": torch.randn(3)}, weights)
    store = tmp_path / "new.zarr"
    result = call_cli(*embed_args(synth_cohort[:1], store, "--weights", weights))
    assert_one_line_error(result, str(weights), "does not fit encoder 'test-vit-tiny'")
    assert not store.exists()


def test_a_plain_folder_is_not_taken_for_a_store(tmp_path: Path, synth_cohort: list[Path]) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a store")
    result = call_cli(*embed_args(synth_cohort[:1], folder))
    assert_one_line_error(result, str(folder), "not a tmescope cohort store")
    assert tree_digest(folder) == {"notes.txt": hashlib.sha256(b"not a store").hexdigest()}


def test_a_store_under_a_regular_file_is_not_writable(
    tmp_path: Path, synth_cohort: list[Path]
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = call_cli(*embed_args(synth_cohort[:1], blocker / "cohort.zarr"))
    assert_one_line_error(result, "cannot create a cohort store", "not a writable folder")
    assert blocker.read_text() == "x"


def test_a_sample_without_spots_in_tissue_is_refused(
    tmp_path: Path, synth_cohort: list[Path]
) -> None:
    sample_dir = copy_sample(synth_cohort[0], tmp_path / "bare")
    positions = sample_dir / "outs" / "spatial" / "tissue_positions.csv"
    table = pd.read_csv(positions)
    table["in_tissue"] = 0  # every row kept: the matrix's barcodes still have positions
    table.to_csv(positions, index=False)
    store = tmp_path / "new.zarr"
    result = call_cli(*embed_args([sample_dir], store))
    assert_one_line_error(result, "bare", "in tissue")
    assert not store.exists()


def _shift_one_spot(sample_dir: Path) -> None:
    positions = sample_dir / "outs" / "spatial" / "tissue_positions.csv"
    table = pd.read_csv(positions)
    first = table.index[table["in_tissue"] == 1][0]
    table.loc[first, "pxl_col_in_fullres"] += 3
    table.to_csv(positions, index=False)


def _bump_one_count(sample_dir: Path) -> None:
    with h5py.File(sample_dir / "outs" / "filtered_feature_bc_matrix.h5", "r+") as f:
        f["matrix/data"][0] += 1


def test_a_sample_id_from_other_data_needs_overwrite(
    tmp_path: Path, synth_cohort: list[Path]
) -> None:
    moved = copy_sample(synth_cohort[0], tmp_path / "moved")
    recounted = copy_sample(synth_cohort[1], tmp_path / "recounted")
    store = tmp_path / "cohort.zarr"
    assert call_cli(*embed_args([moved, recounted], store)).returncode == 0
    old = {
        s: CohortStore.open(store).sample_record(s).meta.source_hash for s in ("moved", "recounted")
    }
    _shift_one_spot(moved)
    _bump_one_count(recounted)

    before = tree_digest(store)
    for sample_dir in (moved, recounted):
        result = call_cli(*embed_args([sample_dir], store))
        assert_one_line_error(
            result, f"{sample_dir.name!r} is already in", "source hash", "overwrite"
        )
    assert tree_digest(store) == before

    result = call_cli(*embed_args([moved, recounted], store, "--overwrite", "--json"))
    assert result.returncode == 0, result.stderr
    assert [s["status"] for s in json.loads(result.stdout)] == ["embedded", "embedded"]
    reopened = CohortStore.open(store)
    assert reopened.verify() == []
    for sample_id, source_hash in old.items():
        assert reopened.sample_record(sample_id).meta.source_hash != source_hash
    spots = reopened.read_kind("moved") == RowKind.SPOT
    barcodes = reopened.read_barcodes("moved")[spots]
    coords = reopened.read_coords("moved")[spots]
    table = pd.read_csv(moved / "outs" / "spatial" / "tissue_positions.csv").set_index("barcode")
    expected = table.loc[barcodes, ["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
    np.testing.assert_array_equal(coords, expected)


def test_one_image_per_sample(tmp_path: Path, synth_cohort: list[Path]) -> None:
    store = tmp_path / "new.zarr"
    image = fullres_image_of(synth_cohort[0])
    args = ["embed", *synth_cohort, "--image", image, "--store", store, "--encoder", ENCODER]
    assert_one_line_error(call_cli(*args), "1 --image for 2 samples")
    assert not store.exists()


def test_cuda_without_a_gpu(tmp_path: Path, synth_cohort: list[Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    store = tmp_path / "new.zarr"
    result = call_cli(*embed_args(synth_cohort[:1], store, "--device", "cuda"))
    assert_one_line_error(result, "--device cuda", "GPU")
    assert not store.exists()


def test_fp16_on_cpu(tmp_path: Path, synth_cohort: list[Path]) -> None:
    store = tmp_path / "new.zarr"
    result = call_cli(
        *embed_args(synth_cohort[:1], store, "--device", "cpu", "--precision", "fp16")
    )
    assert_one_line_error(result, "fp16", "GPU")


def test_batch_size_zero(tmp_path: Path, synth_cohort: list[Path]) -> None:
    store = tmp_path / "new.zarr"
    result = call_cli(*embed_args(synth_cohort[:1], store, "--batch-size", "0"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "--batch-size" in line]
    assert len(lines) == 1 and "greater than or equal to 1" in lines[0], result.stderr
    assert not store.exists()


# --- the sample sheet -----------------------------------------------------------------------


def sheet_args(sheet: Path, store: Path, *extra: str | Path) -> list[str | Path]:
    return ["embed", "--samplesheet", sheet, "--store", store, "--encoder", ENCODER, *extra]


def test_a_samplesheet_embeds_its_rows_and_keeps_their_metadata(
    tmp_path: Path, store_copy: Path, synth_cohort: list[Path]
) -> None:
    a, b = synth_cohort
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a").symlink_to(a)
    (tmp_path / "sheets").mkdir()
    sheet = tmp_path / "sheets" / "cohort.csv"
    sheet.write_text(
        "sample,path,image,patient,group\n"
        # already complete in the store: its metadata are set, nothing is embedded again
        f"{a.name},../runs/a,../runs/a/{fullres_image_of(a).name},P1,responder\n"
        # a new id (absolute paths): embedded, with its metadata
        f"again,{b},{fullres_image_of(b)},P1,\n"
    )
    result = call_cli(*sheet_args(sheet, store_copy, "--device", "cpu", "--json"))
    assert result.returncode == 0, result.stderr
    assert [(s["sample_id"], s["status"]) for s in json.loads(result.stdout)] == [
        (a.name, "metadata updated"),
        ("again", "embedded"),
    ]
    ls = call_cli("store", "ls", store_copy, "--json")
    rows = {r["sample_id"]: r for r in json.loads(ls.stdout)}
    assert list(rows) == ["again", a.name, b.name]
    assert rows[a.name]["metadata"] == {"patient": "P1", "group": "responder"}
    assert rows["again"]["metadata"] == {"patient": "P1", "group": ""}
    assert rows[b.name]["metadata"] == {}  # not in the sheet: left as it was
    for row in rows.values():
        assert row["mpp"] == pytest.approx(0.5) and row["mpp_source"] == "tiff:XResolution"
    table = " ".join(call_cli("store", "ls", store_copy).stdout.split())
    assert "group=responder, patient=P1" in table and "tiff:XResolution" in table

    before = tree_digest(store_copy)
    again = call_cli(*sheet_args(sheet, store_copy))
    assert again.returncode == 0, again.stderr
    assert "2 skipped" in " ".join(again.stdout.split())
    assert tree_digest(store_copy) == before


BAD_SHEETS = {
    "a repeated sample": ("sample,path,image\nA,{a},\nA,{b},\n", "row 3", "column 'sample'"),
    "a missing folder": ("sample,path\nA,nowhere\n", "row 2", "column 'path'"),
    "other columns": ("name,folder\nA,{a}\n", "row 1", "column 'sample'"),
    "an id the store refuses": ("sample,path\nA b,{a}\n", "row 2", "not usable as a store key"),
}


@pytest.mark.parametrize("case", BAD_SHEETS)
def test_a_bad_samplesheet_is_one_line_and_writes_nothing(
    tmp_path: Path, synth_cohort: list[Path], case: str
) -> None:
    text, *fragments = BAD_SHEETS[case]
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(text.format(a=synth_cohort[0], b=synth_cohort[1]))
    store = tmp_path / "new.zarr"
    assert_one_line_error(call_cli(*sheet_args(sheet, store)), str(sheet), *fragments)
    assert not store.exists()


def test_a_samplesheet_names_every_sample(tmp_path: Path, synth_cohort: list[Path]) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"sample,path\nA,{synth_cohort[0]}\n")
    store = tmp_path / "new.zarr"
    image = fullres_image_of(synth_cohort[0])
    result = call_cli(*sheet_args(sheet, store, synth_cohort[0], "--image", image))
    assert_one_line_error(result, "Space Ranger folders and --image cannot be given with it")
    assert not store.exists()


# --- tmescope store / encoders ---------------------------------------------------------------


def test_store_ls_info_verify_json(
    cli_store: tuple[Path, list[dict[str, object]]], synth_cohort: list[Path]
) -> None:
    path, _ = cli_store
    ids = [d.name for d in synth_cohort]

    ls = call_cli("store", "ls", path, "--json")
    assert ls.returncode == 0, ls.stderr
    rows = json.loads(ls.stdout)
    assert [r["sample_id"] for r in rows] == ids
    for row in rows:
        assert row["status"] == "complete"
        assert (row["n_spots"], row["n_tiles"], row["dim"]) == (60, 0, 192)
        assert row["n"] == 60 + row["n_cover"] and row["n_bins"] > 0 and row["bin_um"] == 16
        assert row["chunks_written"] == row["n_chunks"] == 1
        assert row["has_counts"] is True
        assert row["nbytes"] > 0 and row["completed"]
        assert (row["mpp"], row["mpp_source"], row["metadata"]) == (0.5, "tiff:XResolution", {})

    info = call_cli("store", "info", path, "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["path"] == str(path)
    assert data["schema_version"] == 1
    assert data["fingerprint"]["model"] == ENCODER
    assert data["fingerprint"]["embed_dim"] == 192
    assert data["fingerprint"]["weights"] == "seed:0"
    assert data["created_with"].startswith("tmescope ")
    assert [s["sample_id"] for s in data["samples"]] == ids
    assert [s["mpp_source"] for s in data["samples"]] == ["tiff:XResolution"] * 2
    text = " ".join(call_cli("store", "info", path).stdout.split())
    assert f"{ids[0]} complete 0.5 µm/px (tiff:XResolution)" in text

    verify = call_cli("store", "verify", path, "--json")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout) == {"store": str(path), "ok": True, "problems": []}


def test_store_verify_names_a_missing_chunk(store_copy: Path, synth_cohort: list[Path]) -> None:
    sid = synth_cohort[0].name
    (store_copy / "samples" / sid / "embeddings" / "c" / "0" / "0").unlink()

    result = run_cli("store", "verify", store_copy)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())  # rich may wrap a long problem line
    assert f"sample '{sid}'" in text and "embeddings" in text and "missing" in text
    assert synth_cohort[1].name not in text

    as_json = call_cli("store", "verify", store_copy, "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert len(report["problems"]) == 1 and "embeddings" in report["problems"][0]


def test_store_rm(store_copy: Path, synth_cohort: list[Path]) -> None:
    gone, kept = (d.name for d in synth_cohort)
    result = call_cli("store", "rm", store_copy, gone)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"removed {gone}"
    store = CohortStore.open(store_copy)
    assert store.sample_ids(include_incomplete=True) == [kept]
    assert not (store_copy / "samples" / gone).exists()
    assert store.verify() == []

    before = tree_digest(store_copy)
    missing = run_cli("store", "rm", store_copy, "nope")
    assert_one_line_error(missing, "nope", kept, "--missing-ok")
    assert tree_digest(store_copy) == before
    again = call_cli("store", "rm", store_copy, gone, "--missing-ok", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == []  # nothing left to remove: a script may run it again
    assert tree_digest(store_copy) == before


def test_encoders_json() -> None:
    result = call_cli("encoders", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows[ENCODER]["dim"] == 192
    assert rows[ENCODER]["gated"] is False
    assert rows[ENCODER]["weights_found"] is None  # seeded: needs no weights
    assert rows["uni"]["gated"] is True
    assert rows["uni"]["hf_repo"]
