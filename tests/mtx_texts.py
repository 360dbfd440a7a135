"""Matrix Market count folders as editable lines of text, for the reader fuzz tests: read back
from the project's own writer, changed, then written as Space Ranger or R would write them."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import scipy.sparse as sp

from fuzzing import CountsTruth
from tmescope.datasets.spaceranger_writer import write_10x_mtx


@dataclass
class Texts:
    """The three files as lines of text (entries: ``feature barcode count``, 1-based)."""

    matrix: list[str]
    barcodes: list[str]
    features: list[list[str]]
    encoding: str = "utf-8"  # of barcodes.tsv

    @property
    def first_entry(self) -> int:
        return next(i for i, line in enumerate(self.matrix[1:], 1) if not line.startswith("%")) + 1


@dataclass(frozen=True)
class Edit:
    """A change to the files; returns what a correct reader makes of them (None: refuse)."""

    name: str
    apply: Callable[[Texts, CountsTruth], CountsTruth | None]

    def __call__(self, texts: Texts, truth: CountsTruth) -> CountsTruth | None:
        return self.apply(texts, truth)

    def __repr__(self) -> str:  # hypothesis prints this for a failing example
        return f"Edit({self.name})"


def base_texts(truth: CountsTruth, folder: Path) -> Texts:
    """The three files as Space Ranger's writer (the project's own) lays them out."""
    write_10x_mtx(
        folder,
        sp.csr_matrix(truth.counts),
        barcodes=truth.barcodes,
        gene_ids=truth.gene_ids,
        gene_names=truth.gene_names,
        compress=False,
    )
    texts = Texts(
        matrix=(folder / "matrix.mtx").read_text().splitlines(),
        barcodes=(folder / "barcodes.tsv").read_text().splitlines(),
        features=[line.split("\t") for line in (folder / "features.tsv").read_text().splitlines()],
    )
    for name in ("matrix.mtx", "barcodes.tsv", "features.tsv"):
        (folder / name).unlink()
    return texts


def write_folder(
    folder: Path,
    texts: Texts,
    *,
    r_style: bool,
    gzipped: tuple[bool, bool, bool],
    named_gz: tuple[bool, bool, bool],
    line_end: str,
) -> list[Path]:
    """Write the three files, each gzipped or not and named ``.gz`` or not, whatever its
    content. R style quotes every label and writes plain text named ``.gz``."""

    def quoted(cells: list[str]) -> str:
        return "\t".join(f'"{c}"' if r_style else c for c in cells)

    contents = {
        "matrix.mtx": ("\n".join(texts.matrix) + "\n").encode(),
        "barcodes.tsv": (
            "".join(quoted([b]) + line_end for b in texts.barcodes).encode(texts.encoding)
        ),
        "features.tsv": "".join(quoted(row) + line_end for row in texts.features).encode(),
    }
    paths = []
    for (name, payload), gz, dot_gz in zip(contents.items(), gzipped, named_gz, strict=True):
        path = folder / f"{name}.gz" if r_style or dot_gz else folder / name
        path.write_bytes(gzip.compress(payload, mtime=0) if gz and not r_style else payload)
        paths.append(path)
    return paths
