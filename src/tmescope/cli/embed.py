"""``tmescope embed``: spot (and grid) patches through a frozen encoder into a cohort store."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from tmescope.errors import InvalidParameterError


class PatchRateColumn(ProgressColumn):
    """Patches per second, once there is a rate to show."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} patches/s" if speed else "– patches/s", style="cyan")


class RichProgress:
    """A progress bar per sample: patches done, patches/s and time left."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def start(self, sample_id: str, total: int) -> None:
        self._task = self._progress.add_task(sample_id, total=total)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)


def progress_bar(console: Console, *, disable: bool = False) -> Progress:
    """A rich progress display: one bar per sample with patches/s and time left."""
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        PatchRateColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    return Progress(*columns, console=console, disable=disable)


def embed(
    store: Annotated[Path, typer.Option("--store", help="Cohort store (created when absent).")],
    encoder: Annotated[
        str, typer.Option("--encoder", help="Encoder name; see `tmescope encoders`.")
    ],
    samples: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Space Ranger folders (outs/, its parent, or spatial/ + matrix), AnnData .h5ad "
            "files of spots beside an --image, HEST-1k folders (with --sample-id) or SpatialData "
            "zarr stores. See docs/inputs.md."
        ),
    ] = None,
    samplesheet: Annotated[
        Path | None,
        typer.Option(
            "--samplesheet",
            help="A CSV naming the cohort, one row per section: sample, path (Space Ranger "
            "folder) or slide (H&E-only), image, mpp, bin_size_um; every other column (patient, "
            "group, …) is metadata kept in the store. Instead of folders, --slide, --image, "
            "--sample-id, --mpp and --bin-size. See docs/inputs.md.",
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights", help="Local weights (.safetensors, or a .pt/.pth/.bin state dict)."
        ),
    ] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            help="The full-resolution H&E of each sample (Space Ranger folder or AnnData); "
            "repeat once per sample, in order.",
        ),
    ] = None,
    slide: Annotated[
        list[Path] | None,
        typer.Option(
            "--slide",
            help="An H&E-only slide (SVS, TIFF, OME-TIFF, NDPI, …) without expression: tiles and "
            "sub-spot bins over all its tissue. Repeatable.",
        ),
    ] = None,
    sample_id: Annotated[
        list[str] | None,
        typer.Option(
            "--sample-id",
            help="Sample id of each --slide (default: its file name), or without --slide of each "
            "sample given (default: its folder or file name; a HEST-1k id); repeat once each.",
        ),
    ] = None,
    mpp: Annotated[
        float | None,
        typer.Option(
            "--mpp",
            help="µm per pixel of the --slide(s) or AnnData images, when their metadata does not "
            "say (or is wrong).",
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option("--table", help="The table of a SpatialData that holds several."),
    ] = None,
    spot_diameter: Annotated[
        float | None,
        typer.Option(
            "--spot-diameter",
            help="Diameter in µm of an AnnData's spots when its uns['spatial'] scalefactors do "
            "not say (default 55, Visium's).",
        ),
    ] = None,
    bin_size: Annotated[
        float | None,
        typer.Option(
            "--bin-size",
            help="Visium HD bin size in µm of the Space Ranger samples (default 8): 2, 8 or 16 "
            "as written, another multiple of 2 summed from the 2 µm bins. Kept in the store.",
        ),
    ] = None,
    grid: Annotated[
        float | None,
        typer.Option(
            "--grid", help="Also embed a dense grid of tiles over the tissue, this many µm apart."
        ),
    ] = None,
    subspot: Annotated[
        float,
        typer.Option(
            "--subspot",
            help="Sub-spot bins of this many µm: the encoder's patch tokens pooled over the "
            "tissue, under the spots and between them (0: none). Not finer than its tokens.",
        ),
    ] = 16.0,
    cover: Annotated[
        bool,
        typer.Option(
            "--cover",
            help="With --subspot: also cut cover patches (rows of kind 'cover') over tissue "
            "beyond every spot's patch, so that every tissue bin of the capture area has "
            "features. Without it, bins lie under the spots' (and grid tiles') patches.",
        ),
    ] = False,
    patch_um: Annotated[
        float | None,
        typer.Option(
            "--patch-um", help="Field of view in µm (default: input px × the encoder's µm/px)."
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Patches per batch.")] = 32,
    precision: Annotated[
        str, typer.Option("--precision", help="auto, fp32, bf16 or fp16 (autocast).")
    ] = "auto",
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="local:N for a LocalCluster of N processes, or a Dask scheduler address.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Re-embed samples already complete in the store.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary per sample.")
    ] = False,
) -> None:
    """Embed the tissue under every spot (and, with --grid, between spots), or all the tissue
    of an H&E-only --slide, into a Zarr store; a --samplesheet names a whole cohort."""
    from tmescope.workflows import (
        EmbedInput,
        EmbedSettings,
        SlideInput,
        embed_input,
        embed_samples,
        samplesheet_inputs,
    )

    samples, slides, images, ids = samples or [], slide or [], image or [], sample_id or []
    if samplesheet is not None:
        given = [
            name
            for name, used in (
                ("Space Ranger folders", samples), ("--slide", slides), ("--image", images),
                ("--sample-id", ids), ("--mpp", mpp is not None), ("--table", table is not None),
                ("--spot-diameter", spot_diameter is not None),
                ("--bin-size", bin_size is not None),
            )
            if used
        ]  # fmt: skip
        if given:
            named = " and ".join([", ".join(given[:-1]), given[-1]] if len(given) > 1 else given)
            raise InvalidParameterError(
                f"--samplesheet names the samples, so {named} cannot be given with it; put them "
                "in the sheet (columns path, slide, image, mpp, bin_size_um) or drop "
                "--samplesheet"
            )
    elif not samples and not slides:
        raise InvalidParameterError(
            "nothing to embed: give Space Ranger folders, H&E-only slides with --slide, or a "
            "--samplesheet"
        )
    elif bin_size is not None and not samples:
        raise InvalidParameterError(
            "--bin-size picks the bins of Visium HD Space Ranger runs, and only --slide was "
            "given; drop --bin-size"
        )
    if images and len(images) != len(samples):
        raise InvalidParameterError(
            f"{len(images)} --image for {len(samples)} samples; give one --image per sample, in "
            "the same order, or none"
        )
    if ids and slides and len(ids) != len(slides):
        raise InvalidParameterError(
            f"{len(ids)} --sample-id for {len(slides)} --slide; give one --sample-id per --slide, "
            "in the same order, or none (the file names are used)"
        )
    if ids and not slides and len(ids) != len(samples):
        raise InvalidParameterError(
            f"{len(ids)} --sample-id for {len(samples)} samples; give one --sample-id per "
            "sample, in the same order, or none"
        )
    settings = EmbedSettings(
        batch_size=batch_size, precision=precision, patch_um=patch_um, grid_um=grid,
        overwrite=overwrite, subspot_um=subspot, cover=cover,
    )  # fmt: skip
    items: list[EmbedInput]
    if samplesheet is not None:
        items = samplesheet_inputs(samplesheet)  # checked whole: nothing written on a bad sheet
    else:
        items = [
            embed_input(
                s,
                image=images[i] if images else None,
                mpp=mpp,
                table=table,
                sample_id=ids[i] if ids and not slides else None,
                spot_diameter_um=spot_diameter,
                bin_size_um=bin_size,
            )
            for i, s in enumerate(samples)
        ]
        items += [
            SlideInput(path=s, sample_id=ids[i] if ids else None, mpp=mpp)
            for i, s in enumerate(slides)
        ]
    with progress_bar(Console(stderr=True), disable=as_json) as bar:

        def done(summary: object) -> None:
            if not as_json:
                bar.console.print(f"{summary.sample_id}: {summary.status}")  # type: ignore[attr-defined]

        summaries = embed_samples(
            items, store=store, encoder=encoder, weights=weights, device=device,
            settings=settings, scheduler=scheduler, progress=RichProgress(bar), on_done=done,
        )  # fmt: skip
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        counts = Counter(s.status for s in summaries)
        outcome = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        typer.echo(f"store {store}: {outcome} (encoder {encoder})")
