"""Fuzzing the Matrix Market reader: Space Ranger's folder and the R-written one (plain text named
``.gz``, values in quotes), with headers, entries, barcodes and features changed, compression
that does not match the name, and damaged bytes, reads as what the files say or is refused in
one line."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fuzzing import (
    CountsTruth,
    Damage,
    assert_counts_invariants,
    damages,
    fuzz_settings,
    read_or_refused,
    sometimes,
)
from mtx_texts import Edit, Texts, base_texts, write_folder
from tmescope.io.counts import read_10x_mtx

SUBJECTS = {"10x": "Matrix Market", "R": "Matrix Market (R-written, plain text named .gz)"}


def _entry(texts: Texts, k: int) -> tuple[int, list[str]]:
    index = texts.first_entry + k % (len(texts.matrix) - texts.first_entry)
    return index, texts.matrix[index].split()


def set_value(value: str, k: int) -> Edit:
    def edit(texts: Texts, truth: CountsTruth) -> CountsTruth | None:
        i, (gene, spot, _) = _entry(texts, k)
        texts.matrix[i] = f"{gene} {spot} {value}"
        if value != "1e3":
            return None
        truth.counts[int(spot) - 1, int(gene) - 1] = 1000  # a real number that is whole
        return truth

    return Edit(f"count {value!r} in entry {k}", edit)


def set_index(value: int, k: int) -> Edit:
    def edit(texts: Texts, truth: CountsTruth) -> None:
        i, (_gene, spot, count) = _entry(texts, k)
        texts.matrix[i] = f"{value if value >= 0 else len(truth.gene_ids) + 1} {spot} {count}"

    return Edit(f"feature index {value} in entry {k}", edit)


def repeat_entry(k: int) -> Edit:
    """An entry listed twice: the counts add up (as every Matrix Market reader does)."""

    def edit(texts: Texts, truth: CountsTruth) -> CountsTruth:
        i, (gene, spot, _count) = _entry(texts, k)
        texts.matrix.append(texts.matrix[i])
        size = texts.first_entry - 1
        rows, cols, n = texts.matrix[size].split()
        texts.matrix[size] = f"{rows} {cols} {int(n) + 1}"
        truth.counts[int(spot) - 1, int(gene) - 1] *= 2
        return truth

    return Edit(f"entry {k} twice", edit)


def set_banner(banner: str) -> Edit:
    def edit(texts: Texts, truth: CountsTruth) -> CountsTruth | None:
        texts.matrix[0] = banner
        return truth if banner.endswith("coordinate real general") else None

    return Edit(f"banner {banner!r}", edit)


def set_size(name: str, change: Callable[[list[int]], list[int]]) -> Edit:
    def edit(texts: Texts, truth: CountsTruth) -> None:
        size = texts.first_entry - 1
        numbers = [int(v) for v in texts.matrix[size].split()]
        texts.matrix[size] = " ".join(map(str, change(numbers)))

    return Edit(f"size line: {name}", edit)


def _comments_and_blank_lines(texts: Texts, truth: CountsTruth) -> CountsTruth:
    texts.matrix[1:1] = ["% written by R", "%"]
    texts.matrix.insert(texts.first_entry + 1, "")
    return truth


def _barcode_twice(texts: Texts, truth: CountsTruth) -> None:
    texts.barcodes[1] = texts.barcodes[0]


def _barcode_dropped(texts: Texts, truth: CountsTruth) -> None:
    del texts.barcodes[-1]


def _blank_barcode_line(texts: Texts, truth: CountsTruth) -> CountsTruth:
    texts.barcodes.insert(1, "")  # a blank line holds no barcode: skipped
    return truth


def _padded_barcodes(texts: Texts, truth: CountsTruth) -> CountsTruth:
    texts.barcodes = [f"{b}  " for b in texts.barcodes]
    return truth


def _foreign_barcodes(texts: Texts, truth: CountsTruth) -> CountsTruth:
    texts.barcodes = [b.replace("-1", "-2") for b in texts.barcodes]
    return replace(truth, barcodes=[b.replace("-1", "-2") for b in truth.barcodes])


def _encoded(encoding: str) -> Edit:
    def edit(texts: Texts, truth: CountsTruth) -> CountsTruth | None:
        texts.encoding = encoding
        if encoding == "latin-1":
            texts.barcodes[0] += "é"
        return truth if encoding == "utf-8-sig" else None

    return Edit(f"barcodes in {encoding}", edit)


def _no_types(texts: Texts, truth: CountsTruth) -> CountsTruth:
    texts.features = [row[:2] for row in texts.features]  # Cell Ranger 2's genes.tsv
    return truth


def _ids_only(texts: Texts, truth: CountsTruth) -> None:
    texts.features = [row[:1] for row in texts.features]


def _first_antibody(texts: Texts, truth: CountsTruth) -> CountsTruth:
    texts.features[0][2] = "Antibody Capture"
    return replace(truth, feature_types=["Antibody Capture", *truth.feature_types[1:]])


def _all_antibodies(texts: Texts, truth: CountsTruth) -> None:
    for row in texts.features:
        row[2] = "Antibody Capture"


def _gene_called_na(texts: Texts, truth: CountsTruth) -> CountsTruth:
    texts.features[0][1] = "NA"  # not a missing value
    return replace(truth, gene_names=["NA", *truth.gene_names[1:]])


def _empty_name(texts: Texts, truth: CountsTruth) -> None:
    texts.features[0][1] = ""


def _more_columns(texts: Texts, truth: CountsTruth) -> CountsTruth:
    texts.features = [[*row, "chr1", "100", "200"] for row in texts.features]  # multiome
    return truth


def _feature_dropped(texts: Texts, truth: CountsTruth) -> None:
    del texts.features[-1]


ks = st.integers(0, 200)
edits: st.SearchStrategy[Edit] = st.one_of(
    st.builds(set_value, st.sampled_from(["5.5", "-3", "nan", "inf", "1e3", "99999999999", "x"]), ks),
    st.builds(set_index, st.sampled_from([0, -1]), ks),
    st.builds(repeat_entry, ks),
    st.builds(
        set_banner,
        st.sampled_from(
            [
                "%%MatrixMarket matrix coordinate real general",
                "%%MatrixMarket matrix coordinate pattern general",
                "%%MatrixMarket matrix coordinate complex general",
                "%%MatrixMarket matrix array integer general",
                "%%MatrixMarket matrix coordinate integer symmetric",
                "% not a banner",
            ]
        ),
    ),
    st.sampled_from(
        [
            set_size("axes swapped", lambda s: [s[1], s[0], s[2]]),
            set_size("an entry missing", lambda s: [s[0], s[1], s[2] + 1]),
            set_size("an entry too many", lambda s: [s[0], s[1], s[2] - 1]),
            set_size("10**12 entries", lambda s: [s[0], s[1], 10**12]),
            set_size("10**15 features", lambda s: [10**15, s[1], s[2]]),
            set_size("two numbers", lambda s: [s[0], s[1]]),
        ]
    ),
    st.sampled_from(
        [
            Edit(change.__name__.strip("_").replace("_", " "), change)
            for change in (
                _comments_and_blank_lines, _barcode_twice, _barcode_dropped, _blank_barcode_line,
                _padded_barcodes, _foreign_barcodes, _no_types, _ids_only, _first_antibody,
                _all_antibodies, _gene_called_na, _empty_name, _more_columns, _feature_dropped,
            )
        ]
    ),
    st.builds(_encoded, st.sampled_from(["utf-8-sig", "utf-16", "latin-1"])),
)  # fmt: skip


matrices = st.builds(
    CountsTruth.random, st.integers(2, 8), st.integers(9, 14), seed=st.integers(0, 2**16)
)


@fuzz_settings(light=12, full=400)
@given(
    style=st.sampled_from(sorted(SUBJECTS)),
    truth=matrices,
    edit=sometimes(edits),
    gzipped=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    named_gz=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    line_end=st.sampled_from(["\n", "\r\n"]),
    damage=sometimes(st.tuples(st.integers(0, 2), damages)),
)
def test_mtx_folder(
    style: str,
    truth: CountsTruth,
    edit: Edit | None,
    gzipped: tuple[bool, bool, bool],
    named_gz: tuple[bool, bool, bool],
    line_end: str,
    damage: tuple[int, Damage] | None,
) -> None:
    """Each change says what the reader must return (or that it must refuse); damaged bytes in
    one of the files leave only the invariants to check."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        texts = base_texts(truth, folder)
        if style == "R":  # Matrix::writeMM writes its doubles as real
            texts.matrix[0] = "%%MatrixMarket matrix coordinate real general"
        expected: CountsTruth | None = truth
        if edit is not None:
            expected = edit(texts, CountsTruth(**{**vars(truth), "counts": truth.counts.copy()}))
        paths = write_folder(
            folder,
            texts,
            r_style=style == "R",
            gzipped=gzipped,
            named_gz=named_gz,
            line_end=line_end,
        )
        if damage is not None:
            target = paths[damage[0]]
            target.write_bytes(damage[1].apply(target.read_bytes()))
        adata = read_or_refused(SUBJECTS[style], lambda: read_10x_mtx(folder))
    if adata is not None:
        assert_counts_invariants(adata)
    if damage is None:
        if expected is None:
            assert adata is None, f"accepted a matrix it should refuse: {adata}"
        else:
            assert adata is not None, "refused a valid Matrix Market folder"
            expected.assert_read(adata)
