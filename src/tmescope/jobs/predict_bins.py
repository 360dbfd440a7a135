"""``tmescope predict … --resolution UM``: one sample's sub-spot maps as an AnnData of bins.

One observation per bin: ``obsm["spatial"]`` its centre (x, y, full-resolution px),
``obsm["populations"]`` a DataFrame of the reconciled shares of cells (one column per
population, the reference's cell types), ``obsm["populations_image"]`` the image's shares before
reconciliation and ``obsm["populations_std"]`` their spread over the ensemble; ``X`` the
expected expression of each bin's composition under the reference profiles (counts per 10,000),
with ``layers["uncertainty"]`` its standard deviation from the populations' spread; ``obs``
says which spot's disc holds the bin (``spot``, empty between spots); ``uns["subspot"]`` the bin
size, the model and what the maps assume. A model whose populations come from marker gene sets
(trained without ``--reference``) gives shares of marker signal, and no genes in ``X``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import anndata as ad


def predict_subspot(
    store: Path | str, model_dir: Path | str, *, sample: str, resolution_um: float, out: Path | str
) -> Path:
    """Predict ``sample`` at ``resolution_um`` bins with the sub-spot model of ``model_dir``."""
    from tmescope.jobs.predict import _write_h5ad

    adata = subspot_anndata(store, model_dir, sample=sample, resolution_um=resolution_um)
    return _write_h5ad(adata, Path(out))


def subspot_anndata(
    store: Path | str,
    model_dir: Path | str,
    *,
    sample: str,
    resolution_um: float,
    expression: bool = True,
) -> ad.AnnData:
    """:func:`predict_subspot`'s AnnData, in memory; without ``expression``, no genes (``X`` and
    the uncertainty layer are bins × 0): the populations alone, a fraction of the memory."""
    import anndata as ad
    import pandas as pd

    from tmescope.errors import ModelMismatchError
    from tmescope.fusion.cohort import check_samples
    from tmescope.fusion.model_dir import load_model
    from tmescope.fusion.subspot_data import check_resolution, read_bin_sample
    from tmescope.fusion.subspot_model import SUBSPOT_DIR, SubspotModel, describe, predict_bins
    from tmescope.jobs.predict import _spatial_uns, check_model_fits_store
    from tmescope.store import CohortStore, RowKind

    opened = CohortStore.open(store, mode="r")
    check_samples(opened, [sample])
    check_resolution(opened, sample, resolution_um)
    model = load_model(model_dir, device="cpu")
    check_model_fits_store(model, opened.fingerprint, where=str(opened.path))
    if not (Path(model_dir) / SUBSPOT_DIR).is_dir():
        raise ModelMismatchError(
            f"{model_dir} has no sub-spot model: train it with `tmescope train STORE --out "
            f"{model_dir} --resolution {resolution_um:g}` (with --reference REF.h5ad for shares "
            "of cells)"
        )
    subspot = SubspotModel.load(Path(model_dir) / SUBSPOT_DIR)
    if abs(subspot.bin_um - resolution_um) > 1e-6:
        raise ModelMismatchError(
            f"the sub-spot model of {model_dir} was trained on {subspot.bin_um:g} µm bins, not "
            f"{resolution_um:g} µm; predict with --resolution {subspot.bin_um:g}"
        )
    bins = read_bin_sample(opened, sample, reference=subspot.reference, bin_um=resolution_um)
    prediction = predict_bins(subspot, bins)

    genes = [g for g in model.spec.genes if g in subspot.reference.genes] or list(
        subspot.reference.genes
    )
    # Marker profiles are flat over each set's markers: they predict no gene worth showing.
    genes = genes if expression and not subspot.reference.markers else []
    columns = [subspot.reference.genes.index(g) for g in genes]
    profiles = subspot.reference.profiles[:, columns].astype(np.float64)  # (P, G) per 1e4
    names = list(subspot.populations)
    index = pd.Index([f"{sample}_bin_{i}" for i in range(len(bins.xy))])
    spots = opened.read_barcodes(sample)[opened.read_kind(sample) == RowKind.SPOT]
    adata = ad.AnnData(
        X=(prediction.reconciled @ profiles).astype(np.float32),
        obs=pd.DataFrame(
            {"spot": _disc_spots(spots, bins.disc),
             "sample_id": sample},
            index=index,
        ),
        var=pd.DataFrame(index=pd.Index(genes)),
    )  # fmt: skip
    adata.obsm["spatial"] = bins.xy.astype(np.float64)
    for key, table in (
        ("populations", prediction.reconciled),
        ("populations_image", prediction.image),
        ("populations_std", prediction.std),
    ):
        adata.obsm[key] = pd.DataFrame(table.astype(np.float32), index=index, columns=names)
    adata.layers["uncertainty"] = np.sqrt(prediction.std**2 @ profiles**2).astype(np.float32)
    adata.uns["subspot"] = {
        **_uns(describe(subspot), model_dir, resolution_um, bins.mpp),
        "temperature": prediction.temperature,
        "measured_spots": len(bins.spot_xy),
    }
    if not len(bins.spot_xy):
        adata.uns["subspot"]["reconciled"] = (
            "not reconciled: the sample has no measured spots (an H&E-only slide); the maps are "
            "the image's, at temperature 1 (uncalibrated)"
        )
    adata.uns["spatial"] = _spatial_uns(opened, sample)
    return adata


def _disc_spots(barcodes: np.ndarray, disc: np.ndarray) -> np.ndarray:
    """The barcode of the spot whose disc holds each bin; empty between spots."""
    out = np.full(disc.shape, "", dtype=object)
    inside = disc >= 0
    out[inside] = np.asarray(barcodes)[disc[inside]]
    return out


def _uns(
    described: dict[str, Any], model_dir: Path | str, bin_um: float, um_per_px: float
) -> dict[str, Any]:
    if described["populations_from"] == "markers":
        abundance = (
            "shares of marker signal (the spots' Poisson deconvolution against each population "
            "gene set's markers), not shares of cells: train with --reference for those"
        )
        genes = "no genes: marker gene sets give no expression profiles (train with --reference)"
    else:
        abundance = (
            "shares of cells (the spots' Poisson deconvolution against the reference: "
            "shares of RNA / each type's counts per cell)"
        )
        genes = (
            "expected expression of the bin's composition under the reference profiles "
            "(counts per 10,000)"
        )
    return {
        **described,
        "bin_um": float(bin_um),
        "um_per_px": float(um_per_px),
        "model_dir": str(model_dir),
        "abundance": abundance,
        "reconciled": "inside spot discs the mean over the disc equals the measured spot; "
        "between spots, the image corrected by nearby spots",
        "X": genes,
    }
