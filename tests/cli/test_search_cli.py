"""``tmescope index`` and ``tmescope query`` on a small embedded store.

The index and query runs that succeed start ``python -m tmescope`` as a user does; the
bad-input cases call the same entry point in this process (cli_calls.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_calls import call_cli, run_cli
from tmescope.store import CohortStore
from tmescope.workflows import build_cohort_index, query_store


@pytest.fixture(scope="module")
def indexed_store(tmp_path_factory: pytest.TempPathFactory, synth_store: Path) -> Path:
    """A copy of the session's store of both synthetic samples, with its similarity index."""
    path = tmp_path_factory.mktemp("search") / "cohort.zarr"
    shutil.copytree(synth_store, path)
    build_cohort_index(path)
    return path


def test_a_spot_finds_itself_first(indexed_store: Path) -> None:
    store = CohortStore.open(indexed_store)
    barcode = str(store.read_barcodes("synth_00")[3])
    hits = query_store(indexed_store, spot=f"synth_00:{barcode}", k=5)
    first = hits.iloc[0]
    assert (first["rank"], first["sample_id"], first["barcode"]) == (1, "synth_00", barcode)
    assert first["score"] == pytest.approx(1.0, abs=1e-3)
    assert hits["score"].is_monotonic_decreasing


def test_exclude_sample_leaves_none_of_it(indexed_store: Path) -> None:
    store = CohortStore.open(indexed_store)
    barcode = str(store.read_barcodes("synth_00")[0])
    hits = query_store(indexed_store, spot=f"synth_00:{barcode}", k=10, exclude_sample=True)
    assert len(hits) == 10
    assert set(hits["sample_id"]) == {"synth_01"}


def test_sample_mode_gives_every_spot_its_matches(indexed_store: Path) -> None:
    store = CohortStore.open(indexed_store)
    n = len(store.read_barcodes("synth_01"))
    hits = query_store(indexed_store, sample="synth_01", k=2, exclude_sample=True)
    assert len(hits) == 2 * n
    assert set(hits["query"]) == set(store.read_barcodes("synth_01").tolist())
    assert (hits["sample_id"] == "synth_00").all()


def test_region_mode_averages_the_spots_in_a_disc(indexed_store: Path) -> None:
    store = CohortStore.open(indexed_store)
    x, y = store.read_coords("synth_00")[0]
    hits = query_store(indexed_store, region=f"synth_00:{x},{y},60", k=3)
    assert len(hits) == 3 and hits["score"].max() > 0.9


