"""Store upkeep: list, describe, remove and verify samples (twins of ``tmescope store …``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tmescope.errors import SampleNotFoundError

if TYPE_CHECKING:
    from tmescope.store import SampleSummary as StoreSampleSummary
    from tmescope.store import StoreInfo


def store_summary(store: Path | str) -> list[StoreSampleSummary]:
    """One summary per sample of a store (twin of ``tmescope store ls``)."""
    from tmescope.store import CohortStore

    return CohortStore.open(store, mode="r").summary()


def store_info(store: Path | str) -> StoreInfo:
    """The store's header and samples (twin of ``tmescope store info``)."""
    from tmescope.store import CohortStore

    return CohortStore.open(store, mode="r").info()


def remove_samples(
    store: Path | str, sample_ids: Sequence[str], *, missing_ok: bool = False
) -> list[str]:
    """Remove samples from a store (twin of ``tmescope store rm``); all ids are checked first.

    ``missing_ok`` skips the ids the store does not hold instead of refusing them, so a script
    can run the removal again (after a kill, say); the ids removed are returned. Removals that a
    killed process left unfinished are finished off either way.
    """
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="a")
    opened.finish_removals()
    present = set(opened.sample_ids(include_incomplete=True))
    missing = [s for s in sample_ids if s not in present]
    if missing and not missing_ok:
        raise SampleNotFoundError(
            f"{', '.join(missing)} not in {store}; it holds {', '.join(sorted(present)) or 'no samples'}"
            " (--missing-ok skips such ids)"
        )
    removed = [s for s in dict.fromkeys(sample_ids) if s in present]
    for sample_id in removed:
        opened.remove_sample(sample_id)
    return removed


def verify_store(store: Path | str) -> list[str]:
    """Problems found in a store, empty when it is sound (twin of ``tmescope store verify``)."""
    from tmescope.store import CohortStore

    return CohortStore.open(store, mode="r").verify()
