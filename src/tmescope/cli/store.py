"""``tmescope store ls|info|rm|verify``: look after a cohort store."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Inspect, check and prune a cohort store.", no_args_is_help=True)

StorePath = Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _mpp(row: dict[str, Any]) -> str:
    """``0.5 µm/px (tiff:XResolution)``: the figure and where it came from."""
    if row.get("mpp") is None:
        return "µm/px unknown"
    source = f" ({row['mpp_source']})" if row.get("mpp_source") else ""
    return f"{row['mpp']:.4g} µm/px{source}"


def _metadata(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(row.get("metadata", {}).items())) or "–"


@app.command("ls")
def ls(store: StorePath, as_json: AsJson = False) -> None:
    """One line per sample: status, spots, tiles, chunks written, size, µm/px (and where it
    came from) and the sample sheet's metadata."""
    from tmescope.workflows import store_summary

    rows = [asdict(s) for s in store_summary(store)]
    if as_json:
        typer.echo(json.dumps(_jsonable(rows), indent=2))
        return
    table = Table(title=str(store), title_justify="left")
    columns = ("sample", "status", "spots", "tiles", "sub-spot bins", "dim", "chunks", "counts")
    for column in (*columns, "size"):
        table.add_column(column, no_wrap=True)
    # A second table, so that neither is cut short on an 80-column terminal.
    inputs = Table(title="µm per pixel and metadata", title_justify="left")
    inputs.add_column("sample", no_wrap=True)
    inputs.add_column("µm/px", no_wrap=True)
    inputs.add_column("from")
    inputs.add_column("metadata")
    for r in rows:
        bins = f"{r['n_bins']:,} × {r['bin_um']:g} µm" if r["bin_um"] else "none"
        table.add_row(
            r["sample_id"], r["status"], f"{r['n_spots']:,}", f"{r['n_tiles']:,}", bins,
            str(r["dim"]), f"{r['chunks_written']}/{r['n_chunks']}",
            "yes" if r["has_counts"] else "no", f"{r['nbytes'] / 2**20:.1f} MiB",
        )  # fmt: skip
        mpp = "–" if r["mpp"] is None else f"{r['mpp']:.4g}"
        inputs.add_row(r["sample_id"], mpp, r["mpp_source"] or "–", _metadata(r))
    console = Console()
    console.print(table)
    console.print(inputs)


@app.command("info")
def info(store: StorePath, as_json: AsJson = False) -> None:
    """The store's encoder fingerprint, schema version and samples (status, µm/px and where it
    came from, metadata)."""
    from tmescope.workflows import store_info

    data = _jsonable(asdict(store_info(store)))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console()
    console.print(f"[bold]store[/bold]    {data['path']} (schema {data['schema_version']})")
    console.print(f"[bold]created[/bold]  {data['created']} with {data['created_with']}")
    for key, value in data["fingerprint"].items():
        console.print(f"[bold]encoder[/bold]  {key}: {value}")
    complete = sum(s["status"] == "complete" for s in data["samples"])
    console.print(f"[bold]samples[/bold]  {complete} complete of {len(data['samples'])}")
    for s in data["samples"]:
        console.print(
            f"  {s['sample_id']}  {s['status']}  {_mpp(s)}  {_metadata(s)}",
            highlight=False,
        )


@app.command("rm")
def rm(
    store: StorePath,
    samples: Annotated[list[str], typer.Argument(help="Sample ids to remove.")],
    missing_ok: Annotated[
        bool,
        typer.Option("--missing-ok", help="Skip ids the store does not hold (a script run again)."),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Remove samples from the store (refused while another process writes them)."""
    from tmescope.workflows import remove_samples

    removed = remove_samples(store, samples, missing_ok=missing_ok)
    typer.echo(json.dumps(removed) if as_json else "\n".join(f"removed {s}" for s in removed))


@app.command("verify")
def verify(store: StorePath, as_json: AsJson = False) -> None:
    """Check every sample's shapes, status, fingerprint and chunks; exit 1 on problems."""
    from tmescope.workflows import verify_store

    problems = verify_store(store)
    if as_json:
        typer.echo(json.dumps({"store": str(store), "ok": not problems, "problems": problems}))
    elif problems:
        err = Console(stderr=True)
        for problem in problems:
            err.print(f"[red]problem:[/red] {problem}", highlight=False)
    else:
        typer.echo(f"{store}: ok")
    if problems:
        raise typer.Exit(1)
