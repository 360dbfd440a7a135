"""``tmescope niches`` and ``tmescope interactions``: where TME populations sit and meet."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from tmescope.workflows import InteractionReport, NicheReport

_STORE = Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")]
_MODEL = Annotated[Path, typer.Argument(help="A model folder written by tmescope train.")]
_DEVICE = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
_SCHEDULER = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="One task per sample on Dask: local:N (a LocalCluster of N processes) or a "
        "scheduler address (tcp://host:8786). Default: in turn, in this process.",
    ),
]


def niches(
    store: _STORE,
    model_dir: _MODEL,
    k: Annotated[
        int | None,
        typer.Option("--k", help="Number of k-means niches (default: chosen by silhouette)."),
    ] = None,
    leiden_resolution: Annotated[
        float | None,
        typer.Option(
            "--leiden-resolution", help="Leiden resolution instead of k-means (needs igraph)."
        ),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations", help="CSV of sample_id, barcode, region: report the agreement (ARI)."
        ),
    ] = None,
    annotation_key: Annotated[
        str, typer.Option("--annotation-key", help="The label column of --annotations.")
    ] = "region",
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for niche maps and composition (PNG).")
    ] = None,
    compare_views: Annotated[
        bool,
        typer.Option(
            "--compare-views",
            help="Also cluster the image alone, the measured expression alone and both jointly "
            "into as many niches; with --annotations, each view's agreement side by side.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the niches as JSON.")] = False,
    device: _DEVICE = "auto",
    scheduler: _SCHEDULER = None,
) -> None:
    """Cluster the cohort's fused embeddings into niches; name them and count them per sample."""
    from tmescope.cli.progress import sample_progress
    from tmescope.workflows import find_niches

    report = find_niches(
        store, model_dir, k=k, resolution=leiden_resolution, seed=seed, annotations=annotations,
        annotation_key=annotation_key, out=out, compare_views=compare_views, device=device,
        scheduler=scheduler, progress=sample_progress("fused embeddings"),
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    Console().print(niche_table(report))
    if report.agreement:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in report.agreement.items())
        typer.echo(f"adjusted Rand index with {annotation_key}: {scores}")
    if report.views and any(v is not None for v in report.views.values()):
        views = ", ".join(f"{k} {v:.2f}" for k, v in report.views.items() if v is not None)
        typer.echo(f"the same {report.k} niches from each view, ARI with {annotation_key}: {views}")
    for path in report.figures:
        typer.echo(f"wrote {path}")


