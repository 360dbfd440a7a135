"""Folds hold whole samples (or patients) apart; fold files are checked for leaks and typos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tmescope.errors import InputNotFoundError, InvalidParameterError, TrainingDataError
from tmescope.fusion.folds import (
    Fold,
    group_k_folds,
    inner_validation_split,
    leave_one_group_out,
    leave_one_sample_out,
    read_folds,
    read_sample_groups,
)

SAMPLES = ("S1", "S2", "S3", "S4")


def test_leave_one_sample_out_tests_each_sample_once() -> None:
    folds = leave_one_sample_out(list(SAMPLES))
    assert [f.name for f in folds] == list(SAMPLES)
    assert [f.test for f in folds] == [(s,) for s in SAMPLES]
    for fold in folds:
        assert set(fold.train) | set(fold.test) == set(SAMPLES)
        assert not set(fold.train) & set(fold.test)
    assert folds[1].train == ("S1", "S3", "S4")  # order kept


def test_leave_one_sample_out_needs_two_samples() -> None:
    with pytest.raises(TrainingDataError, match=r"at least 2 samples; the store holds 1: embed"):
        leave_one_sample_out(["S1"])


def test_repeated_sample_id_is_refused() -> None:
    with pytest.raises(TrainingDataError, match="repeated 'S1'"):
        leave_one_sample_out(["S1", "S2", "S1"])


def test_leave_one_group_out_holds_out_whole_patients() -> None:
    groups = {"S1": "P1", "S2": "P2", "S3": "P1", "S4": "P3"}
    folds = leave_one_group_out(groups)
    assert [f.name for f in folds] == ["P1", "P2", "P3"]
    assert folds[0].test == ("S1", "S3") and folds[0].train == ("S2", "S4")
    for fold in folds:
        # no patient on both sides
        assert not {groups[s] for s in fold.train} & {groups[s] for s in fold.test}


def test_group_k_folds_keep_patients_whole_and_balanced() -> None:
    # 23 patients of 1 to 3 sections each: 5 folds, each patient tested in exactly one.
    sizes = [1 + i % 3 for i in range(23)]
    groups = {f"p{i}_s{j}": f"p{i}" for i, size in enumerate(sizes) for j in range(size)}
    folds = group_k_folds(groups, k=5, seed=0)
    assert [f.name for f in folds] == [f"fold {i}" for i in range(1, 6)]
    tested = [s for f in folds for s in f.test]
    assert sorted(tested) == sorted(groups)  # every sample tested once
    for fold in folds:
        patients = {groups[s] for s in fold.test}
        assert not patients & {groups[s] for s in fold.train}  # no patient on both sides
        assert set(fold.train) | set(fold.test) == set(groups)
    per_fold = [len(f.test) for f in folds]
    assert max(per_fold) - min(per_fold) <= 3  # balanced to within one patient's sections
    assert group_k_folds(groups, k=5, seed=0) == folds  # the seed alone decides
    assert group_k_folds(groups, k=5, seed=1) != folds


def test_group_k_folds_with_few_groups_leave_one_group_out() -> None:
    groups = {"S1": "A", "S2": "A", "S3": "B", "S4": "C"}
    assert group_k_folds(groups, k=5) == leave_one_group_out(groups)
    with pytest.raises(InvalidParameterError, match=">= 2"):
        group_k_folds(groups, k=1)


def test_leave_one_group_out_needs_two_groups() -> None:
    with pytest.raises(TrainingDataError, match=r"at least 2 groups.*found 1 \('P1'\)"):
        leave_one_group_out({"S1": "P1", "S2": "P1"})


def test_fold_refuses_leaks_and_empty_sides() -> None:
    with pytest.raises(TrainingDataError, match=r"both its training and test sets \(S2\).*leaks"):
        Fold(name="f", train=("S1", "S2"), test=("S2",))
    with pytest.raises(TrainingDataError, match="empty training set"):
        Fold(name="f", train=(), test=("S2",))
    with pytest.raises(TrainingDataError, match="empty test set"):
        Fold(name="f", train=("S1",), test=())


def test_read_folds_csv_trains_on_all_other_samples(tmp_path: Path) -> None:
    path = tmp_path / "folds.csv"
    path.write_text("sample_id,fold\nS1,0\nS2,0\nS3,1\n")
    folds = read_folds(path, SAMPLES)
    assert [(f.name, f.train, f.test) for f in folds] == [
        ("0", ("S3", "S4"), ("S1", "S2")),
        ("1", ("S1", "S2", "S4"), ("S3",)),
    ]


def test_read_folds_csv_suggests_close_ids(tmp_path: Path) -> None:
    path = tmp_path / "folds.csv"
    path.write_text("sample_id,fold\nS1,0\ns_2,1\n")
    with pytest.raises(TrainingDataError, match=r"not in the store: 's_2' \(did you mean 'S2'"):
        read_folds(path, ["S1", "S2", "X9"])


def test_read_folds_csv_fold_testing_everything_has_no_training(tmp_path: Path) -> None:
    path = tmp_path / "folds.csv"
    path.write_text("sample_id,fold\nS1,a\nS2,a\n")
    with pytest.raises(TrainingDataError, match=r"folds.csv: fold 'a' has an empty training set"):
        read_folds(path, ["S1", "S2"])


def test_read_folds_csv_needs_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "folds.csv"
    path.write_text("sample,split\nS1,0\n")
    with pytest.raises(TrainingDataError, match="columns sample_id and fold; found sample, split"):
        read_folds(path, SAMPLES)
    path.write_text("")
    with pytest.raises(TrainingDataError, match="cannot be read as a CSV"):
        read_folds(path, SAMPLES)


def test_read_folds_json(tmp_path: Path) -> None:
    path = tmp_path / "folds.json"
    spec = {"a": {"train": ["S1", "S2"], "test": ["S3"]}, "b": {"train": ["S3"], "test": ["S4"]}}
    path.write_text(json.dumps(spec))
    folds = read_folds(path, SAMPLES)
    assert folds == [Fold("a", ("S1", "S2"), ("S3",)), Fold("b", ("S3",), ("S4",))]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"a": {"train": ["S1", "S2"], "test": ["S2"]}}, r"fold 'a' has samples in both.*S2"),
        ({"a": {"train": ["S1"], "test": []}}, "empty test set"),
        ({"a": {"train": ["S1"]}}, "'train' and 'test' lists"),
        ({"a": {"train": "S1", "test": ["S2"]}}, "as strings"),
        (["S1"], "must hold an object"),
        ({}, "defines no fold"),
        ({"a": {"train": ["S1"], "test": ["S22"]}}, r"'S22' \(did you mean 'S2'"),
    ],
)
def test_read_folds_json_refuses_bad_folds(tmp_path: Path, spec: object, message: str) -> None:
    path = tmp_path / "folds.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(TrainingDataError, match=message):
        read_folds(path, SAMPLES)


def test_read_folds_refuses_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="does not exist"):
        read_folds(tmp_path / "nope.csv", SAMPLES)
    (tmp_path / "folds.txt").write_text("S1 0\n")
    with pytest.raises(InvalidParameterError, match=r"\.csv.*\.json.*'\.txt'"):
        read_folds(tmp_path / "folds.txt", SAMPLES)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TrainingDataError, match="not valid JSON"):
        read_folds(tmp_path / "bad.json", SAMPLES)


def test_read_sample_groups(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text("sample_id,patient\nS1,P1\nS2,P1\nS3,P2\n")
    assert read_sample_groups(path) == {"S1": "P1", "S2": "P1", "S3": "P2"}
    path.write_text("sample_id,patient,site\nS1,P1,A\nS2,P2,A\n")
    assert read_sample_groups(path, group_key="site") == {"S1": "A", "S2": "A"}
    with pytest.raises(
        InvalidParameterError, match=r"2 columns besides sample_id \(patient, site\)"
    ):
        read_sample_groups(path)
    with pytest.raises(InvalidParameterError, match=r"no column 'donor'.*sample_id, patient, site"):
        read_sample_groups(path, group_key="donor")


def test_read_sample_groups_refuses_conflicts_and_gaps(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text("sample_id,patient\nS1,P1\nS1,P2\n")
    with pytest.raises(TrainingDataError, match="'S1' in two groups"):
        read_sample_groups(path)
    path.write_text("sample_id,patient\nS1,\n")
    with pytest.raises(TrainingDataError, match="empty sample_id or patient"):
        read_sample_groups(path)
    path.write_text("id,patient\nS1,P1\n")
    with pytest.raises(TrainingDataError, match="'sample_id' column; found id, patient"):
        read_sample_groups(path)


@pytest.mark.parametrize(("n", "n_val"), [(2, 1), (3, 1), (5, 1), (10, 2), (20, 4)])
def test_inner_validation_split_holds_out_whole_samples(n: int, n_val: int) -> None:
    ids = [f"S{i}" for i in range(n)]
    fit, val = inner_validation_split(ids, fraction=0.2, seed=3)
    assert len(val) == n_val and len(fit) == n - n_val
    assert sorted(fit + val) == sorted(ids) and not set(fit) & set(val)
    assert list(fit) == [s for s in ids if s in fit]  # order kept


def test_inner_validation_split_depends_only_on_seed() -> None:
    ids = [f"S{i}" for i in range(10)]
    assert inner_validation_split(ids, seed=1) == inner_validation_split(ids, seed=1)
    assert len({inner_validation_split(ids, seed=s)[1] for s in range(10)}) > 1


def test_inner_validation_split_of_one_sample_has_no_validation() -> None:
    assert inner_validation_split(["S1"]) == (("S1",), ())


def test_inner_validation_split_refuses_bad_input() -> None:
    with pytest.raises(InvalidParameterError, match="between 0 and 1"):
        inner_validation_split(["S1", "S2"], fraction=1.0)
    with pytest.raises(TrainingDataError, match="no training sample"):
        inner_validation_split([])
