"""TME state scores: gene sets read from TOML or JSON, scored on standardised expression.

A spot's score for a set is the mean, over the set's genes present in the data, of each gene's
standardised log1p expression. The per-gene mean and spread come from a
:class:`GeneStandardiser` fitted on the training samples only, so that test spots are scored on
the training scale and nothing about them reaches the targets. Symbols match case-insensitively:
mouse ``Cd3e`` is human ``CD3E``.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tmescope.errors import GeneSetError, InputNotFoundError, InvalidParameterError
from tmescope.fusion.targets import GeneMoments, pool_gene_moments

log = logging.getLogger(__name__)

DEFAULT_GENE_SETS = "data/tme_gene_sets.toml"  # inside the tmescope.fusion package
_FIELDS = frozenset({"label", "description", "genes", "kind"})
SET_KINDS = ("population", "state")  # a set marks cells of a population, or a state of any cell
_EXAMPLE = 'a set looks like [t_cells] label = "T cells" genes = ["CD3D", "CD3E"]'


@dataclass(frozen=True)
class GeneSet:
    """Named marker genes of one TME population or state."""

    name: str  # identifier, used as the score's column name
    label: str  # for plots and reports
    genes: tuple[str, ...]
    description: str = ""
    kind: str = "population"  # or "state" (proliferation, hypoxia): not a population of cells


@dataclass(frozen=True, eq=False)
class GeneStandardiser:
    """Per-gene mean and spread of log1p expression, fitted on training spots only."""

    genes: tuple[str, ...]
    mean: np.ndarray  # (n_genes,) float64
    std: np.ndarray  # (n_genes,) float64; 1 for genes that never vary in training

    @classmethod
    def fit(
        cls, matrices: Sequence[np.ndarray | sp.spmatrix], gene_names: Sequence[str]
    ) -> GeneStandardiser:
        """Statistics pooled over every spot of ``matrices`` (pass the training samples only)."""
        genes = tuple(gene_names)
        return cls.from_moments(pool_gene_moments(matrices, n_genes=len(genes)), genes)

    @classmethod
    def from_moments(cls, moments: GeneMoments, gene_names: Sequence[str]) -> GeneStandardiser:
        """:meth:`fit` on moments already pooled over the training spots."""
        genes = tuple(gene_names)
        std = np.sqrt(moments.variance)
        # A constant gene would divide by zero; with std 1 it just scores its shift from the mean.
        std[std < 1e-6] = 1.0
        return cls(genes, moments.mean, std)

    def transform(
        self, log_expr: np.ndarray | sp.spmatrix, gene_names: Sequence[str]
    ) -> np.ndarray:
        """``(n_spots, len(gene_names))`` float32 dense: each column standardised by its gene."""
        column = _index(self.genes)
        wanted = [column.get(name.upper()) for name in gene_names]
        unknown = [name for name, c in zip(gene_names, wanted, strict=True) if c is None]
        if unknown:
            raise GeneSetError(
                f"the standardiser was fitted on {len(self.genes)} genes without "
                f"{len(unknown)} of those asked for ({', '.join(unknown[:5])}); "
                "fit it on the training samples' columns of the same genes"
            )
        if log_expr.ndim != 2 or log_expr.shape[1] != len(wanted):
            raise InvalidParameterError(
                f"log_expr must be (n_spots, {len(wanted)}) to match gene_names, "
                f"found shape {log_expr.shape}"
            )
        known = [c for c in wanted if c is not None]
        dense = log_expr if isinstance(log_expr, np.ndarray) else log_expr.toarray()
        return ((dense - self.mean[known]) / self.std[known]).astype(np.float32)


def load_gene_sets(path: str | Path | None = None) -> tuple[GeneSet, ...]:
    """Gene sets of a TOML or JSON file; the default TME sets when ``path`` is ``None``.

    A file maps set names to a gene list (``t_cells = ["CD3D", "CD3E"]``) or to a table with
    ``genes`` and optional ``label``, ``description`` and ``kind`` (``"population"``, the
    default, or ``"state"`` for a state any cell may be in, such as proliferation: sub-spot
    populations from markers use the population sets only).
    """
    if path is None:
        source = "the default gene sets"
        text = resources.files("tmescope.fusion").joinpath(DEFAULT_GENE_SETS).read_text("utf-8")
        return _build_sets(_parse_toml(text, source), text, source)
    file = Path(path)
    source = str(file)
    if not file.is_file():
        raise InputNotFoundError(f"gene-set file {file} does not exist; check the path given")
    suffix = file.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise GeneSetError(
            f"gene-set file {file} should end in .toml or .json, found {suffix or 'no suffix'}; "
            "rename it to match its format"
        )
    try:
        text = file.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GeneSetError(f"cannot read gene-set file {file} as UTF-8 text: {err}") from err
    raw = _parse_toml(text, source) if suffix == ".toml" else _parse_json(text, source)
    return _build_sets(raw, text, source)


def score_gene_sets(
    log_expr: np.ndarray | sp.spmatrix,
    gene_names: Sequence[str],
    sets: Sequence[GeneSet],
    *,
    min_genes: int = 2,
    standardiser: GeneStandardiser | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(n_spots, n_kept)`` float32 scores and the names of the sets kept.

    ``log_expr`` is ``(n_spots, len(gene_names))`` log1p-normalised expression. Pass a
    ``standardiser`` fitted on the training samples; without one, the spots given are
    standardised on themselves (fine for looking at one sample, not for held-out evaluation).
    Sets with fewer than ``min_genes`` genes in the data (and the standardiser) are dropped.
    """
    if isinstance(min_genes, bool) or not isinstance(min_genes, int) or min_genes < 1:
        raise InvalidParameterError(f"min_genes must be an integer >= 1, found {min_genes!r}")
    if log_expr.ndim != 2 or log_expr.shape[1] != len(gene_names):
        raise InvalidParameterError(
            f"log_expr must be (n_spots, {len(gene_names)}) to match gene_names, "
            f"found shape {log_expr.shape}"
        )
    if not sets:
        raise GeneSetError("no gene sets given: pass load_gene_sets() or your own sets")
    column = _index(gene_names)
    known = column if standardiser is None else _index(standardiser.genes)
    present = {
        s.name: [column[g] for g in _unique_upper(s.genes) if g in column and g in known]
        for s in sets
    }
    kept = [s.name for s in sets if len(present[s.name]) >= min_genes]
    for s in sets:
        if s.name not in kept:
            log.warning(
                "gene set %s dropped: %d of its %d genes in the data, fewer than min_genes=%d",
                s.name,
                len(present[s.name]),
                len(s.genes),
                min_genes,
            )
    if not kept:
        found = ", ".join(f"{s.name} {len(present[s.name])}/{len(s.genes)}" for s in sets)
        raise GeneSetError(
            f"every gene set has fewer than min_genes={min_genes} genes in the data ({found}); "
            "check that genes are named by symbol (not Ensembl id), lower min_genes, "
            "or supply sets that fit the data"
        )
    used = sorted({c for name in kept for c in present[name]})
    names = [gene_names[c] for c in used]
    # (n_spots, n_used); CSR first because COO and others cannot be sliced by column.
    subset = sp.csr_matrix(log_expr)[:, used] if sp.issparse(log_expr) else log_expr[:, used]
    if standardiser is None:
        standardiser = GeneStandardiser.fit([subset], names)
    z = standardiser.transform(subset, names)  # (n_spots, n_used)
    position = {c: i for i, c in enumerate(used)}
    membership = np.zeros((len(used), len(kept)), dtype=np.float32)
    for j, name in enumerate(kept):
        rows = [position[c] for c in present[name]]
        membership[rows, j] = 1.0 / len(rows)
    return (z @ membership).astype(np.float32), tuple(kept)


