"""Predict one sample with a trained model (twin of ``tmescope predict``) and write AnnData.

The AnnData reads in scanpy and squidpy as a Visium sample does: ``obsm["spatial"]`` in
full-resolution pixels and ``uns["spatial"][sample]`` with the scalefactors and the lowres image.
``X`` holds the predicted expression (ensemble mean), ``layers["std"]`` its spread over the
ensemble, ``layers["measured"]`` the measured log1p expression of spots (NaN for tiles);
``obsm["tme_states"]`` (and ``obsm["tme_states_std"]``) the TME states, also copied to ``obs``
as ``state_<name>`` columns for plotting; ``obsm["fused"]`` the head's hidden representation;
``obsp["attention"]`` the last attention layer's weights (row: the spot attending, column: the
neighbour it attends to, mean over heads) and ``obsp["attention_layer1"]`` the first layer's.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.errors import (
    ModelMismatchError,
    SampleNotFoundError,
    TmescopeError,
    TmescopeWarning,
)
from tmescope.fusion.prediction import SamplePrediction
from tmescope.store.atomic import write_atomically

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.fusion.model_dir import FusionModel
    from tmescope.store import CohortStore

log = logging.getLogger(__name__)

GRID_NEIGHBOURS = 6  # spots each grid tile listens to: its ring of Visium neighbours
SLIDE_LOWRES_PX = 2000  # long side of an H&E-only slide's stand-in lowres image


def predict_rows(
    store: CohortStore, model: FusionModel, sample: str, *, grid: bool = False
) -> SamplePrediction:
    """Predict ``sample``'s spots (and, with ``grid``, its tiles) with a loaded model.

    Tiles listen to their :data:`GRID_NEIGHBOURS` nearest spots and send nothing back, so the
    spots' predictions are the same with or without them. A :class:`ModelMismatchError` when
    the model was trained on another encoder's embeddings.
    """
    from tmescope.fusion.cohort import read_spot_table, read_tile_table, standardise_by_spots
    from tmescope.fusion.evaluation import spot_graph
    from tmescope.fusion.graph import build_bipartite_graph
    from tmescope.fusion.train import GraphSample
    from tmescope.io.slide_sample import HE_ONLY
    from tmescope.jobs.train import sample_platform

    check_model_fits_store(model, store.fingerprint, where=str(store.path))
    try:  # one sample's attributes, not a listing of the cohort (this runs once per sample)
        record = store.sample_record(sample)
    except SampleNotFoundError:
        record = None  # read_spot_table says which samples there are
    if record is not None and record.meta.extra.get("platform") == HE_ONLY:
        return _predict_slide_tiles(store, model, sample)
    spots = read_spot_table(store, sample, counts=bool(record and record.has_counts))
    coords_um = spots.coords_um
    graph = spot_graph(coords_um, platform=sample_platform(store, sample))
    (x,) = standardise_by_spots(spots.embeddings)  # as in training
    edges = graph.edge_index
    names, coords, rows = spots.barcodes, spots.coords_px, spots.rows
    kinds = np.full(spots.n, "spot", dtype=object)
    if grid:
        tiles = read_tile_table(store, sample)
        x, tile_x = standardise_by_spots(spots.embeddings, tiles.embeddings)
        tile_um = tiles.coords_px.astype(np.float64) * spots.mpp
        bridge = build_bipartite_graph(coords_um, tile_um, k=min(GRID_NEIGHBOURS, spots.n))
        x = np.concatenate([x, tile_x])
        edges = np.concatenate([edges, bridge.edge_index], axis=1)
        names = np.concatenate([names, tiles.names])
        coords = np.concatenate([coords, tiles.coords_px])
        rows = np.concatenate([rows, tiles.rows])
        kinds = np.concatenate([kinds, np.full(tiles.n, "tile", dtype=object)])
    is_spot = kinds == "spot"
    output = model.ensemble.predict(
        GraphSample(sample_id=sample, x=x, edge_index=edges, target_mask=is_spot)
    )
    spec = model.spec
    g, n = spec.n_genes, len(names)
    measured = None
    if g and spots.counts is not None:
        measured = np.full((n, g), np.nan, dtype=np.float32)
        measured[: spots.n] = spec.compute(spots)[:, :g]
    return _sample_prediction(
        model, sample, mpp=spots.mpp, names=names, kinds=kinds, rows=rows, coords=coords,
        output=output, measured=measured,
    )  # fmt: skip


def _sample_prediction(
    model: FusionModel,
    sample: str,
    *,
    mpp: float,
    names: np.ndarray,
    kinds: np.ndarray,
    rows: np.ndarray,
    coords: np.ndarray,
    output: Any,
    measured: np.ndarray | None,
) -> SamplePrediction:
    spec = model.spec
    g = spec.n_genes
    return SamplePrediction(
        sample_id=sample,
        model_id=model.model_id,
        mpp=mpp,
        names=np.asarray(names).astype(str),
        kinds=kinds.astype(str),
        store_rows=np.asarray(rows, dtype=np.int64),
        coords_px=np.asarray(coords, dtype=np.float32),
        genes=tuple(spec.genes) if g else (),
        state_names=tuple(spec.state_names),
        expression=output.mean[:, :g].astype(np.float32),
        expression_std=output.std[:, :g].astype(np.float32),
        states=output.mean[:, g:].astype(np.float32),
        states_std=output.std[:, g:].astype(np.float32),
        measured=measured,
        fused=output.fused.astype(np.float32),
        attention=tuple(
            (
                np.asarray(layer.edge_index, dtype=np.int64),
                np.asarray(layer.alpha, dtype=np.float32).mean(axis=1),
            )
            for layer in output.attention
        ),
    )


def _predict_slide_tiles(store: CohortStore, model: FusionModel, sample: str) -> SamplePrediction:
    """An H&E-only slide's tiles, predicted on the graph of their 6 nearest tiles (they stand
    where spots would: a lattice of patches over the tissue), standardised by themselves as
    spots are. Nothing is measured, so there is no ``measured``."""
    from tmescope.fusion.cohort import read_tile_table, standardise_by_spots
    from tmescope.fusion.graph import build_knn_graph
    from tmescope.fusion.train import GraphSample

    tiles = read_tile_table(store, sample)
    mpp = float(store.sample_record(sample).meta.mpp)
    graph = build_knn_graph(tiles.coords_px.astype(np.float64) * mpp, k=min(6, max(1, tiles.n - 1)))
    (x,) = standardise_by_spots(tiles.embeddings)
    output = model.ensemble.predict(
        GraphSample(
            sample_id=sample, x=x, edge_index=graph.edge_index,
            target_mask=np.zeros(tiles.n, dtype=bool),
        )
    )  # fmt: skip
    return _sample_prediction(
        model, sample, mpp=mpp, names=tiles.names, kinds=np.full(tiles.n, "tile", dtype=object),
        rows=tiles.rows, coords=tiles.coords_px, output=output, measured=None,
    )  # fmt: skip


def predict_sample(
    store: Path | str,
    model_dir: Path | str,
    *,
    sample: str,
    out: Path | str,
    grid: bool = False,
    device: str = "auto",
) -> Path:
    """Predict ``sample`` of ``store`` with the model in ``model_dir``; write ``out`` (.h5ad).

    With ``grid``, the sample's dense tiles (from ``tmescope embed --grid``) are predicted too,
    each from its own embedding and the spots around it, giving a map between the spots.
    """
    from tmescope.fusion.model_dir import load_model
    from tmescope.jobs.train import device_name
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="r")
    model = load_model(model_dir, device=device_name(device))
    prediction = predict_rows(opened, model, sample, grid=grid)
    adata = _as_anndata(model, prediction, grid=grid)
    adata.uns["spatial"] = _spatial_uns(opened, sample)
    return _write_h5ad(adata, Path(out))


def cached_model(model_dir: Path | str, *, device: str = "auto") -> FusionModel:
    """``model_dir``'s model, loaded once per process for every sample a loop or a Dask worker
    is given (a model written again into the same folder is loaded again)."""
    path = Path(model_dir)
    try:
        stamp = (path / "model.json").stat().st_mtime
    except OSError:
        stamp = 0.0  # load_model says what is missing
    return _loaded(str(path), device, stamp)


@functools.lru_cache(maxsize=2)
def _loaded(model_dir: str, device: str, stamp: float) -> FusionModel:
    from tmescope.fusion.model_dir import load_model
    from tmescope.jobs.train import device_name

    return load_model(model_dir, device=device_name(device))


def check_model_fits_store(model: FusionModel, fingerprint: Any, *, where: str) -> None:
    """A :class:`ModelMismatchError` unless the model was trained on this encoder's embeddings."""
    from tmescope.store.fingerprint import describe_fingerprint, field_differences

    differences = field_differences(model.fingerprint, fingerprint)
    if differences:
        raise ModelMismatchError(
            f"the model in {model.path} was trained on embeddings of "
            f"{describe_fingerprint(model.fingerprint)} but {where} holds "
            f"{describe_fingerprint(fingerprint)} ({'; '.join(differences)}); train a model on "
            "this store with `tmescope train`"
        )


