"""The work folder of one ``tmescope train``: what a killed training keeps for the next one.

Beside the model folder ``OUT``, ``.OUT.train-work/`` holds, as they are finished:

    key.json        what the work depends on: the store, its training samples (source hash and
                    completion time), the settings, the reference file, tmescope's version
    spots/          each sample's spot arrays (fusion.spot_cache), read from the store once
    folds/<i>/      a cross-validation fold's scores and held-out predictions, per model
    final/          the final head's ensemble
    pieces/         the head's training pieces while it is fitted (fusion.train)
    subspot/        the sub-spot model's rows, PCA and members (fusion.subspot_fit)

A training started again with the same key skips what is there; with another key (a sample
re-embedded, another setting) the folder is emptied first. The model is written whole at the end
(``fusion.model_dir``), then the folder is removed. A lock beside it keeps two trainings of the
same ``OUT`` apart.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tmescope._version import __version__
from tmescope.errors import TmescopeError

log = logging.getLogger(__name__)

KEY = "key.json"


class TrainWork:
    """An open work folder (see the module docstring); use :func:`open_work`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def spots(self) -> Path:
        return self.folder / "spots"

    @property
    def subspot(self) -> Path:
        return self.folder / "subspot"

    @property
    def pieces(self) -> Path:
        """Where the head's training pieces wait between steps (emptied after each fit)."""
        return self.folder / "pieces"

    @property
    def final(self) -> Path:
        return self.folder / "final"

    def _fold(self, index: int) -> Path:
        return self.folder / "folds" / str(index)

    def has_fold(self, index: int) -> bool:
        return (self._fold(index) / "scores.json").is_file()

    def save_fold(self, index: int, scores: Mapping[str, Any]) -> None:
        """Keep a fold's :class:`~tmescope.fusion.evaluation.ModelScores` (one per model)."""
        folder = self._fold(index)
        partial = folder.with_name(f".tmp-{index}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name, value in scores.items():
            with (partial / f"{name}.npz").open("wb") as handle:
                np.savez(handle, **value.predictions)
        state = {name: value.to_state() for name, value in scores.items()}
        (partial / "scores.json").write_text(json.dumps(state), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)

    def load_fold(self, index: int, models: Sequence[str]) -> dict[str, Any]:
        from tmescope.fusion.evaluation import ModelScores

        folder = self._fold(index)
        state = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
        scores = {}
        for name in models:
            with np.load(folder / f"{name}.npz") as saved:
                predictions = {k: saved[k] for k in saved.files}
            scores[name] = ModelScores.from_state(state[name], predictions)
        return scores

    def final_head(self, device: str) -> Any | None:
        """The final ensemble saved by an earlier run, or ``None``."""
        from tmescope.fusion.train import Ensemble

        if not (self.final / "head.json").is_file():
            return None
        return Ensemble.load(self.final, device=device)

    def save_final_head(self, ensemble: Any) -> None:
        partial = self.folder / ".tmp-final"
        shutil.rmtree(partial, ignore_errors=True)
        ensemble.save(partial)
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(partial, self.final)


@contextmanager
def open_work(out: Path, key: Mapping[str, Any]) -> Iterator[TrainWork]:
    """The work folder of the model folder ``out`` for ``key``, locked while in use; removed
    when the block ends without an error (the model is then written) and when it is refused
    for its inputs (a :class:`~tmescope.errors.TmescopeError`: the same inputs would be
    refused again), kept when it is interrupted or crashes, for the next run to resume."""
    from tmescope.store.locking import NameLock

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent / f".{out.name}.train-work"
    lock = NameLock(out.parent / f".{out.name}.train.lock", what=f"the model folder {out}")
    lock.acquire()
    try:
        _prepare(folder, key)
        try:
            yield TrainWork(folder)
        except TmescopeError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.release()


def _prepare(folder: Path, key: Mapping[str, Any]) -> None:
    """Empty ``folder`` unless it holds work for the same ``key``; record the key."""
    wanted = json.loads(json.dumps({**key, "tmescope": __version__}, default=str))
    known = None
    if (folder / KEY).is_file():
        try:
            known = json.loads((folder / KEY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = None
    if known == wanted:
        log.info("resuming the training kept in %s", folder)
        return
    if folder.exists():
        log.info("the work in %s was for other inputs or settings: starting afresh", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / KEY).write_text(json.dumps(wanted, indent=1), encoding="utf-8")
