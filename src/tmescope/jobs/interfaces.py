"""``tmescope interactions … --resolution UM``: where populations meet, on the sub-spot maps.

Each sample is predicted at ``UM`` bins with the model's sub-spot model (as ``predict
--resolution``), then every pair of populations (or the pairs asked for) gets its co-location
ratio at ``radius_um`` on the continuous abundances, with a toroidal-shift null that keeps each
population's own spatial structure (:mod:`tmescope.analysis.interfaces`). Over several samples the
log ratios are pooled as mean ± spread and the z-scores by Stouffer's method.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.analysis.adata_pairs import adata_interface_maps, adata_pair_statistics
from tmescope.analysis.interfaces import DEFAULT_RADIUS_UM
from tmescope.errors import InvalidParameterError

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.analysis.interfaces import CohortPairs, PairStatistics

__all__ = [
    "InterfaceReport",
    "InterfaceSettings",
    "SampleInterfaces",
    "adata_interface_maps",  # the twin on any AnnData, re-exported for tmescope.workflows
    "adata_pair_statistics",
    "mapped_pairs",
    "run_interfaces",
]

log = logging.getLogger(__name__)

MAPPED_PAIRS = 3  # interface maps drawn per sample when no pair is named
MAPPED_POPULATIONS = 6  # the most abundant populations drawn per sample


@dataclass(frozen=True)
class InterfaceSettings:
    """Bin size, the pairs to map (all by default), the contact radius and the null's size."""

    resolution_um: float = 16.0
    pairs: tuple[tuple[str, str], ...] = ()
    radius_um: float = DEFAULT_RADIUS_UM
    n_shifts: int = 199
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.radius_um > 0:
            raise InvalidParameterError(f"--radius must be > 0 µm; found {self.radius_um}")
        if not 10 <= self.n_shifts <= 100_000:
            raise InvalidParameterError(f"--perms must be from 10 to 100000; found {self.n_shifts}")
        for pair in self.pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise InvalidParameterError(
                    f"--pair takes two different populations, as A,B; found {','.join(pair)}"
                )


@dataclass(frozen=True)
class SampleInterfaces:
    sample_id: str
    n_bins: int
    stats: PairStatistics


@dataclass(frozen=True)
class InterfaceReport:
    """Per-sample pair statistics and, over two or more samples, their pooled form."""

    model_dir: str
    settings: InterfaceSettings
    populations: tuple[str, ...]
    samples: tuple[SampleInterfaces, ...]
    cohort: CohortPairs | None
    figures: tuple[Path, ...] = field(default=())

    def pairs(self) -> list[dict[str, Any]]:
        """The pairs asked for (every pair by default), strongest evidence first."""
        from tmescope.analysis.interfaces import pairs_of

        rows = []
        for a, b in pairs_of(self.populations, self.settings.pairs or None):
            ratios = [s.stats.ratio[a, b] for s in self.samples]
            if self.cohort is not None:
                z = self.cohort.stouffer_z[a, b]
                p = np.nan
                log_ratio, spread = (
                    self.cohort.mean_log_ratio[a, b],
                    self.cohort.std_log_ratio[a, b],
                )
            else:
                z, p = self.samples[0].stats.zscore[a, b], self.samples[0].stats.pvalue[a, b]
                log_ratio, spread = np.log(ratios[0]), np.nan
            if not np.isfinite(log_ratio):
                continue  # a population too rare in every sample
            rows.append(
                {"a": self.populations[a], "b": self.populations[b],
                 "ratio": _num(np.exp(log_ratio)), "log_ratio_sd": _num(spread),
                 "z": _num(z), "p": _num(p),
                 "per_sample": {s.sample_id: _num(r) for s, r in zip(self.samples, ratios, strict=True)}}
            )  # fmt: skip
        return sorted(rows, key=lambda r: -abs(r["z"] or 0.0))

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "model_dir": self.model_dir,
            "resolution_um": s.resolution_um,
            "radius_um": s.radius_um,
            "n_shifts": s.n_shifts,
            "seed": s.seed,
            "null": "toroidal shifts of the second population's map",
            "populations": list(self.populations),
            "pairs": self.pairs(),
            "samples": {r.sample_id: {"n_bins": r.n_bins} for r in self.samples},
            "figures": [str(p) for p in self.figures],
        }