def _as_anndata(model: FusionModel, prediction: SamplePrediction, *, grid: bool) -> ad.AnnData:
    import anndata as ad
    import pandas as pd

    p = prediction
    obs = pd.DataFrame(
        {"kind": pd.Categorical(p.kinds, categories=["spot", "tile"]), "sample_id": p.sample_id},
        index=pd.Index(p.names, name="barcode"),
    )
    has_genes = bool(p.genes)
    adata = ad.AnnData(
        X=p.expression if has_genes else p.states,
        obs=obs,
        var=pd.DataFrame(index=pd.Index(list(p.genes or p.state_names), name="gene")),
    )
    adata.layers["std"] = p.expression_std if has_genes else p.states_std
    if p.measured is not None:
        adata.layers["measured"] = p.measured
    adata.obsm["spatial"] = p.coords_px.astype(np.float64)
    if p.state_names:
        columns = list(p.state_names)
        adata.obsm["tme_states"] = pd.DataFrame(p.states, index=obs.index, columns=columns)
        adata.obsm["tme_states_std"] = pd.DataFrame(p.states_std, index=obs.index, columns=columns)
        for j, name in enumerate(columns):
            adata.obs[f"state_{name}"] = p.states[:, j]
    adata.obsm["fused"] = p.fused
    for layer, (edge_index, weight) in enumerate(p.attention, start=1):
        key = "attention" if layer == len(p.attention) else f"attention_layer{layer}"
        adata.obsp[key] = _attention_matrix(edge_index, weight, p.n)
    adata.uns["tmescope"] = {
        "model_id": model.model_id,
        "model_dir": str(model.path),
        "sample_id": p.sample_id,
        "grid": grid,
        "target": model.spec.kind,
        "state_source": model.spec.state_source,
        "n_members": len(model.ensemble.members),
        "attention": "obsp: row = node attending, column = neighbour, mean over heads",
    }
    return adata


