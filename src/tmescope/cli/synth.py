"""``tmescope synth``: write a synthetic cohort in Space Ranger layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def synth(
    out: Annotated[
        Path, typer.Argument(help="Folder to write the cohort into (one sub-folder per sample).")
    ],
    samples: Annotated[int, typer.Option("--samples", "-n", min=1, help="Number of samples.")] = 4,
    spots: Annotated[
        int, typer.Option("--spots", min=10, help="Spots under tissue per sample.")
    ] = 1000,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed writes the same bytes.")
    ] = 0,
    phenotypes: Annotated[
        str,
        typer.Option(
            "--phenotypes",
            help="Immune phenotypes to plant, given to the patients in turn (both sections of a "
            "patient share one), e.g. inflamed,excluded or inflamed,excluded,desert (a name may "
            "repeat, as a weight); the sheet gains phenotype and group columns.",
        ),
    ] = "",
    sections: Annotated[
        int,
        typer.Option("--sections", min=1, help="Sections per patient (consecutive samples)."),
    ] = 2,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the sample folders as JSON.")
    ] = False,
) -> None:
    """Synthesise tumour sections (pyramidal H&E TIFF at 0.5 µm/px, counts, ground truth) and
    their sample sheet (OUT/samplesheet.csv, two sections per patient unless --sections),
    several samples at once as the thread budget allows (--threads 1: one at a time)."""
    from tmescope.workflows import cohort_samplesheet, synthesize_cohort

    console = Console(stderr=True)
    with console.status(
        f"writing {samples} synthetic sample(s) of {spots} spots to {out}"
    ) as status:

        def show(message: str) -> None:
            console.print(message, highlight=False)  # a line per sample, kept above the spinner
            status.update(f"writing {samples} synthetic sample(s) to {out}: {message}")

        paths = synthesize_cohort(
            out, n_samples=samples, n_spots=spots, seed=seed, progress=show,
            phenotypes=[n.strip() for n in phenotypes.split(",") if n.strip()],
            sections_per_patient=sections,
        )  # fmt: skip
    console.print(f"sample sheet: {cohort_samplesheet(out)}", highlight=False)
    if as_json:
        typer.echo(json.dumps([str(p) for p in paths], indent=2))
    else:
        for path in paths:
            typer.echo(str(path))
