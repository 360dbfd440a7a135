"""``tmescope serve``: the local web viewer of a cohort store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def serve(
    store: Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")],
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", help="A model trained on this store: predicted maps, attention."),
    ] = None,
    host: Annotated[
        str,
        typer.Option("--host", help="Interface to listen on; other than loopback only if trusted."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8765,
    device: Annotated[
        str, typer.Option("--device", help="Where the model predicts: cpu, cuda or cuda:N.")
    ] = "cpu",
) -> None:
    """Browse the slides with measured and predicted maps, attention and similar regions."""
    from tmescope.workflows import serve as serve_viewer

    console = Console(stderr=True, highlight=False)
    serve_viewer(
        store, model_dir, host=host, port=port, device=device,
        on_ready=lambda url: console.print(f"tmescope viewer at {url} (Ctrl-C to stop)"),
    )  # fmt: skip