def _attention_matrix(edge_index: np.ndarray, weight: np.ndarray, n: int) -> Any:
    """``(n, n)`` CSR: entry [target, source] is the mean attention over heads."""
    import scipy.sparse as sp

    source, target = edge_index
    return sp.csr_matrix((weight, (target, source)), shape=(n, n))


def _spatial_uns(store: Any, sample: str) -> dict[str, Any]:
    """Scalefactors and the lowres image from the sample's Space Ranger output, when still there;
    for an H&E-only slide, a thumbnail of the slide standing in for the lowres image."""
    from tmescope.io import read_visium
    from tmescope.io.input_kind import input_kind
    from tmescope.io.reopen import recorded_bin_size
    from tmescope.io.slide_sample import HE_ONLY

    meta = store.sample_record(sample).meta
    if meta.extra.get("platform") == HE_ONLY:
        return {sample: _slide_spatial(meta)}
    if input_kind(meta.source_path) != "spaceranger":
        # An AnnData or SpatialData beside its image: a thumbnail of that image, as for a slide.
        spatial = _slide_spatial(meta)
        if spatial["scalefactors"] and meta.extra.get("spot_diameter_um"):
            diameter_px = float(meta.extra["spot_diameter_um"]) / float(meta.mpp)
            spatial["scalefactors"]["spot_diameter_fullres"] = diameter_px
        return {sample: spatial}
    try:
        # Only the small Space Ranger images are wanted here: warnings about their coarseness
        # for embedding (given when the sample was embedded) would only confuse.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TmescopeWarning)
            # At the bin size it was embedded at: its scalefactors' spot diameter is that size's.
            bin_size_um = recorded_bin_size(meta.extra)
            with read_visium(meta.source_path, bin_size_um=bin_size_um) as source:
                spatial = source.to_anndata(library_id=sample).uns["spatial"][sample]
    except TmescopeError as error:
        warnings.warn(
            f"the Space Ranger output of {sample} ({meta.source_path}) cannot be read ({error}); "
            "the predictions are written without its image",
            TmescopeWarning,
            stacklevel=3,
        )
        return {sample: {"images": {}, "scalefactors": {}, "metadata": {}}}
    images = {k: v for k, v in spatial["images"].items() if k == "lowres"}
    return {sample: {**spatial, "images": images}}


def _slide_spatial(meta: Any) -> dict[str, Any]:
    """``uns["spatial"][sample]`` of an H&E-only slide: its thumbnail as the lowres image with
    the scale factor that maps full-resolution pixels onto it, as squidpy expects."""
    from tmescope.io import open_slide

    try:
        with open_slide(meta.extra.get("image") or meta.source_path) as slide:
            thumbnail = slide.thumbnail(SLIDE_LOWRES_PX)
            scale = thumbnail.shape[1] / slide.width
    except (TmescopeError, OSError) as error:
        warnings.warn(
            f"the slide {meta.source_path} cannot be read ({error}); the predictions are written "
            "without its image",
            TmescopeWarning,
            stacklevel=4,
        )
        return {"images": {}, "scalefactors": {}, "metadata": {}}
    return {
        "images": {"lowres": thumbnail},
        "scalefactors": {"tissue_lowres_scalef": float(scale), "spot_diameter_fullres": 0.0},
        "metadata": {"source_image_path": str(meta.extra.get("image") or meta.source_path)},
    }


def _write_h5ad(adata: ad.AnnData, out: Path) -> Path:
    """Write through a temporary file and rename: ``out`` is whole or absent, never partial."""
    write_atomically(out, adata.write_h5ad)
    return out
