"""``tmescope index`` and ``tmescope query``: similar tissue regions across the cohort."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

_SPACE = typer.Option(
    "--space", help="raw (the encoder's embeddings) or fused (a trained model's; needs --model)."
)
_MODEL = typer.Option("--model", help="With --space fused: the model folder (tmescope train).")


def index(
    store: Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="auto (exact while small, IVF beyond; refreshes incrementally), flat, ivf or hnsw.",
        ),
    ] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the index description as JSON.")
    ] = False,
    space: Annotated[str, _SPACE] = "raw",
    model_dir: Annotated[Path | None, _MODEL] = None,
) -> None:
    """Build or refresh the FAISS index over every complete sample of the store."""
    from tmescope.workflows import build_cohort_index

    info = build_cohort_index(store, kind=kind, space=space, model_dir=model_dir)
    if as_json:
        typer.echo(json.dumps(json.loads(json.dumps(asdict(info), default=str)), indent=2))
        return
    params = ", ".join(f"{k}={v}" for k, v in info.params.items())
    typer.echo(
        f"{info.space} index of {store}: {info.kind} over {info.n:,} rows × {info.dim} from "
        f"{len(info.samples)} sample(s) ({params})"
    )


def query(
    store: Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")],
    spot: Annotated[
        str | None, typer.Option("--spot", help="SAMPLE:BARCODE — regions like this spot.")
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            "--region", help="SAMPLE:X,Y,RADIUS_UM — like the spots in this disc (full-res px, µm)."
        ),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image", help="PATCH.png — embedded with the store's own encoder, then searched."
        ),
    ] = None,
    sample: Annotated[
        str | None, typer.Option("--sample", help="SAMPLE — every spot's best matches (a table).")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Hits per query.")] = 10,
    exclude_sample: Annotated[
        bool, typer.Option("--exclude-sample", help="Leave out hits from the query's own sample.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of hits.")] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="With --image: the encoder's weights file, if not in the Hugging Face cache.",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="With --image: auto, cpu, cuda or cuda:N.")
    ] = "auto",
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Also write a self-contained gallery (query + hits as thumbnails)."
        ),
    ] = None,
    space: Annotated[str, _SPACE] = "raw",
    model_dir: Annotated[Path | None, _MODEL] = None,
) -> None:
    """Find the regions of the cohort most similar to a spot, a region, an image or a sample."""
    from tmescope.workflows import query_store, write_query_gallery

    hits = query_store(
        store, spot=spot, region=region, image=image, sample=sample, k=k,
        exclude_sample=exclude_sample, weights=weights, device=device, space=space,
        model_dir=model_dir,
    )  # fmt: skip
    if html_out is not None:
        page = write_query_gallery(store, hits, html_out, spot=spot, region=region, image=image)
        Console(stderr=True).print(f"gallery: {page}")
    if as_json:
        typer.echo(hits.to_json(orient="records", indent=2))
        return
    table = Table(title=f"most similar in {store}", title_justify="left")
    widths = {"rank": 4, "sample_id": 9, "x": 6, "y": 6, "score": 5}
    for column in ("query", "rank", "sample_id", "barcode", "x", "y", "score"):
        numeric = column in ("rank", "x", "y", "score")
        table.add_column(
            column, no_wrap=True, justify="right" if numeric else "left",
            min_width=widths.get(column), max_width=20 if column == "query" else None,
        )  # fmt: skip
    for row in hits.itertuples(index=False):
        table.add_row(
            str(row.query), str(row.rank), row.sample_id, row.barcode, f"{row.x:.0f}",
            f"{row.y:.0f}", f"{row.score:.3f}",
        )  # fmt: skip
    Console().print(table)
