"""``tmescope encoders``: the encoder registry, and whether each model's weights are at hand."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def encoders(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the encoders: dimension, input size, µm/px, pooling, licence, weights found."""
    from tmescope.workflows import describe_encoders

    rows = describe_encoders()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="encoders", title_justify="left")
    cells = []
    for row in rows:
        found = row["weights_found"]
        weights = "not needed" if found is None else ("found" if found else "missing")
        if row["gated"] and not found:
            weights = "gated"
        cells.append(
            (row["name"], str(row["dim"]), f"{row['input_px']}px {row['mpp']:g}µm",
             row["pooling"], row["licence"], weights)
        )  # fmt: skip
    for i, column in enumerate(("name", "dim", "input", "pooling", "licence", "weights")):
        if column == "licence":  # long sentences: one ellipsised line here, in full with --json
            table.add_column(column, no_wrap=True, max_width=12)
        else:
            table.add_column(column, no_wrap=True, min_width=max(len(c[i]) for c in cells))
    for cell in cells:
        table.add_row(*cell)
    Console().print(table)
