"""Fuzzing the 10x HDF5 reader: Space Ranger's matrix (with and without root attributes) and the
legacy Cell Ranger 2 layout, with datasets missing, retyped, reshaped or out of range, and with
damaged bytes, reads as what the file says or is refused in one line."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from factories import write_legacy_h5
from fuzzing import (
    CountsTruth,
    Damage,
    assert_counts_invariants,
    damages,
    fuzz_settings,
    read_or_refused,
    sometimes,
)
from tmescope.datasets.spaceranger_writer import write_10x_h5
from tmescope.io.counts import read_10x_h5

SUBJECTS = {
    "v3": "10x h5 (v3, attributes)",
    "v3_no_attrs": "10x h5 (v3, no attributes)",
    "legacy": "10x h5 (legacy v2)",
}


def write(path: Path, truth: CountsTruth, layout: str) -> str:
    """Write ``truth`` in ``layout``; returns the group that holds the matrix."""
    labels = {
        "barcodes": truth.barcodes,
        "gene_ids": truth.gene_ids,
        "gene_names": truth.gene_names,
    }
    counts = sp.csr_matrix(truth.counts)
    if layout == "legacy":
        write_legacy_h5(path, counts, **labels)
        return "GRCh38"
    write_10x_h5(path, counts, with_10x_attrs=layout == "v3", **labels)
    return "matrix"


def names(layout: str) -> dict[str, str]:
    """Where each part lies under the matrix group of ``layout``."""
    if layout == "legacy":
        return {"ids": "genes", "names": "gene_names", "types": ""}
    return {"ids": "features/id", "names": "features/name", "types": "features/feature_type"}


@dataclass(frozen=True)
class Change:
    """Replace (or, with ``value`` None, delete) one dataset; ``expect`` maps the truth to what a
    correct reader returns (None: it must refuse)."""

    name: str
    dataset: str  # "data", "shape", "ids", … (see names())
    value: Callable[[np.ndarray, CountsTruth], np.ndarray | None]
    expect: Callable[[CountsTruth], CountsTruth | None] = lambda truth: None

    def __repr__(self) -> str:
        return f"Change({self.name})"


def _same(truth: CountsTruth) -> CountsTruth:
    return truth


def _bytes(values: list[str]) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype="S")


CHANGES = [
    Change("no data", "data", lambda old, t: None),
    Change("no indptr", "indptr", lambda old, t: None),
    Change("no barcodes", "barcodes", lambda old, t: None),
    Change("no feature ids", "ids", lambda old, t: None),
    Change("no feature names", "names", lambda old, t: None),
    Change("counts as whole floats", "data", lambda old, t: old.astype(np.float64), _same),
    Change("a fractional count", "data", lambda old, t: old + 0.5),
    Change("a negative count", "data", lambda old, t: -old),
    Change("a NaN count", "data", lambda old, t: np.where(old == old.max(), np.nan, old)),
    Change("an infinite count", "data", lambda old, t: np.full(old.shape, np.inf)),
    Change("a huge count", "data", lambda old, t: old.astype(np.int64) * 2**40),
    Change("counts as text", "data", lambda old, t: old.astype("S")),
    Change("counts 2-D", "data", lambda old, t: np.stack([old, old])),
    Change("indices out of range", "indices", lambda old, t: old + len(t.gene_ids)),
    Change("negative indices", "indices", lambda old, t: old - len(t.gene_ids)),
    Change("indices as floats", "indices", lambda old, t: old.astype(np.float64)),
    Change("indptr reversed", "indptr", lambda old, t: old[::-1].copy()),
    Change("indptr short", "indptr", lambda old, t: old[:-1]),
    Change("shape swapped", "shape", lambda old, t: old[::-1].copy()),
    Change("shape scalar", "shape", lambda old, t: old[0]),
    Change("shape of three", "shape", lambda old, t: np.append(old, 1)),
    Change("shape negative", "shape", lambda old, t: -old),
    Change("shape huge", "shape", lambda old, t: old.astype(np.int64) + 2**40),
    Change("shape NaN", "shape", lambda old, t: np.array([np.nan, old[1]])),
    Change("shape as whole floats", "shape", lambda old, t: old.astype(np.float64), _same),
    Change("shape as text", "shape", lambda old, t: old.astype("S")),
    Change("barcodes repeated", "barcodes", lambda old, t: np.full(old.shape, old[0])),
    Change("a barcode empty", "barcodes", lambda old, t: np.where(old == old[0], b"", old)),
    Change("barcodes not UTF-8", "barcodes", lambda old, t: np.array([b"\xff" + b for b in old])),
    Change("barcodes 2-D", "barcodes", lambda old, t: np.stack([old, old])),
    Change("one barcode fewer", "barcodes", lambda old, t: old[:-1]),
    Change(
        "barcodes as variable-length text",
        "barcodes",
        lambda old, t: np.array(t.barcodes, dtype=h5py.string_dtype()),
        _same,
    ),
    Change(
        "barcodes of another run",
        "barcodes",
        lambda old, t: _bytes([b.replace("-1", "-2") for b in t.barcodes]),
        lambda t: replace(t, barcodes=[b.replace("-1", "-2") for b in t.barcodes]),
    ),
    Change("a feature name empty", "names", lambda old, t: np.where(old == old[0], b"", old)),
    Change("one feature name fewer", "names", lambda old, t: old[:-1]),
    Change(
        "feature names repeated",
        "names",
        lambda old, t: np.full(old.shape, old[0]),
        lambda t: replace(t, gene_names=[t.gene_names[0]] * len(t.gene_names)),
    ),
]
V3_CHANGES = [
    Change("no feature types", "types", lambda old, t: None, _same),
    Change("no genome", "features/genome", lambda old, t: None, _same),
    Change("all antibodies", "types", lambda old, t: np.full(old.shape, b"Antibody Capture")),
    Change(
        "first feature an antibody",
        "types",
        lambda old, t: np.where(np.arange(len(old)) == 0, b"Antibody Capture", old),
        lambda t: replace(t, feature_types=["Antibody Capture", *t.feature_types[1:]]),
    ),
    Change("feature types not UTF-8", "types", lambda old, t: np.full(old.shape, b"\xfe")),
]


def apply(path: Path, group: str, layout: str, change: Change, truth: CountsTruth) -> None:
    where = f"{group}/{names(layout).get(change.dataset, change.dataset)}"
    with h5py.File(path, "a") as f:
        value = change.value(f[where][()], truth)
        del f[where]
        if value is not None:
            f[where] = value


matrices = st.builds(
    CountsTruth.random,
    st.integers(2, 8),  # barcodes (two at least, so that one can repeat another)
    st.integers(9, 14),  # features: never as many as barcodes, so swapped axes show
    seed=st.integers(0, 2**16),
)


@fuzz_settings(light=12, full=450)
@given(
    layout=st.sampled_from(sorted(SUBJECTS)),
    truth=matrices,
    change=st.sampled_from(CHANGES + V3_CHANGES),
    damage=sometimes(damages),
)
def test_h5_datasets(
    layout: str, truth: CountsTruth, change: Change, damage: Damage | None
) -> None:
    """Each dataset missing, retyped, reshaped or out of range, then perhaps damaged bytes."""
    if layout == "legacy" and change in V3_CHANGES:
        change = CHANGES[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "filtered_feature_bc_matrix.h5"
        group = write(path, truth, layout)
        apply(path, group, layout, change, truth)
        if damage is not None:
            path.write_bytes(damage.apply(path.read_bytes()))
        adata = read_or_refused(SUBJECTS[layout], lambda: read_10x_h5(path))
    if adata is not None:
        assert_counts_invariants(adata)
    if damage is None:
        expected = change.expect(truth)
        if expected is None:
            assert adata is None, f"accepted a matrix it should refuse: {adata}"
        else:
            assert adata is not None, "refused a valid matrix"
            expected.assert_read(adata)


def _attribute_values() -> st.SearchStrategy[object]:
    return st.sampled_from(
        [
            np.int64(7),
            np.float64(np.nan),
            b"\xff\xfe not UTF-8",
            np.array([[b"a", b"b"], [b"c", b"d"]]),
            np.array([], dtype="S1"),
            "text",
            np.array([1.5, 2.5]),
        ]
    )


@fuzz_settings(light=6, full=250)
@given(
    truth=matrices,
    attributes=st.dictionaries(
        st.sampled_from(["software_version", "chemistry_description", "library_ids", "filetype"]),
        _attribute_values(),
    ),
)
def test_h5_root_attributes(truth: CountsTruth, attributes: dict[str, object]) -> None:
    """Root attributes only feed the metadata: whatever they hold, the counts read the same."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "filtered_feature_bc_matrix.h5"
        write(path, truth, "v3")
        with h5py.File(path, "a") as f:
            for key, value in attributes.items():
                f.attrs[key] = value
        adata = read_or_refused(SUBJECTS["v3"], lambda: read_10x_h5(path))
    assert adata is not None, "refused a valid matrix for its metadata"
    truth.assert_read(adata)
    assert isinstance(adata.uns["10x_metadata"], dict)
