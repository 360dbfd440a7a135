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

A sample's maps are predicted once and kept in the store (``maps/<model_id>/<sample>/``); the
AnnData is rebuilt from them each time (:mod:`tmescope.jobs.subspot_maps`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.jobs.subspot_maps import SubspotPredictor
    from tmescope.store import CohortStore
    from tmescope.store.maps import SavedMaps


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
    the uncertainty layer are bins × 0): the populations alone, a fraction of the memory.

    The maps are the sample's saved ones when fresh (``maps/`` of the store), else predicted
    now and saved (:mod:`tmescope.jobs.subspot_maps`).
    """
    from tmescope.jobs.subspot_maps import load_predictor, open_for_saving

    opened = open_for_saving(store)
    return stored_subspot_anndata(
        opened, load_predictor(model_dir), sample, resolution_um=resolution_um,
        model_dir=model_dir, expression=expression,
    )  # fmt: skip


def stored_subspot_anndata(
    store: CohortStore,
    predictor: SubspotPredictor,
    sample: str,
    *,
    resolution_um: float,
    model_dir: Path | str,
    expression: bool = True,
) -> ad.AnnData:
    """:func:`subspot_anndata` on an opened store (saving the maps when it is writable) and a
    loaded model: what a per-sample task calls."""
    from tmescope.fusion.cohort import check_samples
    from tmescope.fusion.subspot_data import check_resolution
    from tmescope.jobs.subspot_maps import check_predictor, sample_maps

    check_samples(store, [sample])
    check_resolution(store, sample, resolution_um)
    check_predictor(store, predictor, resolution_um)
    maps = sample_maps(store, predictor, sample)
    return maps_anndata(store, predictor, sample, maps, model_dir=model_dir, expression=expression)


def maps_anndata(
    store: CohortStore,
    predictor: SubspotPredictor,
    sample: str,
    maps: SavedMaps,
    *,
    model_dir: Path | str,
    expression: bool = True,
    image: bool = True,
) -> ad.AnnData:
    """The AnnData of a sample's maps (saved or just predicted): expression is recomputed as
    the shares times the reference profiles; positions and spots are read from the store.
    Without ``image``, ``uns["spatial"]`` (the Space Ranger images, read from its folder) is
    left out: statistics on the maps do not look at it."""
    import anndata as ad
    import pandas as pd

    from tmescope.fusion.subspot_model import describe
    from tmescope.jobs.predict import _spatial_uns
    from tmescope.store import RowKind

    subspot = predictor.subspot
    genes = [g for g in predictor.genes if g in subspot.reference.genes] or list(
        subspot.reference.genes
    )
    # Marker profiles are flat over each set's markers: they predict no gene worth showing.
    genes = genes if expression and not subspot.reference.markers else []
    columns = [subspot.reference.genes.index(g) for g in genes]
    profiles = subspot.reference.profiles[:, columns].astype(np.float64)  # (P, G) per 1e4
    names = list(subspot.populations)
    index = pd.Index([f"{sample}_bin_{i}" for i in range(maps.n_bins)])
    spots = store.read_barcodes(sample)[store.read_kind(sample) == RowKind.SPOT]
    adata = ad.AnnData(
        X=(maps.reconciled @ profiles).astype(np.float32),
        obs=pd.DataFrame(
            {"spot": _disc_spots(spots, maps.disc),
             "sample_id": sample},
            index=index,
        ),
        var=pd.DataFrame(index=pd.Index(genes)),
    )  # fmt: skip
    adata.obsm["spatial"] = np.asarray(store.read_bins(sample).coords, dtype=np.float64)
    for key, table in (
        ("populations", maps.reconciled),
        ("populations_image", maps.image),
        ("populations_std", maps.std),
    ):
        adata.obsm[key] = pd.DataFrame(table.astype(np.float32), index=index, columns=names)
    adata.layers["uncertainty"] = np.sqrt(maps.std**2 @ profiles**2).astype(np.float32)
    mpp = float(store.sample_record(sample).meta.mpp)
    adata.uns["subspot"] = {
        **_uns(describe(subspot), model_dir, maps.bin_um, mpp),
        "model_id": predictor.model_id,
        "temperature": maps.temperature,
        "spread": maps.spread,
        "measured_spots": maps.measured_spots,
    }
    if not maps.measured_spots:
        adata.uns["subspot"]["reconciled"] = (
            "not reconciled: the sample has no measured spots (an H&E-only slide); the maps are "
            "the image's, at temperature 1 (uncalibrated)"
        )
    if image:
        adata.uns["spatial"] = _spatial_uns(store, sample)
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
