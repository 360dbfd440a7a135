"""Writers side by side on one store: four embeddings at once, the same sample twice, an index
build or a training while samples are being added. Nothing lost, nothing duplicated, and a
reader (the index, the training) sees complete samples only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reliability_tally
from kill_harness import CHILD_ENV
from tmescope.store import CohortStore

EMBED = ("--encoder", "test-vit-tiny", "--device", "cpu")
CHILD = Path(__file__).resolve().parents[1] / "embed_child.py"  # embeds, holding part-way if asked


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tmescope", *args], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, **CHILD_ENV},
    )  # fmt: skip


def _embed_args(sample: str, store: str = "store.zarr") -> list[str]:
    return ["embed", f"cohort/{sample}", "--image", f"cohort/{sample}/{sample}_he.tif",
            "--store", store, *EMBED]  # fmt: skip


def _finish(child: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    out, err = child.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return child.returncode, out, err


def _cohort(root: Path, n_samples: int, n_spots: int) -> list[str]:
    from tmescope.datasets import write_synthetic_cohort

    dirs = write_synthetic_cohort(root / "cohort", n_samples=n_samples, n_spots=n_spots, seed=9)
    return [d.name for d in dirs]


@pytest.mark.slow
def test_four_processes_embed_four_samples_into_one_new_store(tmp_path: Path) -> None:
    if not reliability_tally.full():
        pytest.skip("in the full matrix only (make reliability); tests/store/test_concurrency.py "
                    "runs two writers in make test")  # fmt: skip
    samples = _cohort(tmp_path, 4, 60)
    children = [_start(_embed_args(s), tmp_path) for s in samples]  # racing to create the store
    results = [_finish(c) for c in children]
    assert [r[0] for r in results] == [0, 0, 0, 0], [r[2][-500:] for r in results]
    store = CohortStore.open(tmp_path / "store.zarr")
    assert store.sample_ids() == samples and store.verify() == []
    # Each sample as one process alone writes it: nothing lost, nothing mixed between samples.
    for sample in samples[:2]:
        _finish(_start(_embed_args(sample, "alone.zarr"), tmp_path))
    alone = CohortStore.open(tmp_path / "alone.zarr")
    for sample in samples[:2]:
        assert (store.read_barcodes(sample) == alone.read_barcodes(sample)).all()
        np.testing.assert_array_equal(store.read_embeddings(sample), alone.read_embeddings(sample))
    reliability_tally.count("concurrent", "4 processes embed 4 samples into one new store",
                            runs=1, samples_complete=4, lost=0, duplicated=0)  # fmt: skip


@pytest.mark.slow
def test_the_same_sample_twice_at_once_is_written_once(tmp_path: Path) -> None:
    if not reliability_tally.full():
        pytest.skip("in the full matrix only (make reliability); tests/store/test_concurrency.py "
                    "refuses a second writer of one sample in make test")  # fmt: skip
    (sample,) = _cohort(tmp_path, 1, 60)
    first = _hold_part_way(sample, tmp_path)  # certainly mid-way while the second starts
    try:
        code, _, err = _finish(_start(_embed_args(sample), tmp_path))
    finally:
        first.kill()
        first.communicate()
    assert code == 2 and "being written by another live process" in err, err
    assert len(err.strip().splitlines()) == 1  # one line
    _resume(sample, tmp_path)
    store = CohortStore.open(tmp_path / "store.zarr")
    assert store.sample_ids() == [sample] and store.verify() == []
    reliability_tally.count("concurrent", "2 processes embed the same sample", runs=1,
                            refused_with_one_line=1, lost=0, duplicated=0)  # fmt: skip


def _hold_part_way(sample: str, cwd: Path) -> subprocess.Popen[str]:
    """A writer of ``sample`` that stops after its first chunk and waits there (embed_child.py)."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "store.zarr", "16", f"cohort/{sample}", "--hold-after", "1"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **CHILD_ENV},
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "holding\n", child.stderr
    return child


def _resume(sample: str, cwd: Path) -> None:
    resumed = subprocess.run(
        [sys.executable, str(CHILD), "store.zarr", "16", f"cohort/{sample}"], cwd=cwd,
        capture_output=True, text=True, env={**os.environ, **CHILD_ENV}, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0 and '"status": "resumed"' in resumed.stdout, resumed.stderr


@pytest.mark.slow
@pytest.mark.parametrize("reader", ["index", "train"])
def test_a_reader_run_while_a_sample_is_added_sees_complete_samples_only(
    tmp_path: Path, reader: str
) -> None:
    if not reliability_tally.full():  # make test: tests/store/test_concurrency.py's writers
        pytest.skip("in the full matrix only (make reliability)")
    from tmescope.jobs.embed import SampleInput
    from tmescope.workflows import embed_samples

    first, second, third = _cohort(tmp_path, 3, 60)
    done = [SampleInput(tmp_path / "cohort" / s, image=tmp_path / "cohort" / s / f"{s}_he.tif")
            for s in (first, second)]  # fmt: skip
    embed_samples(done, store=tmp_path / "store.zarr", encoder="test-vit-tiny", device="cpu")
    # The third stops part-way (after its first chunk) and waits there while the reader runs.
    writer = _hold_part_way(third, tmp_path)
    try:
        if reader == "index":
            code, _, err = _finish(_start(["index", "store.zarr"], tmp_path))
            assert code == 0, err
            from tmescope.store.index import read_index_info

            info = read_index_info(CohortStore.open(tmp_path / "store.zarr"))
            assert info is not None
            seen = [s.sample_id for s in info.samples]
        else:
            args = ["train", "store.zarr", "--out", "model", "--model", "ridge", "--genes", "20",
                    "--members", "1", "--device", "cpu"]  # fmt: skip
            code, _, err = _finish(_start(args, tmp_path))
            assert code == 0, err
            seen = json.loads((tmp_path / "model" / "model.json").read_text())["samples"]
    finally:
        writer.kill()
        writer.communicate()
    assert sorted(seen) == [first, second]  # the sample being written is invisible
    # The interrupted sample resumes; the store then holds all three, each once.
    _resume(third, tmp_path)
    store = CohortStore.open(tmp_path / "store.zarr")
    assert store.verify() == [] and store.sample_ids() == [first, second, third]
    reliability_tally.count("concurrent", f"{reader} while a sample is being added", runs=1,
                            saw_only_complete=1, lost=0)  # fmt: skip
