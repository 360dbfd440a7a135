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

import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.errors import ModelMismatchError, TmescopeError, TmescopeWarning

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.fusion.cohort import SpotTable
    from tmescope.fusion.model_dir import FusionModel

log = logging.getLogger(__name__)

GRID_NEIGHBOURS = 6  # spots each grid tile listens to: its ring of Visium neighbours


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
    from tmescope.fusion.cohort import read_spot_table, read_tile_table, standardise_by_spots
    from tmescope.fusion.evaluation import spot_graph
    from tmescope.fusion.graph import build_bipartite_graph
    from tmescope.fusion.model_dir import load_model
    from tmescope.fusion.train import GraphSample
    from tmescope.store import CohortStore
    from tmescope.train_job import device_name, sample_platform

    opened = CohortStore.open(store, mode="r")
    model = load_model(model_dir, device=device_name(device))
    check_model_fits_store(model, opened.fingerprint, where=str(opened.path))
    record = opened.sample_record(sample) if sample in opened.sample_ids() else None
    spots = read_spot_table(opened, sample, counts=bool(record and record.has_counts))
    coords_um = spots.coords_um
    graph = spot_graph(coords_um, platform=sample_platform(opened, sample))
    (x,) = standardise_by_spots(spots.embeddings)  # as in training
    edges = graph.edge_index
    names, coords, kinds = spots.barcodes, spots.coords_px, ["spot"] * spots.n
    if grid:
        tiles = read_tile_table(opened, sample)
        x, tile_x = standardise_by_spots(spots.embeddings, tiles.embeddings)
        tile_um = tiles.coords_px.astype(np.float64) * spots.mpp
        k = min(GRID_NEIGHBOURS, spots.n)
        bridge = build_bipartite_graph(coords_um, tile_um, k=k)
        x = np.concatenate([x, tile_x])
        edges = np.concatenate([edges, bridge.edge_index], axis=1)
        names = np.concatenate([names, tiles.names])
        coords = np.concatenate([coords, tiles.coords_px])
        kinds += ["tile"] * tiles.n
    is_spot = np.asarray(kinds) == "spot"
    output = model.ensemble.predict(
        GraphSample(sample_id=sample, x=x, edge_index=edges, target_mask=is_spot)
    )
    adata = _as_anndata(model, spots, output, names=names, coords=coords, kinds=kinds, grid=grid)
    adata.uns["spatial"] = _spatial_uns(opened, sample)
    return _write_h5ad(adata, Path(out))


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


def _as_anndata(
    model: FusionModel,
    spots: SpotTable,
    output: Any,
    *,
    names: np.ndarray,
    coords: np.ndarray,
    kinds: list[str],
    grid: bool,
) -> ad.AnnData:
    import anndata as ad
    import pandas as pd

    spec = model.spec
    g = spec.n_genes
    n = len(names)
    obs = pd.DataFrame(
        {"kind": pd.Categorical(kinds, categories=["spot", "tile"]), "sample_id": spots.sample_id},
        index=pd.Index(names.astype(str), name="barcode"),
    )
    genes = list(spec.genes) if g else list(spec.state_names)
    mean, std = output.mean, output.std
    adata = ad.AnnData(
        X=(mean[:, :g] if g else mean).astype(np.float32),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(genes, name="gene")),
    )
    adata.layers["std"] = (std[:, :g] if g else std).astype(np.float32)
    if g and spots.counts is not None:
        measured = np.full((n, g), np.nan, dtype=np.float32)
        measured[: spots.n] = spec.compute(spots)[:, :g]
        adata.layers["measured"] = measured
    adata.obsm["spatial"] = coords.astype(np.float64)
    if spec.state_names:
        columns = list(spec.state_names)
        adata.obsm["tme_states"] = pd.DataFrame(mean[:, g:], index=obs.index, columns=columns)
        adata.obsm["tme_states_std"] = pd.DataFrame(std[:, g:], index=obs.index, columns=columns)
        for j, name in enumerate(columns):
            adata.obs[f"state_{name}"] = mean[:, g + j].astype(np.float32)
    adata.obsm["fused"] = output.fused.astype(np.float32)
    for layer, attention in enumerate(output.attention, start=1):
        key = "attention" if layer == len(output.attention) else f"attention_layer{layer}"
        adata.obsp[key] = _attention_matrix(attention, n)
    adata.uns["tmescope"] = {
        "model_id": model.model_id,
        "model_dir": str(model.path),
        "sample_id": spots.sample_id,
        "grid": grid,
        "target": spec.kind,
        "state_source": spec.state_source,
        "n_members": len(model.ensemble.members),
        "attention": "obsp: row = node attending, column = neighbour, mean over heads",
    }
    return adata


def _attention_matrix(attention: Any, n: int) -> Any:
    """``(n, n)`` CSR: entry [target, source] is the mean attention over heads."""
    import scipy.sparse as sp

    source, target = attention.edge_index
    weight = np.asarray(attention.alpha, dtype=np.float32).mean(axis=1)
    return sp.csr_matrix((weight, (target, source)), shape=(n, n))


def _spatial_uns(store: Any, sample: str) -> dict[str, Any]:
    """Scalefactors and the lowres image from the sample's Space Ranger output, when still there."""
    from tmescope.io import read_visium

    meta = store.sample_record(sample).meta
    try:
        # Only the small Space Ranger images are wanted here: warnings about their coarseness
        # for embedding (given when the sample was embedded) would only confuse.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TmescopeWarning)
            with read_visium(meta.source_path) as source:
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


def _write_h5ad(adata: ad.AnnData, out: Path) -> Path:
    """Write through a temporary file and rename: ``out`` is whole or absent, never partial."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        adata.write_h5ad(partial)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
