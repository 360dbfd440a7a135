"""The sub-spot model: fitted on training samples' bins, saved in a model folder, applied to a
sample's bins and reconciled with its measured spots.

::

    MODEL_DIR/subspot/
      subspot.json            bin size, populations (and whether they come from a single-cell
                              reference or from marker genes), counts per cell, genes, config
      weights.safetensors     the PCA projection, every member's weights, the reference profiles

Inputs (bin features and context-ring means, standardised per sample) are reduced by a PCA
fitted on the training samples' bins only (a seeded subsample of them in a large cohort), then fed
to the ensemble of :mod:`tmescope.fusion.bin_head`; :mod:`tmescope.fusion.subspot_fit` fits it. Prediction gives the image's compositions, their spread over
members, and the compositions reconciled with the sample's measured spots
(:mod:`tmescope.fusion.reconcile`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tmescope.errors import ModelMismatchError
from tmescope.fusion.bin_head import BinHead, BinHeadConfig
from tmescope.fusion.reference import ReferenceProfiles
from tmescope.fusion.subspot_data import BinSample

SUBSPOT_DIR = "subspot"
PCA_DIM = 64  # inputs reduced to this many components before the heads
SPREAD_SIGMA_UM = 50.0  # how far a spot's correction reaches between spots (half the pitch)


@dataclass(frozen=True, eq=False)
class SubspotModel:
    """A fitted sub-spot model, with the reference that gives a sample's spot compositions."""

    bin_um: float
    reference: ReferenceProfiles
    config: BinHeadConfig
    mean: np.ndarray  # (d,) PCA centre
    components: np.ndarray  # (d, k) PCA projection
    heads: tuple[BinHead, ...]
    samples: tuple[str, ...]  # trained on

    @property
    def populations(self) -> tuple[str, ...]:
        return self.reference.cell_types

    def reduce(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.mean) @ self.components).astype(np.float32)

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            "pca.mean": self.mean,
            "pca.components": self.components,
            "reference.profiles": self.reference.profiles,
        }
        for i, head in enumerate(self.heads):
            for name, value in head.state_dict().items():
                tensors[f"member_{i}.{name}"] = value.detach().cpu().numpy()
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()},
            directory / "weights.safetensors",
        )
        header = {
            "bin_um": self.bin_um,
            "populations": list(self.populations),
            "n_cells": list(self.reference.n_cells),
            "counts_per_cell": list(self.reference.counts_per_cell or ()),
            "populations_from": populations_from(self.reference),
            "genes": list(self.reference.genes),
            "config": self.config.to_dict(),
            "d_in": int(self.mean.size),
            "samples": list(self.samples),
        }
        (directory / "subspot.json").write_text(json.dumps(header, indent=1))

    @classmethod
    def load(cls, directory: Path) -> SubspotModel:
        import torch
        from safetensors.numpy import load_file

        try:
            header = json.loads((directory / "subspot.json").read_text(encoding="utf-8"))
            tensors = load_file(directory / "weights.safetensors")
        except (OSError, ValueError) as error:
            raise ModelMismatchError(
                f"{directory} is not a readable sub-spot model ({error}); train again with "
                "`tmescope train … --resolution 16`"
            ) from error
        # Models from before the density output have no such key: their heads weigh bins alike.
        config = BinHeadConfig(**{"cell_weighted": False, **header["config"]})
        components = tensors["pca.components"]
        heads = []
        for i in range(config.n_members):
            head = config.head(components.shape[1], len(header["populations"]))
            prefix = f"member_{i}."
            state = {
                k[len(prefix) :]: torch.from_numpy(v)
                for k, v in tensors.items()
                if k.startswith(prefix)
            }
            head.load_state_dict(state)
            head.eval()
            heads.append(head)
        reference = ReferenceProfiles(
            cell_types=tuple(header["populations"]), genes=tuple(header["genes"]),
            profiles=tensors["reference.profiles"], n_cells=tuple(header["n_cells"]),
            counts_per_cell=tuple(header["counts_per_cell"]) or None,
            markers=header.get("populations_from") == "markers",
        )  # fmt: skip
        return cls(
            bin_um=float(header["bin_um"]), reference=reference, config=config,
            mean=tensors["pca.mean"], components=components, heads=tuple(heads),
            samples=tuple(header["samples"]),
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class BinPrediction:
    """Per bin: the image's compositions, their spread over members, and the reconciled ones;
    the temperature the sample's spots chose (:mod:`tmescope.fusion.calibration`) and the
    strength of their corrections between them (:func:`~tmescope.fusion.reconcile.
    fit_spread_strength`); the bins' relative cell density (mean one; ``None`` from a model
    without it)."""

    image: np.ndarray  # (n, P)
    std: np.ndarray  # (n, P)
    reconciled: np.ndarray  # (n, P)
    temperature: float = 1.0
    density: np.ndarray | None = None  # (n,)
    spread: float = 1.0  # the strength of the spots' corrections between them


def predict_bins(model: SubspotModel, sample: BinSample) -> BinPrediction:
    """Compositions of every bin of ``sample``, calibrated on and reconciled with its measured
    spots; for a sample without spots (an H&E-only slide), the image's at temperature 1."""
    from tmescope.fusion.bin_head import member_outputs
    from tmescope.fusion.calibration import fit_temperature, tempered_shares
    from tmescope.fusion.reconcile import (
        fit_spread_strength,
        reconcile_discs,
        spread_corrections,
    )

    logits, density = member_outputs(model.heads, model.reduce(sample.x))
    temperature = fit_temperature(logits, sample.discs, sample.measured, density=density)
    image, std = tempered_shares(logits, temperature)
    if not len(sample.spot_xy):  # an H&E-only slide: nothing to calibrate or reconcile with
        return BinPrediction(
            image=image, std=std, reconciled=image, temperature=temperature, density=density
        )
    inside = reconcile_discs(image, sample.disc, sample.measured, weights=density)
    # Corrections compare the measurement with the *image's* disc means (after reconciliation
    # they would all be nothing); bins between spots are left alone by reconcile_discs.
    sigma_px = SPREAD_SIGMA_UM / sample.mpp
    spread = fit_spread_strength(
        image, sample.disc, sample.measured, sample.spot_xy, sigma_px=sigma_px, weights=density
    )
    between = spread_corrections(
        image, sample.xy, sample.disc, sample.measured, sample.spot_xy, sigma_px=sigma_px,
        weights=density, strength=spread,
    )  # fmt: skip
    reconciled = np.where((sample.disc >= 0)[:, None], inside, between)
    return BinPrediction(
        image=image, std=std, reconciled=reconciled, temperature=temperature, density=density,
        spread=spread,
    )  # fmt: skip


def populations_from(reference: ReferenceProfiles) -> str:
    """``"markers"`` (gene sets, shares of marker signal) or ``"reference"`` (shares of cells)."""
    return "markers" if reference.markers else "reference"


def describe(model: SubspotModel) -> dict[str, Any]:
    """What ``uns`` says about the model that made a prediction."""
    return {
        "bin_um": model.bin_um,
        "populations": list(model.populations),
        "populations_from": populations_from(model.reference),
        "trained_on": list(model.samples),
        "members": model.config.n_members,
        "pca_dim": int(model.components.shape[1]),
    }