def _index(gene_names: Sequence[str]) -> dict[str, int]:
    """Upper-cased symbol → first column holding it."""
    column: dict[str, int] = {}
    for c, name in enumerate(gene_names):
        column.setdefault(name.upper(), c)
    return column


def _unique_upper(genes: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(g.upper() for g in genes))


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise GeneSetError(
            f"{source} is not valid TOML: {err}; fix that line ({_EXAMPLE})"
        ) from err


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise GeneSetError(
            f"{source} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}; "
            'fix that line (a set looks like "t_cells": ["CD3D", "CD3E"])'
        ) from err


def _build_sets(raw: Any, text: str, source: str) -> tuple[GeneSet, ...]:
    if not isinstance(raw, Mapping):
        raise GeneSetError(
            f"{source} must map set names to genes, found a {type(raw).__name__}; {_EXAMPLE}"
        )
    if not raw:
        raise GeneSetError(f"{source} holds no gene set; {_EXAMPLE}")
    return tuple(_build_set(name, value, text, source) for name, value in raw.items())


def _build_set(name: str, value: Any, text: str, source: str) -> GeneSet:
    where = f"{source}{_line_of(text, name)}, set {name!r}"
    if isinstance(value, list):
        value = {"genes": value}
    if not isinstance(value, Mapping):
        raise GeneSetError(
            f"{where}: expected a list of genes or a table with 'genes', "
            f"found {type(value).__name__} {value!r}; {_EXAMPLE}"
        )
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise GeneSetError(
            f"{where}: unknown field(s) {', '.join(unknown)}; a set holds only "
            "'genes', 'label', 'description' and 'kind'"
        )
    genes = value.get("genes")
    if not isinstance(genes, list) or not genes:
        raise GeneSetError(
            f"{where}: 'genes' must be a non-empty list of gene symbols, found {genes!r}"
        )
    bad = [g for g in genes if not isinstance(g, str) or not g.strip()]
    if bad:
        raise GeneSetError(f"{where}: genes must be non-empty strings, found {bad[:3]!r}")
    for field in ("label", "description"):
        if not isinstance(value.get(field, ""), str):
            raise GeneSetError(f"{where}: '{field}' must be a string, found {value[field]!r}")
    kind = value.get("kind", "population")
    if kind not in SET_KINDS:
        raise GeneSetError(
            f"{where}: 'kind' must be {' or '.join(map(repr, SET_KINDS))}, found {kind!r}"
        )
    return GeneSet(
        name=name,
        label=value.get("label") or name,
        genes=tuple(dict.fromkeys(g.strip() for g in genes)),
        description=value.get("description", ""),
        kind=kind,
    )


def _line_of(text: str, name: str) -> str:
    """`` (line N)`` of the first line that names set ``name``, or nothing if none does."""
    pattern = re.compile(rf"(^|[\[\"'\s]){re.escape(name)}([\]\"'\s=:]|$)")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.lstrip().startswith("#") and pattern.search(line):
            return f" (line {number})"
    return ""