def interactions(
    store: _STORE,
    model_dir: _MODEL,
    sample: Annotated[
        list[str] | None,
        typer.Option("--sample", help="A sample to analyse alone (repeat for several)."),
    ] = None,
    cohort: Annotated[
        bool, typer.Option("--cohort", help="Every sample, and their pooled statistics (default).")
    ] = False,
    on: Annotated[
        str, typer.Option("--on", help="states (dominant TME state) or niches.")
    ] = "states",
    grid: Annotated[
        bool, typer.Option("--grid", help="Use the grid tiles between spots (embed --grid).")
    ] = False,
    perms: Annotated[
        int | None,
        typer.Option(
            "--perms",
            help="Permutations of the null: label shuffles (default 1000), or with --resolution "
            "toroidal shifts (default 199).",
        ),
    ] = None,
    k: Annotated[int | None, typer.Option("--k", help="With --on niches: as niches --k.")] = None,
    leiden_resolution: Annotated[
        float | None,
        typer.Option("--leiden-resolution", help="With --on niches: Leiden resolution."),
    ] = None,
    resolution: Annotated[
        float | None,
        typer.Option(
            "--resolution",
            help="Sub-spot bins of this many µm (train --resolution): co-location of every pair "
            "of populations on continuous abundances, with a toroidal-shift null.",
        ),
    ] = None,
    pair: Annotated[
        list[str] | None,
        typer.Option("--pair", help="With --resolution: a pair to map, as A,B (repeatable)."),
    ] = None,
    radius: Annotated[
        float, typer.Option("--radius", help="With --resolution: contact radius in µm.")
    ] = 30.0,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for heatmaps, co-occurrence curves and label maps."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutations.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print all statistics as JSON.")] = False,
    device: _DEVICE = "auto",
    scheduler: _SCHEDULER = None,
) -> None:
    """Which TME populations (or niches) neighbour each other more or less than chance."""
    from tmescope.cli.progress import sample_progress
    from tmescope.errors import InvalidParameterError
    from tmescope.workflows import InteractionSettings, run_interactions

    if cohort and sample:
        raise InvalidParameterError("give --sample or --cohort, not both")
    if resolution is not None:
        if on != "states" or grid or k is not None or leiden_resolution is not None:
            raise InvalidParameterError(
                "--resolution maps populations on sub-spot bins: it does not take --on, --grid, "
                "--k or --leiden-resolution (those label spots or tiles)"
            )
        _sub_spot_interactions(
            store, model_dir, sample, resolution=resolution, pairs=pair or [], radius=radius,
            perms=199 if perms is None else perms, seed=seed, out=out, as_json=as_json,
            scheduler=scheduler,
        )  # fmt: skip
        return
    if pair:
        raise InvalidParameterError("--pair needs --resolution (pairs of sub-spot populations)")
    settings = InteractionSettings(
        on=on,  # type: ignore[arg-type]  # checked by InteractionSettings
        grid=grid,
        n_perms=1000 if perms is None else perms,
        seed=seed,
        k=k,
        resolution=leiden_resolution,
    )
    report = run_interactions(
        store, model_dir, samples=sample or None, settings=settings, out=out, device=device,
        scheduler=scheduler, progress=sample_progress("interactions"),
    )  # fmt: skip
    _print_report(report, enrichment_table, as_json=as_json)


def _sub_spot_interactions(
    store: Path,
    model_dir: Path,
    samples: list[str] | None,
    *,
    resolution: float,
    pairs: list[str],
    radius: float,
    perms: int,
    seed: int,
    out: Path | None,
    as_json: bool,
    scheduler: str | None,
) -> None:
    from tmescope.cli.progress import sample_progress
    from tmescope.workflows import InterfaceSettings, run_interfaces

    settings = InterfaceSettings(
        resolution_um=resolution, pairs=tuple(_pair(p) for p in pairs), radius_um=radius,
        n_shifts=perms, seed=seed,
    )  # fmt: skip
    report = run_interfaces(
        store, model_dir, samples=samples or None, settings=settings, out=out,
        scheduler=scheduler, progress=sample_progress("sub-spot maps and pair statistics"),
    )  # fmt: skip
    _print_report(report, interface_table, as_json=as_json)


def _print_report(report: Any, table: Any, *, as_json: bool) -> None:
    """The report as JSON, or its table and the figures it wrote."""
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    Console().print(table(report))
    for path in report.figures:
        typer.echo(f"wrote {path}")


def _pair(text: str) -> tuple[str, str]:
    from tmescope.errors import InvalidParameterError

    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise InvalidParameterError(f"--pair takes two populations as A,B; found {text!r}")
    return parts[0], parts[1]


