"""``tmescope train`` and ``tmescope predict``: the graph-attention head and its baselines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def train(
    store: Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the trained model.")],
    target: Annotated[
        str, typer.Option("--target", help="expression, states (TME populations) or both.")
    ] = "both",
    genes: Annotated[
        int, typer.Option("--genes", help="Most variable genes to predict (chosen per fold).")
    ] = 50,
    model: Annotated[
        str,
        typer.Option(
            "--model", help="gat, mlp, ridge, ridge-cv, smooth-ridge, a comma list, or all."
        ),
    ] = "all",
    folds: Annotated[
        str,
        typer.Option(
            "--folds",
            help="auto (5 folds of whole patients; one per patient when there are 5 or fewer), "
            "a number of folds, leave-sample-out, leave-group-out, or a CSV (sample_id,fold) / "
            "JSON file of folds.",
        ),
    ] = "auto",
    groups: Annotated[
        Path | None,
        typer.Option(
            "--groups",
            help="CSV mapping sample_id to a patient (see --group-key); default: the metadata "
            "the samples were embedded with (embed --samplesheet).",
        ),
    ] = None,
    group_key: Annotated[
        str | None,
        typer.Option(
            "--group-key",
            help="The column that names each sample's patient, held out whole: of --groups, or "
            "of the stored metadata (default: patient, when every sample has one).",
        ),
    ] = None,
    cv_members: Annotated[
        int | None,
        typer.Option(
            "--cv-members",
            help="Heads per cross-validation fold (default: --members, or at most 3 once folds "
            "hold several patients each); the final head has --members.",
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option("--reference", help="Annotated single-cell .h5ad: states = proportions."),
    ] = None,
    label_key: Annotated[
        str | None, typer.Option("--label-key", help="Cell-type column of --reference's obs.")
    ] = None,
    gene_sets: Annotated[
        Path | None,
        typer.Option("--gene-sets", help="TOML or JSON of your own TME gene sets."),
    ] = None,
    holdout: Annotated[
        list[str] | None,
        typer.Option(
            "--holdout",
            help="A sample kept out of training altogether (repeatable), so that predicting it "
            "is honest.",
        ),
    ] = None,
    resolution: Annotated[
        float | None,
        typer.Option(
            "--resolution",
            help="Also fit the sub-spot model on the stored bins of this many µm (embed with "
            "--subspot): populations are --reference's cell types, else the population gene "
            "sets' markers.",
        ),
    ] = None,
    members: Annotated[int, typer.Option("--members", help="Heads in the ensemble.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the comparison as one JSON object.")
    ] = False,
) -> None:
    """Cross-validate the head against its baselines on the same folds; save the final head."""
    from tmescope.workflows import TrainSettings, parse_models, train_model

    settings = TrainSettings(
        target=target, n_genes=genes, models=parse_models(model), folds=folds, groups=groups,
        group_key=group_key, reference=reference, label_key=label_key, gene_sets=gene_sets,
        n_members=members, cv_members=cv_members, seed=seed, device=device,
        holdout=tuple(holdout or ()),
        resolution_um=resolution,
    )  # fmt: skip
    console = Console(stderr=True, highlight=False)
    result = train_model(
        store, out, settings=settings,
        progress=lambda message: console.print(f"[dim]{message}[/dim]"),
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(_json_safe(result.report), indent=2))
        return
    Console().print(comparison_table(result.report))
    Console().print(f"model: {result.model_dir}")


def predict(
    store: Annotated[Path, typer.Argument(help="The cohort store (a .zarr folder).")],
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by tmescope train.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="One sample: the .h5ad to write. Several (or none named: every sample): a "
            "folder, one <sample>.h5ad each.",
        ),
    ],
    sample: Annotated[
        list[str] | None,
        typer.Option("--sample", help="A sample to predict (repeat for several; none: all)."),
    ] = None,
    grid: Annotated[
        bool,
        typer.Option("--grid", help="Also predict the dense tiles (embed --grid) between spots."),
    ] = False,
    resolution: Annotated[
        float | None,
        typer.Option(
            "--resolution",
            help="Sub-spot maps instead: one observation per bin of this many µm (a model "
            "trained with --resolution, a sample embedded with --subspot).",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Into a folder: predict again samples whose file is already there.",
        ),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Into a folder: one task per sample on Dask, local:N (a LocalCluster of N "
            "processes) or a scheduler address (tcp://host:8786).",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Predict expression, TME states and attention (or sub-spot maps); write AnnData."""
    from tmescope.errors import InvalidParameterError

    if grid and resolution is not None:
        raise InvalidParameterError(
            "--grid predicts the grid tiles, --resolution the sub-spot bins: choose one"
        )
    if sample and len(sample) == 1 and out.suffix == ".h5ad":
        if scheduler is not None:
            raise InvalidParameterError(
                "--scheduler runs one task per sample: give --out a folder (one <sample>.h5ad "
                "each), or leave out --scheduler for a single sample"
            )
        _predict_one(store, model_dir, sample[0], out, grid=grid, resolution=resolution,
                     device=device)  # fmt: skip
        return
    from tmescope.cli.progress import sample_progress
    from tmescope.workflows import predict_samples

    summaries = predict_samples(
        store, model_dir, out=out, samples=sample or None, grid=grid, resolution_um=resolution,
        overwrite=overwrite, device=device, scheduler=scheduler,
        progress=sample_progress("predict"),
    )  # fmt: skip
    written = sum(s.status == "written" for s in summaries)
    typer.echo(
        f"{out}: {written} written, {len(summaries) - written} already there "
        f"({sum(s.n_obs for s in summaries):,} observations)"
    )


