"""What the reader fuzz tests (tests/reliability/test_fuzz_*.py) share: hypothesis settings sized
by the reliability level, byte-level damage to a file, and the property every reader keeps.

The property: a reader given any input either returns (and the test then checks the result
against what was written) or raises a :class:`~tmescope.errors.TmescopeError` whose message is
one non-empty line. Any other exception fails the test; so does a reader that runs past
:data:`HANG_LIMIT_S` (stopped by an alarm, since hypothesis's deadline only measures afterwards).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import reliability_tally
from factories import barcode, gene_table, hex_lattice, random_counts
from tmescope.errors import TmescopeError
from tmescope.io._keys import H5Keys
from tmescope.io.positions import SPOT_COLUMNS

GENE_EXPRESSION = H5Keys.GENE_EXPRESSION

T = TypeVar("T")

# Per example: writing a small input and reading it takes milliseconds; a few seconds is a hang.
DEADLINE = timedelta(seconds=5)
HANG_LIMIT_S = 30


def fuzz_settings(light: int, full: int) -> settings:
    """``light`` examples, derandomized, in ``make test``; ``full`` random ones in
    ``make reliability`` (hypothesis prints the seed and the failing example)."""
    light_run = not reliability_tally.full()
    return settings(
        max_examples=reliability_tally.trials(light, full),
        deadline=DEADLINE,
        derandomize=light_run,
        database=None if light_run else settings.default.database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


class ReaderHung(Exception):
    """A reader ran past HANG_LIMIT_S on one input."""


@contextmanager
def hang_guard(seconds: float = HANG_LIMIT_S) -> Iterator[None]:
    """Interrupt the block with :class:`ReaderHung` after ``seconds`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise ReaderHung(f"the reader ran for more than {seconds} s on one input")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_or_refused(subject: str, read: Callable[[], T]) -> T | None:
    """Run ``read``: its result, or ``None`` when it refused the input with a TmescopeError of
    one clear line. Counts the outcome for docs/reliability.md; other exceptions propagate."""
    with hang_guard():
        try:
            result = read()
        except TmescopeError as exc:
            assert_one_line(exc)
            reliability_tally.count("reader", subject, refused=1)
            return None
    reliability_tally.count("reader", subject, read=1)
    return result


def assert_one_line(exc: BaseException) -> None:
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in message and "\r" not in message, f"message spans lines: {message!r}"


# --------------------------------------------------------------------------------------------
# Damage to the bytes of a file, as a copy that stopped or a disk that flipped bits leaves it


@dataclass(frozen=True)
class Damage:
    """One change to a file's bytes; ``keeps_content`` when the file still says the same."""

    name: str
    apply: Callable[[bytes], bytes]
    keeps_content: bool = False

    def __repr__(self) -> str:  # hypothesis prints this for a failing example
        return f"Damage({self.name})"


def _truncate(fraction: float) -> Damage:
    return Damage(f"truncate at {fraction:.3f}", lambda b: b[: int(len(b) * fraction)])


def _flip(fraction: float, mask: int) -> Damage:
    def flip(data: bytes) -> bytes:
        if not data:
            return data
        i = min(int(len(data) * fraction), len(data) - 1)
        return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]

    return Damage(f"flip byte at {fraction:.3f} with {mask:#x}", flip)


def _insert(fraction: float, junk: bytes) -> Damage:
    def insert(data: bytes) -> bytes:
        i = int(len(data) * fraction)
        return data[:i] + junk + data[i:]

    return Damage(f"insert {junk!r} at {fraction:.3f}", insert)


fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)

damages: st.SearchStrategy[Damage] = st.one_of(
    st.builds(_truncate, fractions),
    st.builds(_flip, fractions, st.integers(1, 255)),
    st.builds(_insert, fractions, st.binary(min_size=1, max_size=16)),
    st.just(Damage("empty", lambda b: b"")),
    st.builds(
        lambda junk: Damage(f"replaced by {junk[:8]!r}…", lambda _: junk),
        st.binary(min_size=1, max_size=256),
    ),
    st.just(Damage("doubled", lambda b: b + b)),
)
"""Damage of every kind: truncation, flipped or inserted bytes, empty, foreign or doubled."""


def sometimes(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    """``None`` (the file as written) half the time, else a value of ``strategy``: unlike
    ``st.none() | strategy``, not outweighed by the many branches of a ``one_of``."""
    return st.booleans().flatmap(lambda damaged: strategy if damaged else st.none())


# --------------------------------------------------------------------------------------------
# Spot positions: valid lattices, and what any table a reader returns must hold


@st.composite
def lattices(draw: st.DrawFn) -> pd.DataFrame:
    """A small, valid Visium lattice with random offset, scale and tissue mask."""
    spots = hex_lattice(
        draw(st.integers(1, 5)),
        draw(st.integers(1, 5)),
        mpp=draw(st.floats(0.2, 5.0)),
        origin_px=(draw(st.floats(-200, 30_000)), draw(st.floats(-200, 30_000))),
        rotation_deg=draw(st.sampled_from([0.0, 0.7, 90.0])),
    )
    spots["in_tissue"] = draw(st.lists(st.booleans(), min_size=len(spots), max_size=len(spots)))
    return spots


def check_invariants(table: pd.DataFrame) -> None:
    """What any table read_positions returns must hold, whatever the file said."""
    assert tuple(table.columns) == SPOT_COLUMNS
    assert len(table) > 0
    assert table["in_tissue"].dtype == bool
    assert table["array_row"].dtype == np.int32 and table["array_col"].dtype == np.int32
    assert np.isfinite(table[["x", "y"]].to_numpy(np.float64)).all()
    barcodes = table["barcode"]
    assert barcodes.map(lambda b: isinstance(b, str) and b != "" and b == b.strip()).all()
    assert barcodes.is_unique


def expected_table(spots: pd.DataFrame) -> pd.DataFrame:
    """What read_positions must return for ``spots`` (our x/y column names)."""
    return pd.DataFrame(
        {
            "barcode": spots["barcode"].astype(str).to_numpy(dtype=object),
            "in_tissue": spots["in_tissue"].astype(bool).to_numpy(),
            "array_row": spots["array_row"].to_numpy(np.int32),
            "array_col": spots["array_col"].to_numpy(np.int32),
            "x": spots["x"].to_numpy(np.float64),
            "y": spots["y"].to_numpy(np.float64),
        }
    )


# --------------------------------------------------------------------------------------------
# Count matrices: what was written, and what any matrix a reader returns must hold


@dataclass
class CountsTruth:
    """A count matrix as written (barcodes × features), changed along with the file."""

    counts: np.ndarray  # (n_barcodes, n_features) whole numbers
    barcodes: list[str]
    gene_ids: list[str]
    gene_names: list[str]
    feature_types: list[str]

    @classmethod
    def random(cls, n_barcodes: int, n_genes: int, *, seed: int) -> CountsTruth:
        ids, names = gene_table(n_genes)
        return cls(
            counts=random_counts(n_barcodes, n_genes, seed=seed).toarray(),
            barcodes=[barcode(i) for i in range(n_barcodes)],
            gene_ids=ids,
            gene_names=names,
            feature_types=[GENE_EXPRESSION] * n_genes,
        )

    def assert_read(self, adata: ad.AnnData) -> None:
        """``adata`` holds exactly the gene expression part of this matrix."""
        genes = np.array(self.feature_types) == GENE_EXPRESSION
        assert adata.obs_names.tolist() == self.barcodes
        assert adata.var["gene_ids"].tolist() == list(np.array(self.gene_ids)[genes])
        assert adata.var["gene_symbols"].tolist() == list(np.array(self.gene_names)[genes])
        np.testing.assert_array_equal(adata.X.toarray(), self.counts[:, genes])


def assert_counts_invariants(adata: ad.AnnData) -> None:
    """What any AnnData a count reader returns must hold, whatever the file said."""
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    data = adata.X.data
    assert np.isfinite(data).all() and (data >= 0).all() and (data == np.round(data)).all()
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    assert all(isinstance(b, str) and b and b == b.strip() for b in adata.obs_names)
    assert (adata.var["feature_types"] == GENE_EXPRESSION).all()
    assert adata.n_vars > 0
