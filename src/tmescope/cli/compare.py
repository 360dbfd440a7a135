"""``tmescope compare``: what differs between groups of tumours, patients as the units."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tmescope.cli.analysis import _MODEL, _SCHEDULER, _STORE, _pair

if TYPE_CHECKING:
    from tmescope.workflows import CompareReport


def compare(
    store: _STORE,
    model_dir: _MODEL,
    by: Annotated[
        str,
        typer.Option("--by", help="The metadata column whose groups are compared (e.g. group)."),
    ],
    subject: Annotated[
        str,
        typer.Option(
            "--subject",
            help="The column naming each section's patient: the unit of replication (sections "
            "of one patient are averaged). 'sample': each section is its own patient.",
        ),
    ] = "patient",
    samplesheet: Annotated[
        Path | None,
        typer.Option(
            "--samplesheet",
            help="A sample sheet whose columns replace the store's metadata (compare another "
            "grouping without re-embedding); only its samples are compared.",
        ),
    ] = None,
    resolution: Annotated[
        float, typer.Option("--resolution", help="Sub-spot bins of this many µm (train's).")
    ] = 16.0,
    pair: Annotated[
        list[str] | None,
        typer.Option("--pair", help="A pair to plot patient by patient, as A,B (repeatable)."),
    ] = None,
    radius: Annotated[float, typer.Option("--radius", help="Contact radius in µm.")] = 30.0,
    t_cells: Annotated[
        str | None,
        typer.Option("--t-cells", help="The T-cell population of the immune phenotype."),
    ] = None,
    tumour: Annotated[
        str | None,
        typer.Option("--tumour", help="The tumour population of the immune phenotype."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the tables (CSV), comparison.json and figures."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    scheduler: _SCHEDULER = None,
) -> None:
    """Which pairs of TME populations meet more in one group of tumours than in another (and
    which populations are more abundant), with patients as the units; each section's immune
    phenotype (inflamed, excluded, desert) from its sub-spot maps."""
    from tmescope.cli.progress import sample_progress
    from tmescope.workflows import CompareSettings, run_compare

    settings = CompareSettings(
        by=by, subject=subject, resolution_um=resolution, radius_um=radius,
        pairs=tuple(_pair(p) for p in pair or []), t_cell=t_cells, tumour=tumour, seed=seed,
    )  # fmt: skip
    report = run_compare(
        store, model_dir, settings=settings, samplesheet=samplesheet, out=out,
        scheduler=scheduler, progress=sample_progress("compare"),
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, allow_nan=False))
        return
    _print(report)


def _print(report: CompareReport) -> None:
    c = report.comparison
    console = Console()
    table = Table(title=f"What differs between groups of {c.by} ({c.subject}s as units)")
    for name in ("pair", "groups", "effect [95 %]", "higher in", "p", "p perm", "q", "naive p"):
        table.add_column(name)
    for row in c.pairs[:15]:
        table.add_row(
            f"{row['a']} · {row['b']}", " vs ".join(row["groups"]),
            f"{row['effect']:+.2f} [{_f(row['low'])}, {_f(row['high'])}]",
            str(row["higher_in"] or "–"), _f(row["p"]), _f(row["p_perm"]), _f(row["q"]),
            _f(row["naive_p"]),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"{len(c.significant())} of {len(c.pairs)} pair(s) at q < 0.05. 'naive p' treats every "
        "bin as independent (pseudo-replication): shown for contrast, never used."
    )
    calls: dict[str, dict[str, int]] = {}
    for s in c.samples:
        group = calls.setdefault(str(s["group"]), {})
        group[str(s["phenotype"])] = group.get(str(s["phenotype"]), 0) + 1
    for name, counts in sorted(calls.items()):
        listed = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        console.print(f"immune phenotypes in {name}: {listed}")
    for path in report.figures:
        typer.echo(f"wrote {path}")


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"
