"""Cross-validation folds over whole samples (or whole patients), never over spots.

Spots of one section are spatially correlated, and sections of one patient share biology: a
model tested on spots or sections whose neighbours it trained on scores too well. HEST's
splits are leave-one-patient-out for that reason. Every :class:`Fold` here holds sample ids,
and a fold whose training and test sets share a sample cannot be built.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tmescope.errors import InputNotFoundError, InvalidParameterError, TrainingDataError

__all__ = [
    "Fold",
    "group_k_folds",
    "inner_validation_split",
    "leave_one_group_out",
    "leave_one_sample_out",
    "read_folds",
    "read_sample_groups",
]

logger = logging.getLogger(__name__)

# (name, train ids, test ids) as read from a file, before validation.
_RawFold = tuple[str, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class Fold:
    """One train/test split of sample ids; the two sets are non-empty and disjoint."""

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.train or not self.test:
            empty = "training" if not self.train else "test"
            raise TrainingDataError(
                f"fold {self.name!r} has an empty {empty} set; every fold needs at least one "
                "training and one test sample: list samples on both sides or drop the fold"
            )
        shared = sorted(set(self.train) & set(self.test))
        if shared:
            raise TrainingDataError(
                f"fold {self.name!r} has samples in both its training and test sets "
                f"({', '.join(shared)}): that leaks test data into training; "
                "put each sample on one side only"
            )


def leave_one_sample_out(sample_ids: Sequence[str]) -> list[Fold]:
    """One fold per sample, named after it: that sample is tested, all others train."""
    ids = _unique(sample_ids, "sample id")
    if len(ids) < 2:
        raise TrainingDataError(
            f"cross-validation needs at least 2 samples; the store holds {len(ids)}: "
            "embed another sample into the store, or train without held-out evaluation"
        )
    return [Fold(name=s, train=tuple(t for t in ids if t != s), test=(s,)) for s in ids]


def leave_one_group_out(sample_to_group: Mapping[str, str]) -> list[Fold]:
    """One fold per group (a patient): all its samples are tested, all other samples train.

    Folds follow the order in which groups first appear in ``sample_to_group``.
    """
    groups: dict[str, list[str]] = {}
    for sample, group in sample_to_group.items():
        groups.setdefault(str(group), []).append(str(sample))
    if len(groups) < 2:
        found = f"1 ({next(iter(groups))!r})" if groups else "none"
        raise TrainingDataError(
            f"leave-one-group-out needs at least 2 groups (patients); found {found}: "
            "add samples of another patient, or use leave-one-sample-out if the samples "
            "are independent"
        )
    samples = [str(s) for s in sample_to_group]
    return [
        Fold(name=group, train=tuple(s for s in samples if s not in members), test=tuple(members))
        for group, members in groups.items()
    ]


def read_folds(path: str | Path, sample_ids: Sequence[str]) -> list[Fold]:
    """Folds from a CSV (``sample_id,fold``) or JSON (``{fold: {"train": [...], "test": [...]}}``).

    In the CSV each row puts one sample in the test set of one fold; the fold trains on every
    other sample of ``sample_ids``. Ids unknown to ``sample_ids``, a sample on both sides of a
    fold, or an empty side raise :class:`TrainingDataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"fold file {path} does not exist: give a .csv or .json file")
    known = _unique(sample_ids, "sample id")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raw = _read_csv_folds(path, known)
    elif suffix == ".json":
        raw = _read_json_folds(path)
    else:
        raise InvalidParameterError(
            f"fold file {path} must end in .csv (columns sample_id,fold) or .json "
            f'({{"fold": {{"train": [...], "test": [...]}}}}); found {path.suffix or "no suffix"!r}'
        )
    if not raw:
        raise TrainingDataError(f"{path} defines no fold: add at least one")
    _check_known([s for _, train, test in raw for s in (*train, *test)], known, path)
    folds = []
    for name, train, test in raw:
        try:
            folds.append(Fold(name=name, train=train, test=test))
        except TrainingDataError as error:
            raise TrainingDataError(f"{path}: {error}") from error
    logger.info("read %d folds from %s", len(folds), path)
    return folds


def read_sample_groups(path: str | Path, *, group_key: str | None = None) -> dict[str, str]:
    """Sample id → group (e.g. patient) from a CSV with ``sample_id`` and a group column.

    ``group_key`` names the group column; left out, the file must have exactly one other column.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"sample-group file {path} does not exist: give a CSV file")
    table = _read_table(path)
    columns = [str(c) for c in table.columns]
    if "sample_id" not in columns:
        raise TrainingDataError(
            f"{path} must have a 'sample_id' column; found {', '.join(columns)}: rename the "
            "column that holds sample ids"
        )
    others = [c for c in columns if c != "sample_id"]
    if group_key is None:
        if len(others) != 1:
            raise InvalidParameterError(
                f"{path} has {len(others)} columns besides sample_id ({', '.join(others)}); "
                "name the group column with group_key"
            )
        group_key = others[0]
    elif group_key not in others:
        raise InvalidParameterError(
            f"{path} has no column {group_key!r}; its columns are {', '.join(columns)}: "
            "pick one of them as group_key"
        )
    mapping: dict[str, str] = {}
    for sample, group in zip(table["sample_id"], table[group_key], strict=True):
        sample, group = sample.strip(), group.strip()
        if not sample or not group:
            raise TrainingDataError(
                f"{path} has an empty sample_id or {group_key} (row {sample!r}, {group!r}): "
                "fill in every cell"
            )
        if mapping.setdefault(sample, group) != group:
            raise TrainingDataError(
                f"{path} puts sample {sample!r} in two groups ({mapping[sample]!r} and "
                f"{group!r}): a sample belongs to one {group_key}"
            )
    return mapping


def inner_validation_split(
    train_ids: Sequence[str], *, fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split training samples into (fit, validation) ids for early stopping, whole samples apart.

    About ``fraction`` of the samples (at least one, and leaving at least one to fit) go to
    validation. With a single training sample there is nothing to hold out: it comes back as
    the fit set with an empty validation set, and callers then fall back to a split of spots.
    Both tuples keep the order of ``train_ids``; the choice depends only on ``seed``.
    """
    if not 0.0 < fraction < 1.0:
        raise InvalidParameterError(
            f"fraction must lie strictly between 0 and 1 (e.g. 0.2); found {fraction}"
        )
    ids = _unique(train_ids, "training sample id")
    if not ids:
        raise TrainingDataError("no training sample to split: a fold needs at least one")
    if len(ids) == 1:
        return ids, ()
    n_val = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    chosen = set(np.random.default_rng(seed).choice(len(ids), size=n_val, replace=False).tolist())
    fit = tuple(s for i, s in enumerate(ids) if i not in chosen)
    val = tuple(s for i, s in enumerate(ids) if i in chosen)
    return fit, val


def _read_csv_folds(path: Path, known: tuple[str, ...]) -> list[_RawFold]:
    """(name, train, test) per fold of a ``sample_id,fold`` CSV; training = all other samples."""
    table = _read_table(path)
    missing = {"sample_id", "fold"} - set(table.columns)
    if missing:
        raise TrainingDataError(
            f"{path} must have columns sample_id and fold; found {', '.join(map(str, table.columns))}"
            ": one row per test sample, naming the fold that tests it"
        )
    tests: dict[str, list[str]] = {}
    for sample, fold in zip(table["sample_id"], table["fold"], strict=True):
        sample, fold = sample.strip(), fold.strip()
        if not sample or not fold:
            raise TrainingDataError(
                f"{path} has an empty sample_id or fold cell: fill in every cell"
            )
        members = tests.setdefault(fold, [])
        if sample not in members:
            members.append(sample)
    return [
        (name, tuple(s for s in known if s not in test), tuple(test))
        for name, test in tests.items()
    ]


def _read_json_folds(path: Path) -> list[_RawFold]:
    """(name, train, test) per fold of a ``{fold: {"train": [...], "test": [...]}}`` JSON."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TrainingDataError(f"{path} is not valid JSON ({error}): fix the syntax") from error
    expected = '{"fold_name": {"train": ["sample", ...], "test": ["sample", ...]}, ...}'
    if not isinstance(data, dict):
        raise TrainingDataError(
            f"{path} must hold an object {expected}; found {type(data).__name__}"
        )
    folds = []
    for name, sides in data.items():
        if not isinstance(sides, dict) or not {"train", "test"} <= set(sides):
            raise TrainingDataError(
                f"{path}: fold {name!r} must be an object with 'train' and 'test' lists, as in "
                f"{expected}"
            )
        lists = [sides["train"], sides["test"]]
        if not all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in lists):
            raise TrainingDataError(
                f"{path}: fold {name!r} must list sample ids as strings under 'train' and 'test'"
            )
        folds.append((str(name), tuple(dict.fromkeys(lists[0])), tuple(dict.fromkeys(lists[1]))))
    return folds


def _check_known(ids: Iterable[str], known: Sequence[str], path: Path) -> None:
    """Raise naming the ids of ``path`` not in ``known``, with the closest known ones."""
    unknown = sorted(set(ids) - set(known))
    if not unknown:
        return
    lowered = {s.lower(): s for s in known}  # case rarely matters in a typo'd id
    hints = []
    for sample in unknown[:5]:
        close = [lowered[m] for m in difflib.get_close_matches(sample.lower(), list(lowered), n=2)]
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        hints.append(f"{sample!r}{hint}")
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    raise TrainingDataError(
        f"{path} names samples that are not in the store: {', '.join(hints)}{more}; "
        f"known samples: {', '.join(known) or 'none'}"
    )


def _unique(ids: Iterable[str], what: str) -> tuple[str, ...]:
    """``ids`` as strings, in order; a repeated id raises (it would test a sample twice)."""
    values = tuple(str(s) for s in ids)
    repeated = sorted(s for s, count in Counter(values).items() if count > 1)
    if repeated:
        raise TrainingDataError(
            f"each {what} must appear once; found repeated {', '.join(map(repr, repeated))}"
        )
    return values


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV as strings, empty cells as ``""`` (not NaN)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise TrainingDataError(
            f"{path} cannot be read as a CSV table ({error}): fix the file"
        ) from error


def group_k_folds(sample_to_group: Mapping[str, str], *, k: int, seed: int = 0) -> list[Fold]:
    """``k`` folds over whole groups (patients): every group is tested in exactly one fold.

    Groups are dealt, largest first (in samples), to the fold with the fewest samples so far;
    groups of the same size are taken in a seeded random order, so folds are balanced and do
    not follow the order in which samples were listed. With no more than ``k`` groups this is
    leave-one-group-out (one fold per group). Folds are named ``fold 1`` … ``fold k``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise InvalidParameterError(f"the number of folds must be an integer >= 2, got {k!r}")
    groups: dict[str, list[str]] = {}
    for sample, group in sample_to_group.items():
        groups.setdefault(str(group), []).append(str(sample))
    if len(groups) <= k:
        return leave_one_group_out(sample_to_group)
    names = list(groups)
    shuffled = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    order = sorted(shuffled, key=lambda g: -len(groups[g]))  # stable: ties keep the shuffle
    tests: list[list[str]] = [[] for _ in range(k)]
    for group in order:
        fold = min(range(k), key=lambda f: (len(tests[f]), f))
        tests[fold] += groups[group]
    samples = [str(s) for s in sample_to_group]
    folds = []
    for i, test in enumerate(tests):
        held = set(test)
        ordered = tuple(s for s in samples if s in held)  # the listing's order within a fold
        folds.append(
            Fold(name=f"fold {i + 1}", train=tuple(s for s in samples if s not in held), test=ordered)
        )
    return folds
