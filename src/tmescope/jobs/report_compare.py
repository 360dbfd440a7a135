"""The report's "What differs between groups" part, from a :class:`~tmescope.jobs.compare.
CompareReport` with its figures drawn: the pairs and populations that differ, with patients as
the units, and each section's immune phenotype (the index); a section's call and the figures
that decided it (its page).

The report adds it by itself when the store's samples carry a grouping column (``group`` by
default) with two or more groups of two or more patients, and the model has sub-spot maps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tmescope.viz.report.figure_files import FigureFiles, figures_html
from tmescope.viz.report.page import ReportPart, ReportSection, escape, note

if TYPE_CHECKING:
    from tmescope.jobs.compare import CompareReport

log = logging.getLogger(__name__)

ROWS_SHOWN = 12
REPORT_GROUP_COLUMN = "group"


def comparison_section(report: CompareReport) -> ReportPart:
    """The comparison as a part of the report."""
    c = report.comparison
    rows = []
    for p in c.pairs[:ROWS_SHOWN]:
        mark = " class='hit'" if p["q"] < 0.05 else ""
        rows.append(
            f"<tr{mark}><td>{escape(p['a'])} · {escape(p['b'])}</td>"
            f"<td>{escape(' vs '.join(p['groups']))}</td>"
            f"<td class='num'>{p['effect']:+.2f} [{_f(p['low'])}, {_f(p['high'])}]</td>"
            f"<td>{escape(p['higher_in'] or '–')}</td><td class='num'>{_f(p['p'])}</td>"
            f"<td class='num'>{_f(p['p_perm'])}</td><td class='num'>{_f(p['q'])}</td>"
            f"<td class='num'>{_f(p['naive_p'])}</td></tr>"
        )
    pairs = (
        "<table><thead><tr><th>pair</th><th>groups</th><th>effect [95 %]</th><th>higher in</th>"
        "<th>p (Welch)</th><th>p (exact perm.)</th><th>q</th><th>naive p (not used)</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    abundance = [
        f"<tr><td>{escape(a['population'])}</td><td>{escape(' vs '.join(a['groups']))}</td>"
        f"<td class='num'>{a['effect']:+.2f}</td><td>{escape(a['higher_in'] or '–')}</td>"
        f"<td class='num'>{_f(a['q'])}</td></tr>"
        for a in c.abundances[:ROWS_SHOWN]
        if a["effect"] is not None
    ]
    abundances = (
        "<table><thead><tr><th>population</th><th>groups</th><th>effect (clr)</th>"
        f"<th>higher in</th><th>q</th></tr></thead><tbody>{''.join(abundance)}</tbody></table>"
    )
    n_patients = len({s.get("patient") for s in c.samples})
    how = note(
        f"Sections grouped by {escape(c.by)} ({', '.join(map(escape, c.groups))}); "
        f"{len(c.samples)} sections of {n_patients} {escape(c.subject)}s. For every pair of "
        f"populations, its co-location ratio at {c.radius_um:g} µm on each section's sub-spot "
        "maps; sections averaged within a patient; the groups' patients compared by Welch's t on "
        "the log ratios (q: Benjamini–Hochberg over pairs), the exact permutation p of the "
        "patients' labels beside it, and a bootstrap interval over patients. The effect is the "
        "first group minus the second (log scale: +0.69 is twice the contact). Patients are the "
        "units: the naive p, which treats every bin as an independent tumour, is shown only to "
        "say why it is not used. With few patients, power is low: a difference not found is not "
        f"shown absent. {len(c.significant())} pair(s) at q < 0.05 (highlighted):"
    )
    calls = _phenotype_table(report)
    files = FigureFiles(report.figures)
    figures = figures_html(files.named("differences.png", *[p.name for p in report.figures
                                                             if p.name.startswith("pair_")]))
    phenotype_figure = figures_html(files.named("phenotypes.png"))
    by_sample = {s["sample"]: s for s in c.samples}

    def per_sample(sample_id: str) -> list[ReportSection]:
        s = by_sample.get(sample_id)
        if s is None or s.get("phenotype") is None:
            return []
        text = (
            f"Group {escape(s['group'])}; immune phenotype called from the maps: "
            f"<b>{escape(s['phenotype'])}</b> ({escape(s.get('phenotype_decided_by') or '')}). "
            f"T-cell share in tumour nests {_f(s.get('phenotype_t_nest'))}, at their margin "
            f"{_f(s.get('phenotype_t_margin'))}."
        )
        return [ReportSection("Immune phenotype", note(text))]

    body = how + pairs + figures + note("Populations more abundant in one group (centred "
                                        "log-ratio of mean shares, patients as units):")
    index = ReportSection("What differs between groups", body + abundances + calls
                          + phenotype_figure)  # fmt: skip
    return ReportPart(index=(index,), per_sample=per_sample)


def comparison_now(
    store: Path | str,
    model_dir: Path | str,
    out: Path,
    progress: Callable[[str, int, int], None] | None,
) -> ReportPart | None:
    """The comparison of the store's ``group`` column, when its samples have one that can be
    compared (two or more groups of two or more patients); None otherwise."""
    from tmescope.analysis.group_compare import check_design
    from tmescope.errors import InvalidParameterError
    from tmescope.fusion.subspot_model import SUBSPOT_DIR, SubspotModel
    from tmescope.jobs.compare import CompareSettings, run_compare
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="r")
    samples = opened.sample_ids()
    metadata = {s: dict(opened.sample_record(s).metadata) for s in samples}
    subject = "patient" if all("patient" in m for m in metadata.values()) else "sample"
    try:
        check_design(samples, metadata, by=REPORT_GROUP_COLUMN, subject=subject)
    except InvalidParameterError as why:
        log.info("no comparison between groups in the report: %s", why)
        return None
    bin_um = SubspotModel.load(Path(model_dir) / SUBSPOT_DIR).bin_um
    settings = CompareSettings(by=REPORT_GROUP_COLUMN, subject=subject, resolution_um=bin_um)
    report = run_compare(store, model_dir, settings=settings, out=out, progress=progress)
    return comparison_section(report)


def _phenotype_table(report: CompareReport) -> str:
    c = report.comparison
    counts: dict[str, dict[str, int]] = {}
    for s in c.samples:
        row = counts.setdefault(str(s["group"]), {})
        row[str(s.get("phenotype"))] = row.get(str(s.get("phenotype")), 0) + 1
    kinds = sorted({k for row in counts.values() for k in row})
    head = "".join(f"<th>{escape(k)}</th>" for k in kinds)
    body = "".join(
        f"<tr><td>{escape(g)}</td>" + "".join(f"<td class='num'>{row.get(k, 0)}</td>"
                                             for k in kinds) + "</tr>"
        for g, row in sorted(counts.items())
    )  # fmt: skip
    from tmescope.analysis.immune_phenotype import DESERT_T, INFLAMED_INFILTRATION, MARGIN_UM

    text = note(
        "Immune phenotype of each section, from where its predicted T cells sit: tumour nests "
        f"are bins whose neighbourhood is mostly tumour, the margin the tissue within "
        f"{MARGIN_UM:g} µm of them; desert when T cells are under {DESERT_T:.0%} of cells over "
        f"both, else inflamed when the T-cell share inside nests is at least "
        f"{INFLAMED_INFILTRATION:g} × that at the margin, excluded below. Sections per group:"
    )
    return text + f"<table><thead><tr><th>group</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"
