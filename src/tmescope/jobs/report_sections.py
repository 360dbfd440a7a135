"""The report's niche and interaction parts, built from their reports and figures.

``write_report`` accepts extra :class:`~tmescope.viz.report.ReportSection` objects; these two
turn a :class:`~tmescope.jobs.niches.NicheReport` and an
:class:`~tmescope.jobs.interactions.InteractionReport` (each with its PNG figures drawn) into
sections: a table, a sentence on how to read it, and the figures inline.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tmescope.viz.report.page import ReportSection, escape, figure, note

if TYPE_CHECKING:
    from tmescope.jobs.interactions import InteractionReport
    from tmescope.jobs.interfaces import InterfaceReport
    from tmescope.jobs.niches import NicheReport

PAIRS_SHOWN = 12
VIEW_NAMES = {
    "fused": "fused (the model's view)",
    "image": "image only",
    "expression": "measured expression only",
    "joint": "image + expression",
}


def niche_section(report: NicheReport) -> ReportSection:
    """Niches: what each is, how much of each sample it covers, and where it lies."""
    names = list(report.names)
    counts = {n["niche"]: n["n_spots"] for n in report.to_json()["niches"]}
    rows = []
    for i, name in enumerate(names):
        profile = report.profiles.loc[i].sort_values(ascending=False)
        states = ", ".join(f"{s} {v:+.1f}" for s, v in list(profile.items())[:3])
        shares = report.composition[i]
        rows.append(
            f"<tr><td>{escape(name)}</td><td class='num'>{counts[i]:,}</td>"
            f"<td class='num'>{shares.mean():.0%} ({shares.min():.0%}–{shares.max():.0%})</td>"
            f"<td>{escape(states)}</td>"
            f"<td>{escape(', '.join(report.top_genes.get(i, [])[:5]))}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>niche</th><th>spots</th><th>share of a sample</th>"
        "<th>top TME states (z)</th><th>top predicted genes</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    how = note(
        f"{report.k} niches found by {report.method} ({_params(report.params)}) over the fused "
        "embeddings of every spot of the cohort (the model's view of each spot's image and its "
        "neighbours). A niche is named by the TME states that run highest there, in standard "
        "deviations from the cohort mean; the share is of each sample's spots, mean (min–max)."
    )
    agreement = ""
    if report.agreement:
        scores = ", ".join(f"{escape(k)} {v:.2f}" for k, v in report.agreement.items())
        agreement = note(
            f"Agreement with the annotated regions (adjusted Rand index; 1 identical, 0 random): "
            f"{scores}."
        )
    views = ""
    if report.views and any(v is not None for v in report.views.values()):
        cells = "".join(
            f"<td class='num'>{'–' if v is None else f'{v:.2f}'}</td>"
            for v in report.views.values()
        )
        heads = "".join(f"<th>{escape(VIEW_NAMES.get(k, k))}</th>" for k in report.views)
        views = (
            note(
                f"The same number of niches ({report.k}) found from each view of the spots alone, "
                "and their agreement with the annotated regions (adjusted Rand index):"
            )
            + f"<table><thead><tr>{heads}</tr></thead><tbody><tr>{cells}</tr></tbody></table>"
        )
    return ReportSection("Niches", how + agreement + views + table + _figures(report.figures))


def interaction_section(report: InteractionReport) -> ReportSection:
    """Where populations meet: the strongest pairs, the heatmaps and the distance curves."""
    pooled = report.cohort is not None
    pairs = [p for p in report.pairs() if p["a"] != p["b"]][:PAIRS_SHOWN]
    head = "<th>mean z ± sd</th><th>Stouffer z</th><th>samples</th>" if pooled else "<th>z</th>"
    rows = []
    for p in pairs:
        cells = f"<td>{escape(p['a'])}</td><td>{escape(p['b'])}</td>"
        if pooled:
            spread = "–" if p["std_z"] is None else f"{p['std_z']:.1f}"
            cells += (
                f"<td class='num'>{_z(p['mean_z'])} ± {spread}</td>"
                f"<td class='num'>{_z(p['stouffer_z'])}</td><td class='num'>{p['n_samples']}</td>"
            )
        else:
            cells += f"<td class='num'>{_z(p['mean_z'])}</td>"
        rows.append(f"<tr>{cells}</tr>")
    table = (
        f"<table><thead><tr><th>population A</th><th>population B</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    settings = report.settings
    labels = "niche" if settings.on == "niches" else "dominant predicted TME state"
    where = "grid tiles between the spots" if settings.grid else "spots"
    how = note(
        f"Each of the {where} is labelled by its {labels}. Neighbourhood enrichment compares how "
        f"often two labels are neighbours with {settings.n_perms} random relabellings of the same "
        "sample: z above 2, they meet more than chance; below −2, they avoid each other. Pooled "
        "over samples: the mean z, its spread (sd) and a Stouffer z for consistency. With "
        "thousands of spots modest effects reach large z: compare pairs with each other, and read "
        "the co-occurrence ratio (how much likelier B is near A than anywhere; 1 = no relation) "
        "as the effect size. The strongest pairs of two different labels:"
    )
    shown = report.figures
    if pooled:  # the cohort's heatmap and curves, and each sample's labels; the rest via --out
        shown = tuple(p for p in shown if "cohort" in p.name or p.name.startswith("labels_"))
    return ReportSection("Interactions", how + table + _figures(shown))


def subspot_section(
    report: InterfaceReport, *, held_out: tuple[str, ...] = (), he_only: tuple[str, ...] = ()
) -> list[ReportSection]:
    """Sub-spot maps and where populations meet on them: the pairs, then a part per sample
    (marked when held out of training, or an H&E-only slide mapped from its image alone)."""
    s = report.settings
    pooled = report.cohort is not None
    rows = []
    for p in report.pairs()[:PAIRS_SHOWN]:
        spread = (  # the geometric spread: the ratio is times or divided by this over samples
            f" ×/÷ {math.exp(p['log_ratio_sd']):.2f}" if p["log_ratio_sd"] is not None else ""
        )
        last = str(len(p["per_sample"])) if pooled else ("–" if p["p"] is None else f"{p['p']:.3f}")
        rows.append(
            f"<tr><td>{escape(p['a'])}</td><td>{escape(p['b'])}</td>"
            f"<td class='num'>{p['ratio']:.2f}{spread}</td><td class='num'>{_z(p['z'])}</td>"
            f"<td class='num'>{last}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>population A</th><th>population B</th><th>co-location ratio</th>"
        f"<th>{'Stouffer z' if pooled else 'z'}</th><th>{'samples' if pooled else 'p'}</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    how = note(
        f"Every sample mapped at {s.resolution_um:g} µm bins: the share of each population's "
        "cells per bin, from the H&E's sub-spot features, fitted to the measured spots "
        "(inside a spot's disc the bins add up to what the spot measured; between spots the "
        "image is corrected by the nearby spots), with the ensemble's spread as uncertainty. "
        f"Two populations meet where one is and the other lies within {s.radius_um:g} µm: the "
        "interface score maps it (1 = as much contact as evenly mixed populations, 0 none); the "
        "co-location ratio is its mean over the sample. Its z compares it with "
        f"{s.n_shifts} toroidal shifts of one population's map, which keep each population's "
        "own patches (shuffling bins would call any two smooth fields interacting). Pairs with "
        "the strongest evidence of contact (z > 0) or avoidance (z < 0):"
    )
    cohort = tuple(p for p in report.figures if p.name == "interfaces_cohort.png")
    sections = [ReportSection("Sub-spot maps and interfaces", how + table + _figures(cohort))]
    for result in report.samples:
        sid = result.sample_id
        mine = tuple(p for p in report.figures if p.stem.endswith(f"_{sid}") and p not in cohort)
        tag = ""
        if sid in he_only:
            tag = " (H&E only: mapped from the image alone, nothing measured)"
        elif held_out:
            tag = " (held out of training)" if sid in held_out else " (a training sample)"
        sections.append(
            ReportSection(
                f"{sid}: sub-spot maps{tag}",
                note(f"{result.n_bins:,} bins of {s.resolution_um:g} µm.") + _figures(mine),
                level=3,
                anchor=f"subspot {sid}",
            )
        )
    return sections


def analysis_sections(
    store: Path | str, model_dir: Path | str, *, device: str = "auto"
) -> list[ReportSection]:
    """Niches and cohort interactions computed now, their figures drawn into a temporary folder."""
    from tmescope.jobs.interactions import run_interactions
    from tmescope.jobs.niches import find_niches

    with tempfile.TemporaryDirectory(prefix="tmescope-report-") as folder:
        niches = find_niches(store, model_dir, out=Path(folder) / "niches", device=device)
        meetings = run_interactions(store, model_dir, out=Path(folder) / "meet", device=device)
        sections = [niche_section(niches), interaction_section(meetings)]
        if (Path(model_dir) / "subspot").is_dir():  # trained with --resolution (SUBSPOT_DIR)
            sections += _subspot_now(store, model_dir, Path(folder) / "subspot")
        return sections


def _subspot_now(store: Path | str, model_dir: Path | str, out: Path) -> list[ReportSection]:
    """The sub-spot section of every sample, at the bin size the model was trained on."""
    import json

    from tmescope.fusion.subspot_model import SUBSPOT_DIR, SubspotModel
    from tmescope.jobs.interfaces import InterfaceSettings, run_interfaces

    bin_um = SubspotModel.load(Path(model_dir) / SUBSPOT_DIR).bin_um
    header = json.loads((Path(model_dir) / "model.json").read_text(encoding="utf-8"))
    report = run_interfaces(
        store, model_dir, settings=InterfaceSettings(resolution_um=bin_um), out=out
    )
    return subspot_section(
        report, held_out=tuple(header.get("holdout", ())), he_only=slides_of(store)
    )


def slides_of(store: Path | str) -> tuple[str, ...]:
    """The store's H&E-only samples (embedded with ``embed --slide``: no counts)."""
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="r")
    return tuple(s for s in opened.sample_ids() if not opened.sample_record(s).has_counts)


def _figures(paths: tuple[Path, ...]) -> str:
    """Every figure inline, cohort-wide ones first, in a grid."""
    ordered = sorted(paths, key=lambda p: "cohort" not in p.name and "composition" not in p.name)
    parts = []
    for path in ordered:
        if not path.is_file():
            continue
        data, mime = _inline(path)
        caption = escape(path.stem.replace("_", " "))
        parts.append(figure(data, mime=mime, alt=path.stem, caption=caption))
    return f"<div class='figures'>{''.join(parts)}</div>" if parts else ""


def _inline(path: Path) -> tuple[bytes, str]:
    """Maps over the H&E photograph as JPEG (a fifth of the PNG), charts as PNG (sharp text)."""
    if not path.name.startswith(
        ("labels_", "niches_", "populations_", "uncertainty_", "interface_map_")
    ):
        return path.read_bytes(), "image/png"
    import io

    from PIL import Image

    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=82, optimize=True)
    return buffer.getvalue(), "image/jpeg"


def _z(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def _params(params: object) -> str:
    return ", ".join(f"{k} {v}" for k, v in dict(params).items())  # type: ignore[call-overload]
