"""``tmescope info``: what a Space Ranger run holds and at what resolution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def info(
    sample: Annotated[
        Path,
        typer.Argument(
            help="Space Ranger outs/ folder, its parent, or a folder with spatial/ and the matrix."
        ),
    ],
    image: Annotated[
        Path | None,
        typer.Option(
            "--image",
            help="Full-resolution H&E given to Space Ranger (TIFF, SVS, OME-TIFF, NDPI, PNG/JPEG).",
        ),
    ] = None,
    bin_size: Annotated[
        int | None,
        typer.Option("--bin-size", help="Visium HD bin size in µm (default 8 when present)."),
    ] = None,
    mpp: Annotated[
        float | None,
        typer.Option(
            "--mpp",
            help="µm per full-resolution pixel, overriding the image metadata and spot pitch.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Summarise one sample: spots, genes, µm/px (and where it came from), the image read."""
    from tmescope.workflows import describe_sample

    summary = describe_sample(sample, image=image, bin_size_um=bin_size, mpp=mpp)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    Console().print(summary_table(summary))


def summary_table(summary: dict[str, Any]) -> Table:
    """A two-column table of a sample summary."""
    image = summary["image"]
    table = Table(title=f"sample {summary['sample_id']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("platform", summary["platform"]),
        ("source", summary["source"]),
        ("spots (with counts)", f"{summary['n_spots']:,}"),
        ("spots in tissue", f"{summary['n_in_tissue']:,}"),
        ("genes", f"{summary['n_genes']:,}"),
        ("µm / full-res px", f"{summary['mpp']:.4f} ({summary['mpp_source']})"),
        ("spot diameter", f"{summary['spot_diameter_um']:g} µm"),
        ("image", f"{image['path']} ({image['kind']}, {image['backend']})"),
        ("image size", f"{image['width']:,} × {image['height']:,} px, {image['levels']} level(s)"),
        ("image µm / px", f"{image['mpp']:.4f}"),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    return table
