"""A trained model on disk: the head ensemble, its targets and the store it belongs to.

::

    MODEL_DIR/
      model.json        format, tmescope version, the store's encoder fingerprint, the samples
                        trained on, the targets (genes, TME states and their training
                        statistics), the spot-graph settings and the cross-validation report
      head/             the ensemble (``train.Ensemble.save``: safetensors + head.json)
      reference.npz     the single-cell reference profiles, when states came from one
      subspot/          the sub-spot model, when trained with --resolution
                        (``fusion.subspot_model``)

A model is written into a hidden sibling folder and swapped into place in one step
(``store.atomic``), so a reader sees a whole model or the previous one, never a mix, and a
killed training leaves the previous model as it was; safetensors and JSON only (no pickle).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tmescope.errors import InputNotFoundError, ModelMismatchError
from tmescope.fusion.reference import ReferenceProfiles
from tmescope.fusion.target_spec import TargetSpec
from tmescope.store.atomic import write_atomically
from tmescope.store.durable import fsync_tree

FORMAT = "tmescope-fusion-model"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
HEAD_DIR = "head"
REFERENCE = "reference.npz"


@dataclass(frozen=True)
class FusionModel:
    """A loaded model: ensemble, target recipe and where it came from."""

    path: Path
    ensemble: Any  # tmescope.fusion.train.Ensemble
    spec: TargetSpec
    fingerprint: Mapping[str, Any]  # the store's encoder fingerprint at training time
    info: Mapping[str, Any] = field(default_factory=dict)  # the rest of model.json

    @property
    def model_id(self) -> str:
        return str(self.info.get("model_id", ""))


def save_model(
    directory: Path,
    *,
    ensemble: Any,
    spec: TargetSpec,
    fingerprint: Mapping[str, Any],
    info: Mapping[str, Any],
    parts: Mapping[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write a model to ``directory``, replacing any model there only once the new one is whole.

    ``parts`` name further subfolders and how to write each (e.g. ``subspot``): they are written
    inside the same new folder, so they appear with the rest of the model or not at all.
    """
    from tmescope._version import __version__

    directory = Path(directory)
    check_destination(directory)

    def write(partial: Path) -> None:
        partial.mkdir()
        ensemble.save(partial / HEAD_DIR)
        if spec.reference is not None:
            ref = spec.reference
            np.savez(
                partial / REFERENCE,
                cell_types=np.asarray(ref.cell_types, dtype=str),
                genes=np.asarray(ref.genes, dtype=str),
                profiles=ref.profiles,
                n_cells=np.asarray(ref.n_cells),
                counts_per_cell=np.asarray(ref.counts_per_cell or [], dtype=np.float64),
            )
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "tmescope": __version__,
            "model_id": uuid.uuid4().hex[:12],
            "fingerprint": dict(fingerprint),
            "target": spec.to_json(),
            **dict(info),
        }
        for name, write_part in (parts or {}).items():
            write_part(partial / name)
        (partial / MODEL_JSON).write_text(json.dumps(header, indent=1, allow_nan=True))
        fsync_tree(partial)
        check_destination(directory)  # still a model (or nothing) after the training

    write_atomically(directory, write)
    return directory


def load_model(directory: Path | str, *, device: str = "cpu") -> FusionModel:
    """Read a model written by :func:`save_model`; a named error for anything else."""
    from tmescope.fusion.train import Ensemble

    directory = Path(directory)
    if not directory.exists():
        raise InputNotFoundError(
            f"model directory {directory} does not exist; train one with `tmescope train STORE "
            f"--out {directory}`"
        )
    try:
        header = json.loads((directory / MODEL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelMismatchError(
            f"{directory} is not a tmescope model directory (no readable {MODEL_JSON}: {error}); "
            "give the --out folder of `tmescope train`"
        ) from error
    if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise ModelMismatchError(
            f"{directory} holds {header.get('format')!r} version {header.get('version')!r}; "
            f"this tmescope reads {FORMAT!r} version {FORMAT_VERSION}: train the model again"
        )
    reference = None
    if (directory / REFERENCE).exists():
        with np.load(directory / REFERENCE, allow_pickle=False) as data:
            reference = ReferenceProfiles(
                cell_types=tuple(data["cell_types"].tolist()),
                genes=tuple(data["genes"].tolist()),
                profiles=data["profiles"],
                n_cells=tuple(int(v) for v in data["n_cells"].tolist()),
                counts_per_cell=(
                    tuple(float(v) for v in data["counts_per_cell"].tolist())
                    if "counts_per_cell" in data.files and data["counts_per_cell"].size
                    else None  # a model trained before the reference kept it
                ),
            )
    spec = TargetSpec.from_json(header["target"], reference=reference)
    ensemble = Ensemble.load(directory / HEAD_DIR, device=device)
    info = {k: v for k, v in header.items() if k not in ("fingerprint", "target")}
    return FusionModel(directory, ensemble, spec, header["fingerprint"], info)


def check_destination(directory: Path) -> None:
    """Refuse, before any work, to write a model over a folder that holds something else."""
    directory = Path(directory)
    if directory.is_file() or (
        directory.is_dir() and not (directory / MODEL_JSON).exists() and any(directory.iterdir())
    ):
        raise ModelMismatchError(
            f"{directory} exists and is not a tmescope model directory; choose another --out "
            "(nothing was written)"
        )
