"""The report's niche, interaction and sub-spot parts, built from their reports and figures.

``write_report`` accepts :class:`~tmescope.viz.report.ReportPart` objects; these turn a
:class:`~tmescope.jobs.niches.NicheReport`, an
:class:`~tmescope.jobs.interactions.InteractionReport` and an
:class:`~tmescope.jobs.interfaces.InterfaceReport` (each with its PNG figures drawn) into a part
of the index (a table, a sentence on how to read it, the cohort's figures) and a part of each
sample's page (its maps and its own statistics), inlined only when that page is written.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tmescope.viz.report.figure_files import FigureFiles, figures_html
from tmescope.viz.report.page import ReportPart, ReportSection, escape, note

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


def niche_section(report: NicheReport) -> ReportPart:
    """Niches: what each is and how much of each sample it covers (the index); where they lie
    on a sample, and its share of each (its page)."""
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
        "deviations from the cohort mean; the share is of each sample's spots, mean (min–max). "
        "Each sample's niche map is on its page."
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
    files = FigureFiles(report.figures)
    cohort = figures_html(files.named("niche_composition.png"))
    shares = {
        str(s): row
        for s, row in zip(report.composition.index, report.composition.to_numpy(), strict=True)
    }

    def per_sample(sample_id: str) -> list[ReportSection]:
        if sample_id not in shares:
            return []
        cells = "".join(
            f"<tr><td>{escape(n)}</td><td class='num'>{v:.0%}</td></tr>"
            for n, v in sorted(zip(names, shares[sample_id], strict=True), key=lambda t: -t[1])
        )
        own = (
            "<table><thead><tr><th>niche</th><th>share of this sample's spots</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>"
        )
        text = "The cohort's niches (see the index) over this sample's H&E, and its share of each."
        if sample_id in report.agreement:
            text += (
                f" Agreement with its annotated regions (ARI): {report.agreement[sample_id]:.2f}."
            )
        body = note(text) + own + figures_html(files.of_sample(sample_id, ["niches"]))
        return [ReportSection("Niches", body)]

    index = ReportSection("Niches", how + agreement + views + table + cohort)
    return ReportPart(index=(index,), per_sample=per_sample)


def interaction_section(report: InteractionReport) -> ReportPart:
    """Where populations meet: the strongest pairs and the cohort's heatmap and curves (the
    index); a sample's labels, strongest pairs, heatmap and curves (its page)."""
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
    table = _pairs_table(head, rows)
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
        "as the effect size. Each sample's labels, heatmap and curves are on its page. The "
        "strongest pairs of two different labels:"
    )
    files = FigureFiles(report.figures)
    results = {r.sample_id: r for r in report.samples}
    cohort = files.named("enrichment_cohort.png", "cooccurrence_cohort.png") if pooled else ()
    kinds = ["labels", "enrichment", "cooccurrence"]

    def per_sample(sample_id: str) -> list[ReportSection]:
        result = results.get(sample_id)
        if result is None:
            return []
        z = result.enrichment.zscore
        cats = report.categories
        found = [
            (abs(float(z[i, j])), cats[i], cats[j], float(z[i, j]))
            for i in range(len(cats)) for j in range(i + 1, len(cats)) if np.isfinite(z[i, j])
        ]  # fmt: skip
        found.sort(key=lambda t: -t[0])
        own = _pairs_table("<th>z</th>", [
            f"<tr><td>{escape(a)}</td><td>{escape(b)}</td><td class='num'>{_z(v)}</td></tr>"
            for _, a, b, v in found[:PAIRS_SHOWN]
        ])  # fmt: skip
        text = (
            f"This sample's {where}, each labelled by its {labels}, and its own enrichment z "
            "(read as in the index); the strongest pairs of two different labels:"
        )
        body = note(text) + own + figures_html(files.of_sample(sample_id, kinds))
        return [ReportSection("Interactions", body)]

    index = ReportSection("Interactions", how + table + figures_html(cohort))
    return ReportPart(index=(index,), per_sample=per_sample)


