"""``source_hash`` reads its inputs a MiB at a time yet gives the digests stores already hold, and
tells bins summed from 2 µm ones apart by their size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from factories import write_visium, write_visium_hd
from tmescope.io import Sample, read_visium
from tmescope.jobs import embed
from tmescope.jobs.embed import source_hash


def whole_file_hash(sample: Sample) -> str:
    """The digest as it was computed before inputs were streamed: every file read whole."""
    digest = hashlib.sha256()
    layout = sample.layout
    for path in (layout.positions, layout.h5 or layout.mtx_dir, layout.scalefactors):
        if path is None:
            continue
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                digest.update(file.name.encode())
                digest.update(file.read_bytes())
    slide = sample.slide.path
    size = slide.stat().st_size
    digest.update(str(size).encode())
    data = slide.read_bytes()
    digest.update(data[: 1 << 20])
    digest.update(data[max(0, size - (1 << 20)) :])
    return digest.hexdigest()


@pytest.mark.parametrize("matrix", ["h5", "mtx_gz"])
def test_streamed_digest_is_the_whole_file_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, matrix: str
) -> None:
    run = write_visium(tmp_path, matrix=(matrix,), seed=2)
    monkeypatch.setattr(embed, "_HASH_BLOCK_BYTES", 64)  # many blocks even for small files
    with read_visium(run.path) as sample:
        assert source_hash(sample) == whole_file_hash(sample)


def test_summed_bin_sizes_hash_apart(tmp_path: Path) -> None:
    hd = write_visium_hd(tmp_path, bin_sizes=(2, 8))
    digests = {}
    for size in (2, 4, 6, 8):
        with read_visium(hd.path, bin_size_um=size) as sample:
            digests[size] = source_hash(sample)
            if sample.layout.summed_from is None:  # a written size: as before streaming
                assert digests[size] == whole_file_hash(sample)
    assert len(set(digests.values())) == 4


def test_written_bin_sizes_hash_apart(tmp_path: Path) -> None:
    """Each written size is its own folder's files; summed sizes beside them differ too."""
    hd = write_visium_hd(tmp_path, bin_sizes=(2, 8, 16))
    digests = set()
    for size in (2, 8, 16, 4, 32):
        with read_visium(hd.path, bin_size_um=size) as sample:
            digests.add(source_hash(sample))
    assert len(digests) == 5
