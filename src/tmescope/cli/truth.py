"""Cell-level truth: ``tmescope pseudospots`` (a Visium-like sample from a section's cells) and
``tmescope evaluate`` (a sample's maps scored against its cells)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tmescope.cli.analysis import _MODEL, _STORE
from tmescope.errors import InvalidParameterError


def pseudospots(
    cells: Annotated[
        Path,
        typer.Argument(
            help="The section's cells: an .h5ad of cells × genes counts with obsm['spatial'] "
            "(the H&E's full-resolution px) and optionally obs['cell_type'] (a Xenium or CosMx "
            "table once registered to the H&E, Visium HD 2 µm bins, or synth's cells.h5ad), or "
            "a SpatialData zarr holding the cells' table and the H&E (spatialdata-io's Xenium)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="The pseudo-spot AnnData (.h5ad).")],
    mpp: Annotated[
        float | None,
        typer.Option("--mpp", help="µm per pixel of the positions (default: the image's)."),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image",
            help="The section's full-resolution H&E: the spots are checked against it and "
            "recorded with it (embed reads it from there).",
        ),
    ] = None,
    diameter: Annotated[float, typer.Option("--diameter", help="Spot diameter in µm.")] = 55.0,
    pitch: Annotated[
        float, typer.Option("--pitch", help="Centre-to-centre µm on the hexagonal lattice.")
    ] = 100.0,
    origin: Annotated[
        str | None,
        typer.Option("--origin", help="x,y (px) of the lattice's first spot (default: corner)."),
    ] = None,
    positions: Annotated[
        Path | None,
        typer.Option(
            "--positions",
            help="A CSV of spot centres (x, y in px, optional barcode) instead of a lattice.",
        ),
    ] = None,
    sample_id: Annotated[
        str | None, typer.Option("--sample-id", help="Library name in uns['spatial'].")
    ] = None,
    table: Annotated[
        str | None,
        typer.Option("--table", help="The table of cells of a SpatialData holding several."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Sum a section's cells into Visium-like 55 µm spots on a 100 µm lattice (the cells stay
    beside them as truth): map from them, then score with `tmescope evaluate`."""
    from tmescope.workflows import PseudospotSettings, pseudospots_from_file

    settings = PseudospotSettings(
        diameter_um=diameter, pitch_um=pitch, origin=_xy(origin) if origin else None
    )
    summary = pseudospots_from_file(
        cells, out=out, mpp=mpp, image=image, settings=settings, positions=positions,
        sample_id=sample_id, table_name=table,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(
            f"{out}: {summary['spots']} pseudo-spots of {summary['diameter_um']:g} µm holding "
            f"{summary['n_cells_in_spots']:,} of {summary['n_cells']:,} cells, "
            f"{summary['genes']} genes"
        )


def evaluate(
    store: _STORE,
    model_dir: _MODEL,
    sample: Annotated[str, typer.Option("--sample", help="The sample whose maps are scored.")],
    cells: Annotated[
        Path,
        typer.Option(
            "--cells",
            help="The same section's cells: .h5ad (obsm['spatial'], obs['cell_type'] or counts "
            "to transfer types from the model's reference), .csv/.parquet (x, y, cell_type) or "
            "a SpatialData zarr (its table of cells beside the H&E the sample was embedded from).",
        ),
    ],
    resolution: Annotated[
        float, typer.Option("--resolution", help="Sub-spot bins of this many µm (train's).")
    ] = 16.0,
    radius: Annotated[float, typer.Option("--radius", help="Pair radius in µm.")] = 30.0,
    cell_type_key: Annotated[
        str, typer.Option("--cell-type-key", help="The column of the cells' types.")
    ] = "cell_type",
    table: Annotated[
        str | None,
        typer.Option("--table", help="The table of cells of a SpatialData holding several."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Score a sample's sub-spot maps against the cells of the same section (mean Pearson of
    the maps per bin, pair co-location error), beside the oracle spot map and measured spots."""
    from tmescope.workflows import EvaluateSettings, evaluate_sample

    scores = evaluate_sample(
        store, model_dir, sample=sample, cells=cells, cell_type_key=cell_type_key,
        cells_table=table,
        settings=EvaluateSettings(resolution_um=resolution, radius_um=radius),
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(scores, indent=2))
        return
    _print_scores(scores)


def _print_scores(scores: dict[str, Any]) -> None:
    table = Table(title=f"{scores['sample']}: {scores['bins']:,} bins of {scores['bin_um']:g} µm")
    for column in ("map", "mean Pearson", f"pair error at {scores['radius_um']:g} µm"):
        table.add_column(column)
    maps, pairs = scores["maps"], scores["pairs"]
    for name in ("model", "image_only", "oracle_spot", "measured_painted", "measured_interpolated"):
        table.add_row(name, f"{maps[name]:.3f}", f"{pairs[f'log_ratio_error_{name}']:.3f}")
    console = Console()
    console.print(table)
    console.print(
        f"cells: {scores['cells']['n']:,}, {scores['cells']['in_bins']:,} bins hold cells; "
        f"types from {scores['cells']['cell_type_from']}"
    )


def _xy(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise InvalidParameterError(f"--origin must be x,y in pixels, got {text!r}") from exc
    return x, y
