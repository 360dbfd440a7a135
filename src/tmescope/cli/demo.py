"""``tmescope demo``: the main job on the embedded synthetic cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tmescope.cli.info import summary_table


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the demo's cohort and results.")
    ] = Path("demo_output"),
    samples: Annotated[int, typer.Option("--samples", min=1, help="Synthetic samples.")] = 4,
    spots: Annotated[
        int, typer.Option("--spots", min=10, help="Spots under tissue per sample.")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Synthesise a cohort, read every sample back with its full-resolution slide, summarise."""
    from tmescope.workflows import run_demo

    console = Console()
    with Console(stderr=True).status("synthesising and reading the demo cohort"):
        result = run_demo(out, n_samples=samples, n_spots=spots, seed=seed)
    for summary in result.samples:
        console.print(summary_table(summary))
    console.print(
        f"\n[bold]demo cohort:[/bold] {result.cohort_dir} ({len(result.samples)} samples)\n"
        f"next: tmescope info {result.cohort_dir}/{result.samples[0]['sample_id']} --json"
    )
