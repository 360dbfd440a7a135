"""The CLI end to end, in a subprocess as a user runs it: output, JSON and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tmescope import __version__

HEART = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "visium_human_heart_scanpy"


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tmescope", *map(str, args)], capture_output=True, text=True
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"tmescope {__version__}"


@pytest.mark.parametrize("command", [[], ["synth"], ["info"], ["demo"]])
def test_help_everywhere(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_synth_then_info_json(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    result = run_cli("synth", out, "--samples", "1", "--spots", "60", "--seed", "3", "--json")
    assert result.returncode == 0, result.stderr
    (sample_dir,) = (Path(p) for p in json.loads(result.stdout))
    tiff = next(sample_dir.glob("*.tif"))
    info = run_cli("info", sample_dir, "--image", tiff, "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["n_spots"] == 60
    assert summary["n_in_tissue"] == 60
    assert summary["platform"] == "visium"
    assert summary["mpp"] == pytest.approx(0.5, rel=1e-3)
    assert summary["image"]["kind"] == "fullres"
    assert summary["image"]["levels"] > 1


def test_info_table_without_image_uses_hires(synth_cohort: list[Path]) -> None:
    result = run_cli("info", synth_cohort[0])  # synth's output (tests/conftest.py), read only
    assert result.returncode == 0, result.stderr
    assert "hires" in result.stdout
    assert "spot-pitch" in result.stdout


def test_missing_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("info", tmp_path / "nowhere"), "does not exist")


def test_truncated_matrix_is_one_line_exit_2(tmp_path: Path, synth_cohort: list[Path]) -> None:
    outs = tmp_path / "outs"
    shutil.copytree(synth_cohort[0] / "outs", outs)
    h5 = outs / "filtered_feature_bc_matrix.h5"
    h5.write_bytes(h5.read_bytes()[:3000])
    assert_one_line_error(run_cli("info", outs), "truncated")


def test_hd_bin_size_summed_from_2_um_bins_or_refused_in_one_line(tmp_path: Path) -> None:
    from factories import write_visium_hd

    hd = write_visium_hd(tmp_path, bin_sizes=(2, 8))
    summed = run_cli("info", hd.path, "--bin-size", "4", "--json")
    assert summed.returncode == 0, summed.stderr
    summary = json.loads(summed.stdout)
    assert (summary["platform"], summary["bin_size_um"], summary["n_spots"]) == ("visium_hd", 4, 9)
    assert_one_line_error(
        run_cli("info", hd.path, "--bin-size", "5"), "no 5 µm bins", "multiple of 2 µm"
    )


def test_bad_mpp_option_is_one_line_exit_2() -> None:
    if not HEART.is_dir():
        pytest.skip(f"public heart sample not found at {HEART}")
    assert_one_line_error(run_cli("info", HEART, "--mpp", "-1"), "mpp")


def test_unknown_option_is_a_usage_error() -> None:
    result = run_cli("synth", "x", "--samples", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.realdata
def test_info_on_public_heart_sample() -> None:
    if not HEART.is_dir():
        pytest.skip(f"public heart sample not found at {HEART}")
    result = run_cli("info", HEART, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["n_spots"], summary["n_genes"]) == (100, 100)
    assert summary["image"]["kind"] == "lowres"
    assert summary["mpp_source"] == "spot-pitch"
    # 138 px between neighbouring spots, 100 µm apart.
    assert summary["mpp"] == pytest.approx(100 / 138, rel=0.01)
    assert "warning:" in result.stderr
