"""``tmescope train`` and ``tmescope predict`` from the command line: tables, JSON, bad input.

Training that succeeds, or is killed and resumed, runs in a process of its own as a user runs
it; the bad-input cases call the same entry point in this process (cli_calls.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli_calls import call_cli, run_cli


@pytest.fixture(scope="module")
def two_samples(synth_store: Path) -> Path:
    """Both synthetic samples embedded (the session's store, see conftest.py); read-only."""
    return synth_store


def test_train_prints_json_with_every_model_asked_for(two_samples: Path, tmp_path: Path) -> None:
    result = run_cli(
        "train", two_samples, "--out", tmp_path / "m", "--model", "ridge,ridge-cv",
        "--target", "expression", "--genes", "8", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["models"]) == {"ridge", "ridge-cv"}
    assert len(report["models"]["ridge-cv"]["folds"]) == 2
    assert len(report["models"]["ridge"]["per_gene"]) >= 8


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "forest"], "forest"),
        (["--members", "0"], "--members"),
        (["--label-key", "cell_type"], "give --reference"),
        (["--resolution", "-16"], "--resolution must be a bin size"),
        (["--folds", "nofile.csv"], "nofile.csv"),
        (["--genes", "100000", "--model", "ridge"], "variable genes"),  # refused mid-training
    ],
)
def test_bad_training_requests_are_one_line_exit_2(
    two_samples: Path, tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = call_cli("train", two_samples, "--out", tmp_path / "m", "--device", "cpu", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert not (tmp_path / "m").exists()
    assert not (tmp_path / ".m.train-work").exists()  # nothing kept of a refused training


def test_predict_without_a_model_says_how_to_train_one(two_samples: Path, tmp_path: Path) -> None:
    result = call_cli(
        "predict", two_samples, tmp_path / "none", "--sample", "synth_00", "--out", tmp_path / "p"
    )
    assert result.returncode == 2
    assert "tmescope train" in result.stderr


def test_train_killed_after_a_fold_resumes_to_the_same_model(
    two_samples: Path, synth_cohort: list[Path], tmp_path: Path
) -> None:
    """SIGKILL once the first fold is kept: the next run reads that fold back instead of fitting
    it again, and ends with the model an uninterrupted run writes (one thread: bit for bit)."""
    import os
    import signal
    import time

    from kill_harness import CHILD_ENV

    args = ["--model", "ridge", "--target", "expression", "--genes", "8", "--members", "1",
            "--device", "cpu", "--resolution", "16",
            "--reference", synth_cohort[0].parent / "reference.h5ad", "--json"]  # fmt: skip
    env = {**os.environ, **CHILD_ENV}

    def train(out: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tmescope", "train", two_samples, "--out", out, *args]
        return subprocess.run(list(map(str, command)), capture_output=True, text=True, env=env)

    reference = train(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    kept = tmp_path / ".model.train-work" / "folds" / "0" / "scores.json"
    out = tmp_path / "model"
    command = [sys.executable, "-m", "tmescope", "train", two_samples, "--out", out, *args]
    child = subprocess.Popen(list(map(str, command)), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    while child.poll() is None and not kept.exists():
        time.sleep(0.01)
    assert child.poll() is None, "the training ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert kept.exists() and not (tmp_path / "model").exists()
    resumed = train(tmp_path / "model")
    assert resumed.returncode == 0, resumed.stderr
    assert "synth_00: ridge mean Pearson" not in resumed.stderr  # the first fold was read back
    assert "synth_01: ridge mean Pearson" in resumed.stderr
    first, again = json.loads(reference.stdout), json.loads(resumed.stdout)
    for report in (first, again):
        for scores in report["models"].values():
            scores.pop("fit_seconds")  # the one figure a resumed fold keeps from its first run
    assert again["models"] == first["models"] and again["folds"] == first["folds"]
    for part in ("head/member_0.safetensors", "subspot/weights.safetensors"):
        assert (out / part).read_bytes() == (tmp_path / "reference" / part).read_bytes()
    assert not (tmp_path / ".model.train-work").exists()  # the work folder goes with success
