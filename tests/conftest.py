"""Shared fixtures: synthetic Space Ranger runs (see factories.py) and the public real data.

Also how the suite shares the machine under pytest-xdist (``make test`` runs ``-n 2 --dist
loadscope``): each worker gives torch and BLAS its share of the cores, and a test module runs
whole in one worker, so its module-scoped fixtures are built once. The cohorts several modules
embed (``synth_embedded``, ``grid_store``, ``bins_store``) are session fixtures: built once per
worker, read-only, copied by a test that writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # factories imports the writers: only the fixtures that use them load it
    from factories import SyntheticVisium
    from tmescope.jobs.embed import EmbedSummary

# The public data lies beside the repository (../shared/data); TMESCOPE_TEST_DATA overrides it.
REAL_DATA = Path(
    os.environ.get(
        "TMESCOPE_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)


TESTS = Path(__file__).resolve().parent
# Folders whose modules share a session fixture (tests/viz: one trained store): one group each.
SHARED_FIXTURE_FOLDERS = {"viz"}
# The groups that take longest (minutes of fixtures and subprocesses: see `--durations=0`),
# handed out first, longest first, so that the workers end together rather than one waiting on
# the other's last big module. The others follow in xdist's order (most tests first). A name
# that is gone or out of date only changes the order.
LONGEST_FIRST = (
    "tests/viz",
    "tests/jobs/test_subspot_maps.py",
    "tests/cli/test_embed_cli.py",
    "tests/jobs/test_analysis.py",
    "tests/cli/test_fusion_cli.py",
    "tests/jobs/test_embed.py",
    "tests/test_workflows.py",
    "tests/jobs/test_train_predict.py",
)


def _share_the_cores() -> None:
    """Under xdist, size each worker's thread pools to its share of the cores it may use (unless
    the caller set ``TMESCOPE_THREADS``): two workers of two torch threads each on two cores
    spin against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    from tmescope.cpus import THREADS_ENV, configure_threads, usable_cpus

    # Exported: the CLI a test runs in a subprocess takes the same share.
    os.environ.setdefault(THREADS_ENV, str(max(1, usable_cpus() // workers)))
    # torch, OpenMP and BLAS (numpy's may be loaded already: pytest plugins import it).
    configure_threads()


_share_the_cores()  # before any test module imports torch or numpy's BLAS


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: ignored when xdist is absent
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under ``--dist loadscope``, a test module runs whole in one worker, and so does each
    folder whose modules share a session fixture, so their fixtures are built once; the
    longest groups (``LONGEST_FIRST``) go out first."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFixtureScope(LoadScopeScheduling):
        _longest_first = False

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            parts = module.split("/")
            if len(parts) > 2 and parts[1] in SHARED_FIXTURE_FOLDERS:
                return "/".join(parts[:2])
            return module

        def _assign_work_unit(self, node: Any) -> None:
            if not self._longest_first:  # the first call: the queue is whole
                self._longest_first = True
                rank = {scope: i for i, scope in enumerate(LONGEST_FIRST)}
                queue = sorted(self.workqueue.items(), key=lambda kv: rank.get(kv[0], len(rank)))
                self.workqueue.clear()
                self.workqueue.update(queue)
            super()._assign_work_unit(node)

    return ByFixtureScope(config, log)


def _real(relative: str) -> Path:
    path = REAL_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {relative} not found under {REAL_DATA} (set TMESCOPE_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def heart_dir() -> Path:
    """Real Space Ranger 1.0.0 output (human heart), cut to 100 barcodes × 100 genes."""
    return _real("visium_human_heart_scanpy")


@pytest.fixture(scope="session")
def cmu1_svs() -> Path:
    """Real Aperio SVS, 0.499 µm/px, 2220 × 2967 px, one level."""
    return _real("wsi_cmu1_small_region/CMU-1-Small-Region.svs")


@pytest.fixture(scope="session")
def visium_run(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVisium:
    """A default synthetic run (v2 positions, h5, hires + lowres, a pyramidal full-res TIFF).

    Shared by the whole session: tests must not change its files.
    """
    from factories import add_fullres_tiff, write_visium

    sample = write_visium(tmp_path_factory.mktemp("visium"))
    add_fullres_tiff(sample)
    return sample


@pytest.fixture(scope="session")
def synth_cohort(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small synthetic samples (60 spots each, H&E-like pyramidal TIFF); read-only."""
    from tmescope.datasets import write_synthetic_cohort

    return write_synthetic_cohort(
        tmp_path_factory.mktemp("synth"), n_samples=2, n_spots=60, seed=11
    )


@pytest.fixture(scope="session")
def synth_embedded(
    tmp_path_factory: pytest.TempPathFactory, synth_cohort: list[Path]
) -> Iterator[tuple[Path, list[EmbedSummary]]]:
    """``synth_cohort`` embedded with ``test-vit-tiny`` as ``tmescope embed`` does by default
    (spots and 16 µm sub-spot bins; no grid, no cover patches) into one store, and the
    summaries of that run.

    Built once per worker for every module that reads such a store: read-only, a test that
    writes into it (an index, fused sets, maps, another sample) copies it to ``tmp_path`` first.
    """
    from tmescope.jobs.embed import SampleInput
    from tmescope.workflows import embed_samples, fullres_image_of

    store = tmp_path_factory.mktemp("synth_embedded") / "cohort.zarr"
    items = [SampleInput(d, image=fullres_image_of(d)) for d in synth_cohort]
    summaries = embed_samples(items, store=store, encoder="test-vit-tiny", device="cpu")
    with _kept_read_only(store):
        yield store, summaries


@pytest.fixture(scope="session")
def synth_store(synth_embedded: tuple[Path, list[EmbedSummary]]) -> Path:
    """The store of ``synth_embedded``; read-only (copy it to change it)."""
    return synth_embedded[0]


@pytest.fixture(scope="session")
def grid_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three small synthetic samples (90 spots each, seed 4; ``cohort/`` beside the store, with
    its ``reference.h5ad``) embedded with spots and a 55 µm grid of tiles.

    Shared by the training tests and the viewer's: read-only, copy it to change it
    (``factories.copy_beside_its_cohort``).
    """
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.jobs.embed import EmbedSettings, SampleInput
    from tmescope.workflows import embed_samples, fullres_image_of

    root = tmp_path_factory.mktemp("grid")
    dirs = write_synthetic_cohort(root / "cohort", n_samples=3, n_spots=90, seed=4)
    embed_samples(
        [SampleInput(d, image=fullres_image_of(d)) for d in dirs], store=root / "cohort.zarr",
        encoder="test-vit-tiny", device="cpu", settings=EmbedSettings(grid_um=55.0),
    )  # fmt: skip
    with _kept_read_only(root / "cohort.zarr"):
        yield root / "cohort.zarr"


@pytest.fixture(scope="session")
def bins_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three small synthetic samples (90 spots each, seed 5; ``cohort/`` beside the store, with
    its ``reference.h5ad`` and each sample's cells) embedded as ``tmescope embed`` does by
    default: spots and 16 µm sub-spot bins.

    Shared by the sub-spot and evaluation tests: read-only. A module copies it with its
    ``cohort/`` (``factories.copy_beside_its_cohort``) and adds its own samples.
    """
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.jobs.embed import SampleInput
    from tmescope.workflows import embed_samples, fullres_image_of

    root = tmp_path_factory.mktemp("bins")
    dirs = write_synthetic_cohort(root / "cohort", n_samples=3, n_spots=90, seed=5)
    embed_samples(
        [SampleInput(d, image=fullres_image_of(d)) for d in dirs], store=root / "cohort.zarr",
        encoder="test-vit-tiny", device="cpu",
    )  # fmt: skip
    with _kept_read_only(root / "cohort.zarr"):
        yield root / "cohort.zarr"


@contextmanager
def _kept_read_only(store: Path) -> Iterator[None]:
    """On leaving (the end of the session), fails if a test changed, added or removed a file of
    ``store`` (a test that writes into a shared store must copy it first)."""

    def files() -> dict[str, tuple[int, int]]:
        return {
            p.relative_to(store).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in store.rglob("*")
            if p.is_file()
        }

    before = files()
    yield
    after = files()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test wrote into the shared store {store}: {changed[:5]}; copy it first"