def _predict_one(
    store: Path,
    model_dir: Path,
    sample: str,
    out: Path,
    *,
    grid: bool,
    resolution: float | None,
    device: str,
) -> None:
    """The single-sample form: one file, written whole."""
    import anndata as ad

    from tmescope.workflows import predict_sample, predict_subspot

    if resolution is not None:
        path = predict_subspot(store, model_dir, sample=sample, resolution_um=resolution, out=out)
        written = ad.read_h5ad(path, backed="r")
        typer.echo(
            f"wrote {path}: {written.n_obs:,} bins of {resolution:g} µm × "
            f"{written.obsm['populations'].shape[1]} populations, {written.n_vars} genes"
        )
        written.file.close()
        return
    path = predict_sample(store, model_dir, sample=sample, out=out, grid=grid, device=device)
    written = ad.read_h5ad(path, backed="r")
    kinds = written.obs["kind"].value_counts().to_dict()
    what = ", ".join(f"{n:,} {k}s" for k, n in kinds.items() if n)
    typer.echo(f"wrote {path}: {what} × {written.n_vars} predicted genes")
    written.file.close()


def comparison_table(report: dict[str, Any]) -> Table:
    """Models side by side: mean Pearson (expression, then states) and each fold's."""
    models = report["models"]
    folds = [_fold_label(f) for f in report["folds"]]
    target = "genes" if report["target"] != "states" else "states"
    scheme = report.get("fold_scheme") or f"{len(folds)} folds"
    members = f", {report['cv_members']} heads per fold" if report.get("cv_members") else ""
    table = Table(
        title=f"held-out Pearson over {len(report['genes']) or len(report['states'])} {target}, "
        f"{scheme}{members} ({report['n_spots']:,} spots)",
        title_justify="left",
        caption="fold "
        + ", ".join(f"{i + 1}: {f}" for i, f in enumerate(folds[:6]))
        + (", …" if len(folds) > 6 else "")
        + " held out; targets chosen on training samples only",
    )
    table.add_column("model", no_wrap=True, min_width=12)
    table.add_column("mean", justify="right", no_wrap=True, min_width=5)
    has_states = any("states" in m for m in models.values())
    if has_states:
        table.add_column("states", justify="right", no_wrap=True, min_width=6)
    for i in range(len(folds)):
        table.add_column(str(i + 1), justify="right", no_wrap=True)
    table.add_column("90% cov", justify="right", no_wrap=True, min_width=7)
    best = max(models, key=lambda m: _num(models[m]["mean"]))
    for name, scores in models.items():
        cells = [
            f"[bold]{name}[/bold]" if name == best else name,
            f"{_num(scores['mean']):.3f}",
        ]
        if has_states:
            cells.append(f"{_num(scores['states']['mean']):.3f}" if "states" in scores else "")
        cells += [f"{_num(v):.3f}" for v in scores["folds"]]
        cells.append(f"{scores['coverage_90']:.2f}" if "coverage_90" in scores else "")
        table.add_row(*cells)
    return table


def _fold_label(fold: dict[str, Any]) -> str:
    """A fold named after what it tests (a sample, a patient), else its first test sample."""
    if not str(fold["name"]).startswith("fold "):
        return str(fold["name"])
    test = list(fold["test"])
    return test[0] + (f" +{len(test) - 1}" if len(test) > 1 else "")


def _num(value: Any) -> float:
    return float(value) if value is not None else math.nan


def _json_safe(value: Any) -> Any:
    """NaN (a gene constant in a fold) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
