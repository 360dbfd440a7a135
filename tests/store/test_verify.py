"""``verify`` finds what is wrong: missing chunks, stuck samples, foreign encoders, leftovers."""

from __future__ import annotations

import json
import shutil

from cohort_factories import SampleData, make_sample, write_sample

from tmescope.store import CohortStore


def test_a_sound_store_has_no_problems(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    write_sample(store, "S2", make_sample(seed=1, source_hash="h1"), counts=False)
    assert store.verify() == []


def test_a_deleted_chunk_file_is_found(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    (store.path / "samples/S1/embeddings/c/2/0").unlink()
    (store.path / "samples/S1/barcodes/c/0").unlink()
    problems = store.verify()
    assert len(problems) == 2
    assert any("embeddings: 1 of 4 chunks missing (2)" in p for p in problems)
    assert any("barcodes: 1 of 4 chunks missing (0)" in p for p in problems)
    assert all(p.startswith("sample 'S1': ") for p in problems)


def test_a_sample_stuck_in_writing_is_found(store: CohortStore, sample: SampleData) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        writer.write_chunk(0, sample.embeddings[writer.rows(0)])
        writer.write_chunk(1, sample.embeddings[writer.rows(1)])
    (store.path / "samples/S1/embeddings/c/1/0").unlink()
    problems = store.verify()
    assert "embeddings: chunks 1 are flagged as written but missing" in problems[0]
    assert "stuck in 'writing' (2 of 4 chunks written)" in problems[1]


def test_a_sample_of_another_encoder_is_found(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    metadata_file = store.path / "samples/S1/zarr.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["attributes"]["fingerprint"]["weights"] = "seed:1"
    metadata_file.write_text(json.dumps(metadata))
    (problem,) = store.verify()
    assert (
        "another encoder" in problem
        and "weights: store has 'seed:0', asked for 'seed:1'" in problem
    )


def test_wrong_shapes_damaged_attributes_and_leftovers_are_found(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", sample)
    write_sample(store, "S2", make_sample(seed=2, source_hash="h2"))
    metadata_file = store.path / "samples/S1/zarr.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["attributes"]["dim"] = 9
    metadata_file.write_text(json.dumps(metadata))
    metadata_file = store.path / "samples/S2/zarr.json"
    metadata = json.loads(metadata_file.read_text())
    del metadata["attributes"]["n"]
    metadata_file.write_text(json.dumps(metadata))
    shutil.copytree(store.path / "samples/S2/coords", store.path / "samples/.S3.0123.removing")
    (store.path / "samples/half").mkdir()
    problems = store.verify()
    assert any("left by an interrupted removal" in p for p in problems)
    assert any("samples/half: a folder without zarr.json" in p for p in problems)
    assert any(
        "sample 'S1': embeddings is (49, 8)" in p and "expected (49, 9)" in p for p in problems
    )
    assert any("sample 'S2'" in p and "malformed attributes" in p for p in problems)
    assert [s.status for s in store.summary()] == ["complete", "damaged"]
