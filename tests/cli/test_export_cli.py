"""``tmescope export`` from the command line: a SpatialData that reads back, and bad input as
one ``error:`` line with exit code 2 and nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def store(synth_store: Path) -> Path:
    """Both synthetic samples embedded (the session's store, see conftest.py); read-only."""
    return synth_store


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tmescope", *map(str, args)], capture_output=True, text=True
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr.lower()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def test_a_store_exports_to_spatialdata_and_is_never_overwritten_unasked(
    store: Path, tmp_path: Path
) -> None:
    import spatialdata as sd

    out = tmp_path / "cohort.zarr"
    result = run_cli("export", store, "--to", "spatialdata", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    sdata = sd.read_zarr(out)
    assert len(sdata.images) == 2 and len(sdata.shapes) >= 2
    table = sdata.tables["synth_00_test-vit-tiny_embeddings"]
    assert table.obsm["spatial"].shape[1] == 2 and "embedding_config" in table.uns
    assert "synth_00_measured" in sdata.tables  # no model: what the store holds

    again = run_cli("export", store, out, "--sample", "synth_01")
    assert_one_line_error(again, "--overwrite")
    assert set(sd.read_zarr(out).coordinate_systems) == {"synth_00", "synth_01"}  # untouched
    replaced = run_cli("export", store, out, "--sample", "synth_01", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert set(sd.read_zarr(out).coordinate_systems) == {"synth_01"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.zarr"]  # no partial left


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--to", "parquet", "out.zarr"], "not a format"),
        (["out.geojson"], "--model"),
        (["out.zarr", "--sample", "nope"], "nope"),
    ],
)
def test_bad_exports_are_one_line_exit_2(
    store: Path, tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = run_cli("export", store, *[tmp_path / a if a.startswith("out") else a for a in args])
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []
