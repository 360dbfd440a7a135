"""The ``tmescope`` command: a typer app whose sub-commands are thin wrappers over workflows.

Errors a user can cause (:class:`~tmescope.errors.TmescopeError`) become one ``error: …`` line on
stderr and exit code 2; warnings become ``warning: …`` lines.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from tmescope._version import __version__
from tmescope.cli import (
    analysis,
    compare,
    demo,
    embed,
    encoders,
    export,
    fusion,
    info,
    report,
    search,
    serve,
    store,
    synth,
    truth,
)
from tmescope.cpus import THREADS_ENV, configure_threads
from tmescope.errors import TmescopeError, TmescopeWarning

EXIT_BAD_INPUT = 2

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="tmescope",
    help="Tumour-microenvironment analysis of 10x Visium cohorts with pathology foundation models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("synth")(synth.synth)
app.command("info")(info.info)
app.command("encoders")(encoders.encoders)
app.command("embed")(embed.embed)
app.command("index")(search.index)
app.command("query")(search.query)
app.command("train")(fusion.train)
app.command("predict")(fusion.predict)
app.command("report")(report.report)
app.command("niches")(analysis.niches)
app.command("serve")(serve.serve)
app.command("interactions")(analysis.interactions)
app.command("compare")(compare.compare)
app.command("export")(export.export)
app.command("pseudospots")(truth.pseudospots)
app.command("evaluate")(truth.evaluate)
app.add_typer(store.app, name="store")
app.command("demo")(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tmescope {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress and show every library warning.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            metavar="N",
            help=f"Threads for torch, BLAS and patch readers (default: ${THREADS_ENV}, else "
            "$OMP_NUM_THREADS, else the cores this process may use: its affinity, cgroup quota "
            "and SLURM_CPUS_PER_TASK).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Tumour-microenvironment analysis of 10x Visium cohorts with pathology foundation models."""
    level = logging.INFO if verbose else logging.WARNING
    # The handler filters too: libraries such as distributed set their own loggers to INFO.
    handler = RichHandler(console=err_console, show_time=False, show_path=False, level=level)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    if not verbose:
        # Third-party deprecation chatter is not the user's business; ours always shows.
        warnings.filterwarnings("ignore")
    warnings.filterwarnings("always", category=TmescopeWarning)
    # Before any command loads torch: its OpenMP reads the thread count and wait policy once.
    configure_threads(threads)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        app()
    except TmescopeError as exc:
        err_console.print(
            f"[bold red]error:[/bold red] {_one_line(exc)}", markup=True, highlight=False
        )
        sys.exit(EXIT_BAD_INPUT)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
