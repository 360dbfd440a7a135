"""The files of ``tmescope compare --out DIR``, written in a hidden folder and put in place whole.

::

    DIR/comparison.json     everything below, and the settings
    DIR/pairs.csv           one row per pair (and contrast): effect, interval, p, p_perm, q, …
    DIR/abundances.csv      one row per population (and contrast), centred log-ratios
    DIR/samples.csv         one row per section: group, patient, immune phenotype and its scores
    DIR/differences.png     the pairs' effects with intervals, significant ones marked
    DIR/pair_<A>__<B>.png   a pair patient by patient (the --pair ones, else the 3 smallest q)
    DIR/phenotypes.png      each section's infiltration score and call, by group
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tmescope.jobs.compare import CompareReport


def write_outputs(report: CompareReport, out: Path) -> CompareReport:
    """Write the comparison's files to ``out`` (replacing a previous comparison's folder)."""
    from tmescope.store.atomic import write_atomically

    def write(work: Path) -> list[Path]:
        work.mkdir(parents=True)
        figures = _figures(report, work)
        c = report.comparison
        _csv(work / "pairs.csv", [_flat(r) for r in c.pairs])
        _csv(work / "abundances.csv", [_flat(r) for r in c.abundances])
        _csv(work / "samples.csv", [_flat(r) for r in c.samples])
        final = [out / p.name for p in figures]
        body = replace(report, out=out, figures=tuple(final)).to_json()
        text = json.dumps(body, indent=2, allow_nan=False) + "\n"
        (work / "comparison.json").write_text(text, encoding="utf-8")
        return final

    final = write_atomically(out, write)
    return replace(report, out=out, figures=tuple(final))


def _figures(report: CompareReport, work: Path) -> list[Path]:
    from tmescope.analysis.immune_phenotype import INFLAMED_INFILTRATION
    from tmescope.jobs.compare import pairs_to_plot
    from tmescope.viz.compare_plots import plot_differences, plot_pair_by_patient, plot_phenotypes

    c = report.comparison
    title = f"What differs between the groups of {c.by!r} ({', '.join(c.groups)})"
    figures = [plot_differences(c.pairs, work / "differences.png", title=title)]
    for a, b in pairs_to_plot(report):
        key = f"{a}|{b}" if f"{a}|{b}" in c.patient_values else f"{b}|{a}"
        row = next((r for r in c.pairs if {r["a"], r["b"]} == {a, b}), None)
        figures.append(
            plot_pair_by_patient(c.patient_values.get(key, {}), row,
                                 work / f"pair_{_safe(a)}__{_safe(b)}.png", pair=(a, b))
        )  # fmt: skip
    if any(s.get("phenotype") is not None for s in c.samples):
        figures.append(
            plot_phenotypes(c.samples, work / "phenotypes.png", threshold=INFLAMED_INFILTRATION)
        )
    return figures


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with its per-group dicts spread into columns (``mean_share_<group>``) and its
    lists joined (``groups``: ``A vs B``)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            for k, v in value.items():
                flat[f"{key}_{k}"] = v
        elif isinstance(value, list | tuple):
            flat[key] = " vs ".join(map(str, value))
        else:
            flat[key] = value
    return flat


def _csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
