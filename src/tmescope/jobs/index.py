"""The similarity index of a store, over raw or fused embeddings (twin of ``tmescope index``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tmescope.errors import InvalidParameterError

if TYPE_CHECKING:
    from tmescope.store.index import IndexInfo, VectorSpace


def build_cohort_index(
    store: Path | str,
    *,
    kind: str = "auto",
    space: str = "raw",
    model_dir: Path | str | None = None,
    device: str = "auto",
) -> IndexInfo:
    """Build (or refresh) the similarity index of a store (twin of ``tmescope index``).

    ``auto`` refreshes incrementally where the index type allows and rebuilds otherwise; an
    explicit kind always rebuilds with that kind. ``space="fused"`` indexes the fused
    embeddings of ``model_dir``'s model instead (written into the store first where missing).
    """
    from tmescope.store import CohortStore
    from tmescope.store.index import build_index, refresh_index

    vectors = _vector_space(store, space, model_dir, device=device)
    opened = CohortStore.open(store, mode="a")
    if kind == "auto":
        return refresh_index(opened, space=vectors)
    return build_index(opened, kind=kind, space=vectors)  # type: ignore[arg-type]


def _vector_space(
    store: Path | str, space: str, model_dir: Path | str | None, *, device: str = "auto"
) -> VectorSpace:
    """The index space asked for; for ``fused``, the model's fused sets brought up to date."""
    from tmescope.store.index import RAW, VectorSpace

    if space == "raw":
        if model_dir is not None:
            raise InvalidParameterError("--model goes with --space fused only")
        return RAW
    if space != "fused":
        raise InvalidParameterError(f"--space must be raw or fused, got {space!r}")
    if model_dir is None:
        raise InvalidParameterError(
            "--space fused needs --model MODEL_DIR: the fused space is a trained model's"
        )
    from tmescope.jobs.fused import write_fused

    return VectorSpace(write_fused(store, model_dir, device=device).model_id)
