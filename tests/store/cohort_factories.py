"""Small synthetic samples, a second writer process and a tree snapshot for the store tests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.store import CohortStore, RowKind, SampleMeta, SampleRows

FINGERPRINT = {
    "model": "test-vit-tiny",
    "weights": "seed:0",
    "input_px": 32,
    "mpp": 0.5,
    "mean": [0.5, 0.5, 0.5],
    "pooling": "cls",
}
CHILD = Path(__file__).with_name("writer_child.py")


@dataclass(frozen=True, eq=False)
class SampleData:
    """Everything one sample's writer needs, and what a reader must get back."""

    rows: SampleRows
    meta: SampleMeta
    embeddings: np.ndarray  # (n, dim) float32
    counts: ad.AnnData


def make_sample(
    *, n_spots: int = 40, n_tiles: int = 9, dim: int = 8, seed: int = 0, source_hash: str = "h0"
) -> SampleData:
    rng = np.random.default_rng(seed)
    n = n_spots + n_tiles
    barcodes = [f"AAAC{i:04d}-1" for i in range(n_spots)] + [f"tile_{i}" for i in range(n_tiles)]
    rows = SampleRows(
        coords=rng.uniform(0, 5000, (n, 2)),
        barcodes=np.array(barcodes),
        kind=np.r_[np.full(n_spots, RowKind.SPOT), np.full(n_tiles, RowKind.TILE)],
        tissue_fraction=rng.uniform(0, 1, n),
    )
    meta = SampleMeta(
        source_path=f"/data/sample{seed}/outs",
        source_hash=source_hash,
        mpp=0.4,
        patch_um=112.0,
        patch_px=32,
        extra={"platform": "visium"},
    )
    counts = ad.AnnData(
        X=sp.random(n_spots, 6, density=0.4, format="csr", dtype=np.float32, rng=rng),
        obs=pd.DataFrame({"in_tissue": rng.integers(0, 2, n_spots)}, index=barcodes[:n_spots]),
        var=pd.DataFrame(
            {"gene_ids": [f"ENSG{i}" for i in range(6)]}, index=[f"G{i}" for i in range(6)]
        ),
    )
    return SampleData(rows, meta, rng.normal(size=(n, dim)).astype(np.float32), counts)


def write_sample(
    store: CohortStore,
    sample_id: str,
    data: SampleData,
    *,
    chunk_rows: int = 16,
    counts: bool = True,
) -> None:
    writer = store.begin_sample(
        sample_id,
        rows=data.rows,
        meta=data.meta,
        dim=data.embeddings.shape[1],
        chunk_rows=chunk_rows,
    )
    assert writer is not None
    with writer:
        for i in writer.pending_chunks():
            writer.write_chunk(i, data.embeddings[writer.rows(i)])
        writer.finish(data.counts if counts else None)


def snapshot(path: Path) -> dict[str, str]:
    """Every file and folder under ``path`` with a hash of its bytes: equal means untouched."""
    entries = {}
    for folder, dirs, files in os.walk(path):
        for name in dirs:
            entries[os.path.relpath(os.path.join(folder, name), path)] = "dir"
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as handle:
                entries[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return entries


def start_child(
    store: Path,
    sample_id: str,
    data: SampleData,
    tmp_path: Path,
    *,
    delay: float = 0.0,
    chunk_rows: int = 16,
    hold_at: int | None = None,
    gate: Path | None = None,
) -> subprocess.Popen[str]:
    """Start a separate Python process that writes ``data`` as ``sample_id`` (see writer_child.py).

    With ``hold_at`` and ``gate``, the child stops before chunk ``hold_at`` (printing
    ``holding``) until the file ``gate`` exists.
    """
    payload = tmp_path / f"{sample_id}-{os.urandom(4).hex()}.npz"
    np.savez(
        payload,
        coords=data.rows.coords,
        barcodes=data.rows.barcodes,
        kind=data.rows.kind,
        tissue_fraction=data.rows.tissue_fraction,
        embeddings=data.embeddings,
        meta=json.dumps({**asdict(data.meta), "extra": dict(data.meta.extra)}),
        fingerprint=json.dumps(FINGERPRINT),
        chunk_rows=chunk_rows,
    )
    hold = [str(hold_at), str(gate)] if hold_at is not None and gate is not None else []
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(store), sample_id, str(payload), str(delay), *hold],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(child: subprocess.Popen[str], prefix: str) -> list[str]:
    """Read the child's output until a line starts with ``prefix``; fail if it exits first."""
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(line.strip())
        if line.startswith(prefix):
            return seen
    _, err = child.communicate(timeout=30)
    raise AssertionError(f"child exited ({child.returncode}) before {prefix!r}: {seen} {err}")
