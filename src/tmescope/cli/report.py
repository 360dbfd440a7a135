"""``tmescope report``: the HTML report of a cohort store (and its model): an index and a page
per sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    store: Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The index to write (REPORT.html); the samples' pages go in REPORT_files/.",
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="A tmescope train folder: adds predictions and scores."),
    ] = None,
    samples: Annotated[
        list[str] | None,
        typer.Option("--samples", help="Samples to show (repeat or comma-separate); default all."),
    ] = None,
    genes: Annotated[
        list[str] | None,
        typer.Option(
            "--genes", help="Genes to map (repeat or comma-separate); default the best 4."
        ),
    ] = None,
    analysis: Annotated[
        bool,
        typer.Option(
            "--analysis/--no-analysis",
            help="With --model: add the cohort's niches and interactions (about a minute).",
        ),
    ] = True,
) -> None:
    """Write a report a biologist can open: H&E, measured and predicted maps, similar regions,
    niches and where TME populations meet; an index page and a page per sample."""
    from rich.console import Console

    from tmescope.workflows import analysis_sections, write_report

    console = Console(stderr=True, highlight=False)

    def progress(message: str) -> None:
        console.print(f"[dim]{message}[/dim]")

    sections = (
        analysis_sections(store, model, progress=progress) if model is not None and analysis else []
    )
    path = write_report(
        store, out, model_dir=model, samples=_split(samples), genes=_split(genes),
        sections=sections, progress=progress,
    )  # fmt: skip
    typer.echo(f"wrote {path}: open it in a browser (keep {path.stem}_files/ beside it)")


def _split(values: list[str] | None) -> list[str] | None:
    """``--genes A --genes B,C`` → ``[A, B, C]``."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]
