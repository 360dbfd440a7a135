"""Finding model weights in the local Hugging Face cache, offline.

Build machines have no internet: weights are only ever looked up in the cache a user filled
elsewhere (``hf download <repo>``), never fetched. The cache folder is resolved from the
environment at each call (``HF_HUB_CACHE``, ``HF_HOME``, ``XDG_CACHE_HOME``, as huggingface_hub
does once at import), so a process or test that changes them is obeyed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder the environment points at now."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return _expand(os.environ[variable])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return _expand(home) / "hub"


def find_cached_file(
    repo: str, filenames: Iterable[str], *, cache_dir: Path | None = None
) -> Path | None:
    """The first of ``filenames`` present in a cached snapshot of model ``repo``, else None.

    The snapshot ``refs/main`` points at is preferred (huggingface_hub's own lookup); a cache
    copied without its refs falls back to the newest snapshot holding the file.
    """
    from huggingface_hub import try_to_load_from_cache

    cache = cache_dir if cache_dir is not None else hf_hub_cache()
    names = list(filenames)
    for filename in names:
        found = try_to_load_from_cache(repo, filename, cache_dir=cache)
        if isinstance(found, str):
            return Path(found)
    snapshots = cache / f"models--{repo.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    for snapshot in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        for filename in names:
            if (snapshot / filename).is_file():
                return snapshot / filename
    return None


def _expand(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path)))