def interface_table(report: Any, *, limit: int | None = None) -> Table:
    """Pairs of populations on sub-spot bins: co-location ratio, its spread and z."""
    pooled = report.cohort is not None
    s = report.settings
    n = len(report.samples)
    table = Table(
        title=f"co-location of populations at {s.radius_um:g} µm on {s.resolution_um:g} µm bins, "
        + (f"{n} samples pooled" if pooled else report.samples[0].sample_id),
        title_justify="left",
        caption="ratio: contact between A and B over what evenly mixed populations would give "
        f"(1 = chance); z against {s.n_shifts} toroidal shifts of B's map, which keep each "
        "population's own patches and the closure of shares"
        + ("; pooled: geometric mean ×/÷ its geometric sd over samples, Stouffer z"
           if pooled else ""),
    )  # fmt: skip
    table.add_column("population A")
    table.add_column("population B")
    table.add_column("ratio", justify="right")
    table.add_column("z", justify="right")
    table.add_column("samples" if pooled else "p", justify="right")
    rows = report.pairs()
    for row in rows[:limit] if limit is not None else rows:
        spread = (  # the geometric spread: the ratio is times or divided by this over samples
            f" ×/÷ {math.exp(row['log_ratio_sd']):.2f}" if row["log_ratio_sd"] is not None else ""
        )
        last = str(len(row["per_sample"])) if pooled else _p(row["p"])
        table.add_row(row["a"], row["b"], f"{row['ratio']:.2f}{spread}", _f(row["z"]), last)
    return table


def _p(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def niche_table(report: NicheReport) -> Table:
    """One row per niche: its size, share of the samples, defining states and top genes."""
    shares = report.composition.to_numpy()
    table = Table(
        title=f"{report.k} niches ({report.method}, {_params(report.params)}) of model "
        f"{report.model_id}",
        title_justify="left",
        caption="share: of each sample's spots, mean (min–max over samples); states: mean z "
        "over the niche's spots; --json and --out give the composition of every sample",
    )
    table.add_column("niche")
    table.add_column("spots", justify="right")
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("top states (z)")
    table.add_column("top genes")
    spots = report.to_json()["niches"]
    for i, name in enumerate(report.names):
        profile = report.profiles.loc[i].sort_values(ascending=False)
        states = ", ".join(f"{s} {v:+.1f}" for s, v in list(profile.items())[:2])
        column = shares[:, i]
        share = f"{column.mean():.0%} ({column.min():.0%}–{column.max():.0%})"
        genes = ", ".join(report.top_genes.get(i, [])[:3])
        table.add_row(name, f"{spots[i]['n_spots']:,}", share, states, genes)
    return table


def enrichment_table(report: InteractionReport, *, limit: int | None = None) -> Table:
    """Pairs of labels, most enriched or depleted first, with their spread over samples.

    With ``limit``, only that many pairs of two different labels (the strongest).
    """
    pooled = report.cohort is not None
    where = "grid tiles" if report.settings.grid else "spots"
    n = len(report.samples)
    table = Table(
        title=f"neighbourhood enrichment of {report.settings.on} ({where}), "
        + (f"{n} samples pooled" if pooled else report.samples[0].sample_id)
        + (f", the {limit} strongest pairs" if limit is not None else ""),
        title_justify="left",
        caption=f"z: permutation z-score ({report.settings.n_perms} label shuffles per sample); "
        "> 2 more neighbours than chance, < -2 fewer"
        + ("; ± spread over samples, Stouffer z combines them" if pooled else ""),
    )
    table.add_column("population A")
    table.add_column("population B")
    table.add_column("z" if not pooled else "mean z ± sd", justify="right", no_wrap=True)
    if pooled:
        table.add_column("Stouffer z", justify="right")
        table.add_column("samples", justify="right")
    pairs = report.pairs()
    if limit is not None:
        pairs = [p for p in pairs if p["a"] != p["b"]][:limit]
    for i, pair in enumerate(pairs):
        cells = [str(pair["a"]), str(pair["b"])]
        if pooled:
            spread = "–" if pair["std_z"] is None else f"{pair['std_z']:.1f}"
            cells += [
                f"{_f(pair['mean_z'])} ± {spread}",
                _f(pair["stouffer_z"]),
                str(pair["n_samples"]),
            ]
        else:
            cells.append(_f(pair["mean_z"]))
        # A rule between pairs of two populations and each population with itself.
        last_mixed = (
            pair["a"] != pair["b"] and i + 1 < len(pairs) and pairs[i + 1]["a"] == pairs[i + 1]["b"]
        )
        table.add_row(*cells, end_section=last_mixed)
    return table


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:+.1f}"


def _params(params: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in dict(params).items())