def test_cli_index_and_query_json(indexed_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(indexed_store, copy)
    built = run_cli("index", copy, "--kind", "flat", "--json")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["kind"] == "flat"
    barcode = str(CohortStore.open(copy).read_barcodes("synth_01")[1])
    result = run_cli("query", copy, "--spot", f"synth_01:{barcode}", "-k", "4", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert {"rank", "sample_id", "barcode", "x", "y", "score"} <= set(hits[0])
    assert np.isclose(hits[0]["score"], 1.0, atol=1e-3)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--spot", "synth_00:NOPE"], "no barcode 'NOPE'"),
        (["--spot", "synth_9:X"], "synth_9"),
        (["--spot", "nocolon"], "SAMPLE:BARCODE"),
        (["--region", "synth_00:1,2"], "three numbers"),
        ([], "exactly one of"),
        (["--sample", "synth_00", "--spot", "synth_00:X"], "exactly one of"),
        (["--sample", "synth_00", "-k", "0"], "k must be"),
        (["--sample", "synth_00", "-k", "100000"], "(the rows in the index), got 100000"),
        (["--sample", "synth_00", "--image", "x.png"], "exactly one of"),
    ],
)
def test_bad_queries_are_one_line_exit_2(
    indexed_store: Path, args: list[str], fragment: str
) -> None:
    result = call_cli("query", indexed_store, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def test_a_store_without_an_index_says_how_to_build_it(tmp_path: Path, indexed_store: Path) -> None:
    copy = tmp_path / "noindex.zarr"
    shutil.copytree(indexed_store, copy, ignore=shutil.ignore_patterns("index"))
    result = call_cli("query", copy, "--sample", "synth_00")
    assert result.returncode == 2
    assert "tmescope index" in result.stderr


def test_html_gallery_is_self_contained_with_k_plus_one_images(
    indexed_store: Path, tmp_path: Path
) -> None:
    barcode = str(CohortStore.open(indexed_store).read_barcodes("synth_00")[2])
    out = tmp_path / "gallery.html"
    result = run_cli(
        "query", indexed_store, "--spot", f"synth_00:{barcode}", "-k", "4", "--html", out
    )
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert page.count("<img") == 5
    assert "data:image/jpeg;base64," in page
    assert "http://" not in page and "https://" not in page
    assert page.startswith("<!DOCTYPE html>")


def test_html_needs_a_spot_or_a_region(indexed_store: Path, tmp_path: Path) -> None:
    result = call_cli("query", indexed_store, "--sample", "synth_00", "--html", tmp_path / "g.html")
    assert result.returncode == 2
    assert "--html draws a gallery" in result.stderr


def test_gallery_of_an_unknown_barcode_names_it(indexed_store: Path, tmp_path: Path) -> None:
    import pandas as pd

    from tmescope.errors import SpotNotFoundError
    from tmescope.workflows import write_query_gallery

    with pytest.raises(SpotNotFoundError, match="no barcode 'NOPE'"):
        write_query_gallery(
            indexed_store, pd.DataFrame(), tmp_path / "g.html", spot="synth_00:NOPE"
        )


def _cut_patch(store_path: Path, sample_id: str, row: int, out: Path) -> str:
    """Save the stored patch of one row as a PNG, as a user would export it; its barcode."""
    from contextlib import ExitStack

    from PIL import Image

    from tmescope.jobs.query import _PatchCutter

    store = CohortStore.open(store_path)
    x, y = store.read_coords(sample_id)[row]
    with ExitStack() as stack:
        Image.fromarray(_PatchCutter(store, stack)(sample_id, x, y)).save(out)
    return str(store.read_barcodes(sample_id)[row])


def test_an_image_of_a_spot_finds_that_spot_first(indexed_store: Path, tmp_path: Path) -> None:
    barcode = _cut_patch(indexed_store, "synth_01", 7, tmp_path / "patch.png")
    hits = query_store(indexed_store, image=tmp_path / "patch.png", k=3, device="cpu")
    first = hits.iloc[0]
    assert (first["sample_id"], first["barcode"]) == ("synth_01", barcode)
    assert first["score"] == pytest.approx(1.0, abs=1e-2)
    assert hits["query"].tolist() == ["patch.png"] * 3


def test_cli_image_query_writes_a_gallery(indexed_store: Path, tmp_path: Path) -> None:
    _cut_patch(indexed_store, "synth_00", 4, tmp_path / "patch.png")
    out = tmp_path / "g.html"
    result = run_cli(
        "query", indexed_store, "--image", tmp_path / "patch.png", "-k", "3", "--json",
        "--device", "cpu", "--html", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3
    assert out.read_text().count("<img") == 4


def test_a_file_that_is_not_an_image_is_refused(indexed_store: Path, tmp_path: Path) -> None:
    fake = tmp_path / "patch.png"
    fake.write_text("not an image")
    result = call_cli("query", indexed_store, "--image", fake, "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "could not read" in result.stderr and str(fake) in result.stderr


def test_an_image_query_with_other_weights_is_refused(indexed_store: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from tmescope.embed.registry import get_encoder_spec
    from tmescope.embed.weights import build_seeded
    from tmescope.errors import FingerprintMismatchError

    other = build_seeded(get_encoder_spec("test-vit-tiny").build, seed=123)
    save_file(other.state_dict(), tmp_path / "other.safetensors")
    _cut_patch(indexed_store, "synth_00", 0, tmp_path / "patch.png")
    with pytest.raises(FingerprintMismatchError, match="weights"):
        query_store(
            indexed_store, image=tmp_path / "patch.png", weights=tmp_path / "other.safetensors",
            device="cpu",
        )  # fmt: skip
