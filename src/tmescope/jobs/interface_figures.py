"""The figures of ``tmescope interactions --resolution``: each sample's maps, the cohort's heatmap,
and the record that says a sample's figures in ``--out`` are finished.

A sample's figures are drawn by the task that computed its statistics (a cohort of slides' maps
never sits in memory). When they are all written, ``OUT/.tmescope/interfaces_<sample>.json``
records what they show (the maps' version, the statistics' parameters, the pairs mapped); a run
that finds that record, and the figures it lists, leaves them as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.store.atomic import write_atomically

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.analysis.interfaces import PairStatistics
    from tmescope.jobs.interfaces import InterfaceReport, InterfaceSettings, SampleInterfaces

MAPPED_PAIRS = 3  # interface maps drawn per sample when no pair is named
MAPPED_POPULATIONS = 6  # the most abundant populations drawn per sample
RECORDS = ".tmescope"  # the hidden folder of ``--out`` holding the records of finished samples


def mapped_pairs(
    settings: InterfaceSettings, stats: PairStatistics, n: int = MAPPED_PAIRS
) -> list[tuple[str, str]]:
    """The pairs named, else the ``n`` of the sample with the strongest evidence of contact or
    avoidance (largest |z|)."""
    if settings.pairs:
        return list(settings.pairs)
    names = stats.names
    upper = [(abs(stats.zscore[a, b]), names[a], names[b])
             for a in range(len(names)) for b in range(a + 1, len(names))
             if np.isfinite(stats.zscore[a, b])]  # fmt: skip
    return [(a, b) for _, a, b in sorted(upper, reverse=True)[:n]]


def finished_figures(out: Path, sample_id: str, stamp: Mapping[str, Any]) -> list[Path] | None:
    """The sample's figures in ``out`` when a finished run drew them for ``stamp``; else None."""
    try:
        record = json.loads(_record(out, sample_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("stamp") != json.loads(json.dumps(stamp)):
        return None
    figures = [out / str(name) for name in record.get("figures", [])]
    return figures if all(p.is_file() for p in figures) else None


def record_figures(
    out: Path, sample_id: str, stamp: Mapping[str, Any], figures: list[Path]
) -> None:
    """Say that the sample's figures for ``stamp`` are all in ``out`` (written last, whole)."""
    payload = {"sample": sample_id, "stamp": dict(stamp), "figures": [p.name for p in figures]}
    target = _record(out, sample_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, lambda path: path.write_text(json.dumps(payload, indent=1)))


def draw_cohort(report: InterfaceReport, out: Path) -> Path:
    """The pooled heatmap (Stouffer z) of the cohort."""
    from tmescope.viz.interaction_plots import plot_enrichment_heatmap

    assert report.cohort is not None
    s = report.settings
    return plot_enrichment_heatmap(
        report.cohort.stouffer_z, list(report.populations), out / "interfaces_cohort.png",
        title=f"co-location at {s.radius_um:g} µm, {len(report.samples)} samples "
        "(Stouffer z, toroidal-shift null)",
    )  # fmt: skip


def draw_sample(
    store: Any, result: SampleInterfaces, adata: ad.AnnData, s: InterfaceSettings, out: Path
) -> list[Path]:
    """A sample's population and uncertainty maps, its interface maps and its z heatmap."""
    from tmescope.viz.interaction_plots import plot_enrichment_heatmap
    from tmescope.viz.thumbnails import sample_thumbnail

    sid = result.sample_id
    thumb, scale = sample_thumbnail(store, sid)
    xy = np.asarray(adata.obsm["spatial"]) * scale
    figures = _population_maps(adata, thumb, xy, sid, out / f"populations_{sid}.png")
    chosen = mapped_pairs(s, result.stats)
    if chosen:
        path = out / f"interface_map_{sid}.png"
        figures.append(_interface_maps(adata, thumb, xy, chosen, s, path))
    figures.append(
        plot_enrichment_heatmap(
            result.stats.zscore, list(result.stats.names), out / f"interfaces_{sid}.png",
            title=f"{sid}: co-location at {s.radius_um:g} µm (z, toroidal-shift null)",
        )
    )  # fmt: skip
    return figures


def _record(out: Path, sample_id: str) -> Path:
    return out / RECORDS / f"interfaces_{sample_id}.json"


def _interface_maps(
    adata: ad.AnnData,
    thumb: np.ndarray | None,
    xy: np.ndarray,
    pairs: list[tuple[str, str]],
    s: InterfaceSettings,
    out: Path,
) -> Path:
    from tmescope.analysis.adata_pairs import adata_interface_maps
    from tmescope.viz.value_maps import plot_value_maps

    scores = adata_interface_maps(adata, pairs, radius_um=s.radius_um)
    return plot_value_maps(
        thumb, xy, list(scores.values()), [k.replace("|", " – ") for k in scores], out,
        suptitle=f"{adata.obs['sample_id'].iloc[0]}: interface score at {s.resolution_um:g} µm "
        "bins (1 = as much contact as evenly mixed populations)",
        cmap="viridis", colour_label="interface score",
    )  # fmt: skip


def _population_maps(
    adata: ad.AnnData, thumb: np.ndarray | None, xy: np.ndarray, sid: str, out: Path
) -> list[Path]:
    """The most abundant populations' maps and, beside each, its spread over the ensemble."""
    from tmescope.viz.value_maps import plot_value_maps

    shares = adata.obsm["populations"]
    spread = adata.obsm["populations_std"]
    top = list(shares.mean(axis=0).sort_values(ascending=False).index[:MAPPED_POPULATIONS])
    about = adata.uns["subspot"]
    bin_um = float(about["bin_um"])
    # Marker-set populations are shares of marker signal; an H&E-only slide has no spots.
    what = (
        "share of marker signal" if about.get("populations_from") == "markers" else "share of cells"
    )
    how = "reconciled with the spots" if about.get("measured_spots", 1) else "the image alone"
    abundance = plot_value_maps(
        thumb, xy, [shares[c].to_numpy() for c in top], top, out,
        suptitle=f"{sid}: {what} per {bin_um:g} µm bin ({how})", colour_label=what,
    )  # fmt: skip
    uncertainty = plot_value_maps(
        thumb, xy, [spread[c].to_numpy() for c in top], top,
        out.with_name(f"uncertainty_{sid}.png"),
        suptitle=f"{sid}: uncertainty (spread over the ensemble of the image's shares)",
        cmap="cividis", colour_label="sd of share",
    )  # fmt: skip
    return [abundance, uncertainty]
