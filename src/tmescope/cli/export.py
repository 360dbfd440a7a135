"""``tmescope export``: a cohort store (and a model's maps) as SpatialData or QuPath GeoJSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    store: Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")],
    out: Annotated[
        Path, typer.Argument(help="What to write: OUT.zarr (SpatialData) or OUT.geojson.")
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="spatialdata or geojson (default: from OUT's suffix, .zarr or .geojson).",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="A tmescope train folder: adds its predictions, sub-spot populations and the "
            "store's niches (geojson needs it).",
        ),
    ] = None,
    sample: Annotated[
        str | None, typer.Option("--sample", help="Export this sample only (default: all).")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace OUT if it exists (only once the new export is whole)."
        ),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="One task per sample on Dask: local:N (a LocalCluster of N processes) or a "
            "scheduler address (tcp://host:8786). Default: in turn, in this process.",
        ),
    ] = None,
) -> None:
    """Export a store to SpatialData (napari-spatialdata, spatialdata-plot; sopa's embeddings
    layout) or to GeoJSON regions QuPath imports over the slide (docs/interop.md)."""
    from tmescope.cli.progress import sample_progress
    from tmescope.workflows import export_store

    summary = export_store(
        store, out, to=to, model_dir=model, sample=sample, overwrite=overwrite,
        scheduler=scheduler, progress=sample_progress("export"),
    )  # fmt: skip
    samples = ", ".join(summary.samples)
    if summary.format == "spatialdata":
        typer.echo(
            f"wrote {summary.path} (SpatialData): {len(summary.contents)} elements of {samples}"
        )
    else:
        typer.echo(f"wrote {summary.path} (GeoJSON) of {samples}:")
        for line in summary.contents:
            typer.echo(f"  {line}")
