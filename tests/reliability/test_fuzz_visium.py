"""Fuzzing ``read_visium`` on whole Space Ranger folders: files missing, taken from another run,
holding foreign or repeated barcodes, matrices in every format (the R-written one included),
junk beside them or damaged bytes in any one of them. The folder reads as the run it holds, with
one spot per matrix barcode, or is refused in one line."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from factories import SyntheticVisium, hex_lattice, write_counts, write_positions, write_visium
from fuzzing import Damage, damages, fuzz_settings, read_or_refused, sometimes
from tmescope.errors import TmescopeWarning
from tmescope.io.sample import Sample
from tmescope.io.visium import read_visium

SUBJECT = "Space Ranger folder (read_visium)"
MATRICES = {
    "h5": ("h5",),
    "h5_legacy": ("h5_legacy",),
    "mtx_gz": ("mtx_gz",),
    "both": ("h5", "mtx"),
}

Change = Callable[[SyntheticVisium], bool]  # changes the folder; True: still reads as the truth


def _unlink(*names: str, reads: bool) -> Change:
    """Remove files (``"positions"``: whichever positions file the run has)."""

    def change(run: SyntheticVisium) -> bool:
        for name in names:
            if name == "positions":
                for path in run.spatial.glob("tissue_positions*"):
                    path.unlink()
            else:
                (run.spatial / name).unlink()
        return reads

    return change


def _positions_of_another_run(run: SyntheticVisium) -> bool:
    other = hex_lattice(6, 7, first_row=30)  # other barcodes, other places
    other["barcode"] = [b.replace("-1", "-3") for b in other["barcode"]]
    write_positions(run.spatial, other, fmt="v2")
    return False


def _matrix_barcode_repeated(run: SyntheticVisium) -> bool:
    barcodes = [run.barcodes[0], *run.barcodes[1:]]
    barcodes[1] = barcodes[0]
    _rewrite_h5(run, barcodes=barcodes)
    return False


def _matrix_barcodes_foreign(run: SyntheticVisium) -> bool:
    _rewrite_h5(run, barcodes=[b.replace("-1", "-2") for b in run.barcodes])
    return False


def _matrix_a_subset(run: SyntheticVisium) -> bool:
    """A filtered matrix of fewer spots than the positions list: reads, those spots only."""
    keep = max(3, len(run.barcodes) // 2)
    run.barcodes, run.counts = run.barcodes[:keep], sp.csr_matrix(run.counts[:keep])
    _rewrite_h5(run, barcodes=run.barcodes)
    return True


def _rewrite_h5(run: SyntheticVisium, *, barcodes: list[str]) -> None:
    for path in run.outs.glob("*_feature_bc_matrix*"):
        if path.is_file():
            path.unlink()
    write_counts(
        run.outs, sp.csr_matrix(run.counts), barcodes=barcodes, gene_ids=run.gene_ids,
        gene_names=run.gene_names, fmt="h5",
    )  # fmt: skip


def _junk_beside(run: SyntheticVisium) -> bool:
    (run.spatial / "notes.txt").write_text("not Space Ranger's")
    (run.outs / "web_summary.html").write_bytes(b"\x00" * 100)
    (run.spatial / "aligned_fiducials.jpg").write_bytes(b"\xff\xd8\xff junk")
    return True


CHANGES: list[Change] = [
    _unlink("positions", reads=False),
    _unlink("tissue_hires_image.png", reads=True),  # the lowres one then: coarse, still read
    _unlink("tissue_lowres_image.png", reads=True),
    _unlink("tissue_hires_image.png", "tissue_lowres_image.png", reads=False),
    _unlink("scalefactors_json.json", reads=False),  # no scale onto the PNGs
    _positions_of_another_run,
    _matrix_barcode_repeated,
    _matrix_barcodes_foreign,
    _matrix_a_subset,
    _junk_beside,
]
_DAMAGED = ("positions", "scalefactors_json.json", "tissue_hires_image.png", "matrix")


def _damage_target(run: SyntheticVisium, name: str) -> Path | None:
    if name == "positions":
        return next(iter(sorted(run.spatial.glob("tissue_positions*"))), None)
    if name == "matrix":
        files = [p for p in run.outs.glob("*_feature_bc_matrix*") if p.is_file()]
        files += sorted(run.outs.glob("*_feature_bc_matrix/matrix.mtx*"))
        return files[0] if files else None
    return run.spatial / name if (run.spatial / name).is_file() else None


def assert_consistent(sample: Sample) -> None:
    """What any sample read_visium returns must hold."""
    spots = sample.spots
    assert spots["barcode"].tolist() == sample.counts.obs_names.tolist()
    assert spots["barcode"].is_unique and len(spots) > 0
    assert np.isfinite(spots[["x", "y"]].to_numpy(float)).all()
    assert np.isfinite(sample.mpp) and sample.mpp > 0
    np.testing.assert_array_equal(sample.counts.obsm["spatial"], spots[["x", "y"]].to_numpy())


def assert_matches(sample: Sample, run: SyntheticVisium) -> None:
    expected = run.matrix_spots
    assert sample.spots["barcode"].tolist() == run.barcodes
    np.testing.assert_array_equal(
        sample.spots[["x", "y"]].to_numpy(), expected[["x", "y"]].to_numpy()
    )
    np.testing.assert_array_equal(sample.counts.X.toarray(), run.counts.toarray())
    assert sample.counts.var["gene_ids"].tolist() == run.gene_ids


@fuzz_settings(light=6, full=200)
@given(
    matrix=st.sampled_from(sorted(MATRICES)),
    positions=st.sampled_from(["v1", "v1_header", "v2"]),
    change=sometimes(st.integers(0, len(CHANGES) - 1)),
    damage=sometimes(st.tuples(st.sampled_from(_DAMAGED), damages)),
    seed=st.integers(0, 2**16),
)
def test_spaceranger_folder(
    matrix: str, positions: str, change: int | None, damage: tuple[str, Damage] | None, seed: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = write_visium(Path(tmp), matrix=MATRICES[matrix], positions=positions, seed=seed)
        reads = CHANGES[change](run) if change is not None else True
        target = _damage_target(run, damage[0]) if damage is not None else None
        if damage is not None and target is not None:
            target.write_bytes(damage[1].apply(target.read_bytes()))

        def read() -> Sample:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TmescopeWarning)  # coarse images, disagreements
                sample = read_visium(run.path)
            sample.close()  # spots and counts stay in memory
            return sample

        sample = read_or_refused(SUBJECT, read)
    if sample is not None:
        assert_consistent(sample)
    if damage is None:
        if reads:
            assert sample is not None, "refused a readable Space Ranger folder"
            assert_matches(sample, run)
        else:
            assert sample is None, "read a folder it should refuse"