def run_interfaces(
    store: Path | str,
    model_dir: Path | str,
    *,
    samples: Sequence[str] | None = None,
    settings: InterfaceSettings | None = None,
    out: Path | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> InterfaceReport:
    """Pair statistics of ``samples`` (default: every sample of the store) at sub-spot bins."""
    from tmescope.analysis.interfaces import pairs_of, pool_pairs
    from tmescope.fusion.cohort import check_samples
    from tmescope.store import CohortStore

    settings = settings or InterfaceSettings()
    opened = CohortStore.open(store, mode="r")
    wanted = list(samples) if samples else opened.sample_ids()
    check_samples(opened, wanted)
    populations = _populations(model_dir)
    pairs_of(populations, settings.pairs or None)  # an unknown name fails before any work
    out_dir = Path(out) if out is not None else None
    results, figures = [], []
    for done, sample_id in enumerate(wanted, start=1):
        adata = _predicted(store, model_dir, sample_id, settings.resolution_um)
        stats = adata_pair_statistics(
            adata, radius_um=settings.radius_um, n_shifts=settings.n_shifts, seed=settings.seed
        )
        result = SampleInterfaces(sample_id, adata.n_obs, stats)
        results.append(result)
        if out_dir is not None:  # drawn now: a cohort of slides' maps never sits in memory
            figures += _draw_sample(opened, result, adata, settings, out_dir)
        if progress is not None:
            progress(sample_id, done, len(wanted))
    report = InterfaceReport(
        model_dir=str(model_dir),
        settings=settings,
        populations=populations,
        samples=tuple(results),
        cohort=pool_pairs([r.stats for r in results]) if len(results) > 1 else None,
    )
    if out_dir is not None and report.cohort is not None:
        figures.insert(0, _draw_cohort(report, out_dir))
    return replace(report, figures=tuple(figures))


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


def _populations(model_dir: Path | str) -> tuple[str, ...]:
    from tmescope.errors import ModelMismatchError
    from tmescope.fusion.subspot_model import SUBSPOT_DIR, SubspotModel

    folder = Path(model_dir) / SUBSPOT_DIR
    if not folder.is_dir():
        raise ModelMismatchError(
            f"{model_dir} has no sub-spot model: train it with `tmescope train STORE --out "
            f"{model_dir} --resolution 16` (with --reference REF.h5ad for shares of cells)"
        )
    return tuple(SubspotModel.load(folder).populations)


def _predicted(store: Path | str, model_dir: Path | str, sample: str, bin_um: float) -> ad.AnnData:
    from tmescope.jobs.predict_bins import subspot_anndata

    log.info("sub-spot maps of %s at %g µm", sample, bin_um)
    return subspot_anndata(store, model_dir, sample=sample, resolution_um=bin_um, expression=False)


def _draw_cohort(report: InterfaceReport, out: Path) -> Path:
    from tmescope.viz.interaction_plots import plot_enrichment_heatmap

    assert report.cohort is not None
    s = report.settings
    return plot_enrichment_heatmap(
        report.cohort.stouffer_z, list(report.populations), out / "interfaces_cohort.png",
        title=f"co-location at {s.radius_um:g} µm, {len(report.samples)} samples "
        "(Stouffer z, toroidal-shift null)",
    )  # fmt: skip


def _draw_sample(
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


def _interface_maps(
    adata: ad.AnnData,
    thumb: np.ndarray | None,
    xy: np.ndarray,
    pairs: list[tuple[str, str]],
    s: InterfaceSettings,
    out: Path,
) -> Path:
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


def _num(value: Any) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None
