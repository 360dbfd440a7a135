"""``tmescope demo``: the main job on the embedded synthetic cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


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
    """Synthesise a cohort, embed it, search it, train the head and predict a sample."""
    from tmescope.cli.embed import RichProgress, progress_bar
    from tmescope.workflows import run_demo

    console = Console()
    with progress_bar(Console(stderr=True)) as bar:
        result = run_demo(
            out, n_samples=samples, n_spots=spots, seed=seed,
            progress=lambda message: bar.console.print(f"[dim]{message}[/dim]"),
            embed_progress=RichProgress(bar),
        )  # fmt: skip
    console.print(cohort_table(result.samples))
    if result.training:
        from tmescope.cli.fusion import comparison_table

        console.print(comparison_table(result.training))
    if result.niches is not None:
        from tmescope.cli.analysis import enrichment_table, niche_table

        console.print(niche_table(result.niches))
        agreement = result.niches.agreement.get("cohort")
        if agreement is not None:
            console.print(f"niches vs the synthetic regions: adjusted Rand index {agreement:.2f}")
        views = {k: v for k, v in result.niches.views.items() if v is not None}
        if views:
            console.print(
                "the same niches from each view of the spots, ARI: "
                + ", ".join(f"{k} {v:.2f}" for k, v in views.items())
            )
    if result.interactions is not None:
        console.print(enrichment_table(result.interactions, limit=10))
    if result.interfaces is not None:
        from tmescope.cli.analysis import interface_table

        console.print(interface_table(result.interfaces, limit=10))
    first = result.samples[0]
    lines = [
        f"[bold]cohort[/bold]    {result.cohort_dir}",
        f"[bold]overview[/bold]  {result.overview}",
        f"[bold]store[/bold]     {result.store} "
        f"({sum(e.rows_written for e in result.embedded):,} patches embedded, "
        f"{result.index_rows:,} indexed)",
        f"[bold]gallery[/bold]   {result.gallery} (regions like {result.gallery_query})",
    ]
    if result.model_dir is not None:
        lines += [
            f"[bold]model[/bold]     {result.model_dir}",
            f"[bold]predicted[/bold] {result.predictions} (spots and the grid between them)",
        ]
    if result.niches is not None:
        lines.append(f"[bold]niches[/bold]    {result.out_dir / 'niches'} (maps and composition)")
    if result.interactions is not None:
        lines.append(
            f"[bold]meetings[/bold]  {result.out_dir / 'interactions'} (enrichment heatmaps, "
            "co-occurrence curves, label maps)"
        )
    if result.subspot_predictions is not None:
        held = ", held out of training" if result.held_out else ""
        lines.append(
            f"[bold]sub-spot[/bold]  {result.subspot_predictions} (16 µm bins{held}); maps and "
            f"interfaces of every sample in {result.out_dir / 'subspot'}"
        )
    if result.comparison is not None:
        c = result.comparison.comparison
        calls = ", ".join(f"{s['sample']} {s['phenotype']}" for s in c.samples)
        lead = c.pairs[0] if c.pairs else None
        leading = ""
        if lead is not None:
            few = min(lead["n_patients"].values())
            leading = (
                f"; leading pair {lead['a']} · {lead['b']}, higher in {lead['higher_in']}, "
                f"p {lead['p']:.2g}, q {lead['q']:.2g}"
                + (f" ({few} patients per group: too few for q < 0.05)" if few < 4 else "")
            )
        lines.append(
            f"[bold]compare[/bold]   {result.comparison.out} ({' vs '.join(c.groups)}, patients "
            f"as units: {len(c.significant())} pair(s) at q < 0.05{leading}; immune phenotypes: "
            f"{calls})"
        )
    if result.slide_predictions is not None:
        lines.append(
            f"[bold]H&E only[/bold]  {result.slide_predictions} ({', '.join(result.slides)}: an "
            "archived slide without expression, mapped from its image alone)"
        )
    if result.exports:
        lines.append(
            f"[bold]exports[/bold]   {', '.join(map(str, result.exports))} (SpatialData: napari, "
            "spatialdata-plot, sopa; GeoJSON: QuPath's Import objects, over the slide)"
        )
    if result.report is not None:
        lines.append(f"[bold]report[/bold]    {result.report} (open it in a browser)")
    if result.model_dir is not None:
        lines.append(
            f"[bold]viewer[/bold]    tmescope serve {result.store} --model {result.model_dir}"
            "   (then open http://127.0.0.1:8765)"
        )
    lines += [
        f"[bold]next[/bold]      tmescope store ls {result.store}",
        f"          tmescope query {result.store} --sample {first['sample_id']} -k 3 "
        "--exclude-sample",
        f"          tmescope info {result.cohort_dir / first['sample_id']} "
        f"--image {first['image']['path']}",
    ]
    console.print("\n" + "\n".join(lines))


def cohort_table(summaries: list[dict[str, Any]]) -> Table:
    """One row per sample; where µm/px came from goes in the caption when all agree."""
    sources = sorted({s["mpp_source"] for s in summaries})
    table = Table(
        title="demo cohort", title_justify="left", caption=f"µm/px from {', '.join(sources)}"
    )
    table.add_column("sample", no_wrap=True)
    for column in ("spots", "in tissue", "genes", "µm/px", "slide px", "levels"):
        table.add_column(column, justify="right", no_wrap=True)
    for s in summaries:
        image = s["image"]
        table.add_row(
            s["sample_id"],
            f"{s['n_spots']:,}",
            f"{s['n_in_tissue']:,}",
            f"{s['n_genes']:,}",
            f"{s['mpp']:.3f}",
            f"{image['width']:,}×{image['height']:,}",
            str(image["levels"]),
        )
    return table