def subspot_section(
    report: InterfaceReport, *, held_out: tuple[str, ...] = (), he_only: tuple[str, ...] = ()
) -> ReportPart:
    """Sub-spot maps and where populations meet on them: the pairs and the cohort's heatmap (the
    index); a sample's maps, marked when held out of training or an H&E-only slide mapped from
    its image alone (its page)."""
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
    table = _pairs_table(
        "<th>co-location ratio</th>"
        f"<th>{'Stouffer z' if pooled else 'z'}</th><th>{'samples' if pooled else 'p'}</th>",
        rows,
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
        "own patches (shuffling bins would call any two smooth fields interacting), the other "
        "shares of each bin renormalised with it, so that the closure of shares (abundant "
        "populations crowd each other out) is not read as avoidance. Each "
        "sample's maps are on its page. Pairs with the strongest evidence of contact (z > 0) or "
        "avoidance (z < 0):"
    )
    files = FigureFiles(report.figures)
    results = {r.sample_id: r for r in report.samples}
    kinds = ["populations", "uncertainty", "interface_map", "interfaces"]

    def per_sample(sample_id: str) -> list[ReportSection]:
        result = results.get(sample_id)
        if result is None:
            return []
        tag = ""
        if sample_id in he_only:
            tag = " (H&E only: mapped from the image alone, nothing measured)"
        elif held_out:
            tag = " (held out of training)" if sample_id in held_out else " (a training sample)"
        text = f"{result.n_bins:,} bins of {s.resolution_um:g} µm, read as in the index."
        body = note(text) + figures_html(files.of_sample(sample_id, kinds))
        return [ReportSection(f"Sub-spot maps{tag}", body, anchor="sub-spot maps")]

    cohort = figures_html(files.named("interfaces_cohort.png"))
    index = ReportSection("Sub-spot maps and interfaces", how + table + cohort)
    return ReportPart(index=(index,), per_sample=per_sample)


def analysis_sections(
    store: Path | str,
    model_dir: Path | str,
    *,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> list[ReportPart]:
    """Niches and cohort interactions (and, for a model trained with ``--resolution``, the
    sub-spot maps and, when the samples carry a ``group`` column, what differs between the
    groups: :mod:`tmescope.jobs.report_compare`) computed now, their figures drawn into a temporary folder that lives as long
    as the parts do (the samples' pages read their figures from it when they are written)."""
    from tmescope.jobs.interactions import run_interactions
    from tmescope.jobs.niches import find_niches

    def told(what: str) -> Callable[[str, int, int], None] | None:
        if progress is None:
            return None
        return lambda sample_id, done, total: progress(
            f"report: {what}: {sample_id} ({done} of {total})"
        )

    def say(message: str) -> None:
        if progress is not None:
            progress(f"report: {message}")

    folder = tempfile.TemporaryDirectory(prefix="tmescope-report-")
    out = Path(folder.name)
    say("finding the cohort's niches")
    niches = find_niches(
        store, model_dir, out=out / "niches", device=device,
        progress=told("the model's fused embeddings"),
    )  # fmt: skip
    say("where the TME populations meet (enrichment, co-occurrence)")
    meetings = run_interactions(store, model_dir, out=out / "meet", device=device)
    parts = [niche_section(niches), interaction_section(meetings)]
    if (Path(model_dir) / "subspot").is_dir():  # trained with --resolution (SUBSPOT_DIR)
        parts.append(_subspot_now(store, model_dir, out / "subspot", told("sub-spot maps")))
        from tmescope.jobs.report_compare import comparison_now

        compared = comparison_now(store, model_dir, out / "compare", told("groups compared"))
        if compared is not None:
            say("what differs between groups")
            parts.append(compared)
    return [_keeping(part, folder) for part in parts]


def _keeping(part: ReportPart, folder: tempfile.TemporaryDirectory[str]) -> ReportPart:
    """``part``, holding the folder its figures are in for as long as the part lives."""
    inner = part.sections_of

    def per_sample(sample_id: str) -> list[ReportSection]:
        assert folder.name  # the reference that keeps the folder (removed when it is dropped)
        return inner(sample_id)

    return ReportPart(index=part.index, per_sample=per_sample)


def _subspot_now(
    store: Path | str,
    model_dir: Path | str,
    out: Path,
    progress: Callable[[str, int, int], None] | None,
) -> ReportPart:
    """The sub-spot part of every sample, at the bin size the model was trained on."""
    import json

    from tmescope.fusion.subspot_model import SUBSPOT_DIR, SubspotModel
    from tmescope.jobs.interfaces import InterfaceSettings, run_interfaces

    bin_um = SubspotModel.load(Path(model_dir) / SUBSPOT_DIR).bin_um
    header = json.loads((Path(model_dir) / "model.json").read_text(encoding="utf-8"))
    report = run_interfaces(
        store, model_dir, settings=InterfaceSettings(resolution_um=bin_um), out=out,
        progress=progress,
    )  # fmt: skip
    return subspot_section(
        report, held_out=tuple(header.get("holdout", ())), he_only=slides_of(store)
    )


def slides_of(store: Path | str) -> tuple[str, ...]:
    """The store's H&E-only samples (embedded with ``embed --slide``: no counts)."""
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="r")
    return tuple(s for s in opened.sample_ids() if not opened.sample_record(s).has_counts)


def _pairs_table(value_heads: str, rows: Sequence[str]) -> str:
    return (
        f"<table><thead><tr><th>population A</th><th>population B</th>{value_heads}</tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _z(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def _params(params: object) -> str:
    return ", ".join(f"{k} {v}" for k, v in dict(params).items())  # type: ignore[call-overload]
