"""Figures of a comparison between groups of tumours.

* :func:`plot_differences`: the pairs' effects with their bootstrap intervals, the significant
  ones (q < 0.05) marked, strongest first — what differs between the groups;
* :func:`plot_pair_by_patient`: one pair, one point per patient in each group (its sections as
  small marks beside it), the groups' means: the picture spicyR draws, which shows whether a
  difference rests on every patient or on one;
* :func:`plot_phenotypes`: each section's infiltration score by group, coloured by its call.

Private Agg figures, never pyplot (safe in servers and workers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 150
MAX_ROWS = 20
PHENOTYPE_COLOURS = {"inflamed": "#c0392b", "excluded": "#e67e22", "desert": "#7f8c8d",
                     "no tumour": "#bdc3c7"}  # fmt: skip


def plot_differences(pairs: Sequence[Mapping[str, Any]], out: Path, *, title: str) -> Path:
    """Effects (difference of mean log co-location ratios, first group − second) with their
    intervals for up to :data:`MAX_ROWS` pairs, smallest q first."""
    rows = list(pairs)[:MAX_ROWS]
    fig, ax = _figure(8.0, max(2.8, 0.32 * len(rows) + 1.8))
    if not rows:
        ax.text(0.5, 0.5, "no pair could be tested", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, out)
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows, strict=True):
        significant = row["q"] < 0.05
        colour = "#c0392b" if significant else "#7f8c8d"
        low, high = row.get("low"), row.get("high")
        if low is not None and high is not None:
            ax.plot([low, high], [yi, yi], color=colour, lw=1.6)
        ax.plot([row["effect"]], [yi], "o", color=colour, ms=5 if significant else 4)
    labels = [f"{r['a']} · {r['b']}" + (f"  ({r['groups'][0]} − {r['groups'][1]})"
              if len({tuple(x['groups']) for x in rows}) > 1 else "") +
              f"   q={r['q']:.2g}" for r in rows]  # fmt: skip
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    g1, g2 = rows[0]["groups"]
    ax.set_xlabel(f"effect: mean log co-location ratio, {g1} − {g2}\n"
                  "(patients' means; bars: 95 % bootstrap interval over patients)")  # fmt: skip
    n_sig = sum(r["q"] < 0.05 for r in pairs)
    ax.set_title(f"{title}\n{n_sig} pair(s) at q < 0.05 (red); patients are the units", fontsize=9)
    return _save(fig, out)


def plot_pair_by_patient(
    values: Mapping[str, Any], row: Mapping[str, Any] | None, out: Path, *, pair: tuple[str, str]
) -> Path:
    """One pair's log co-location ratio per patient (large points) and per section (small),
    by group, with each group's mean."""
    patients: Mapping[str, Mapping[str, Any]] = values.get("patients", {})
    sections: Mapping[str, Mapping[str, Any]] = values.get("sections", {})
    groups = sorted({v["group"] for v in patients.values()})
    fig, ax = _figure(max(1.6 * len(groups) + 1.5, 5.5), 4.4)
    rng = np.random.default_rng(0)  # jitter only
    for x, group in enumerate(groups):
        pv = [v["value"] for v in patients.values() if v["group"] == group]
        sv = [v["value"] for v in sections.values() if v["group"] == group]
        ax.scatter(x + 0.18 + rng.uniform(-0.05, 0.05, len(sv)), sv, s=10, color="#95a5a6",
                   label="section" if x == 0 else None, zorder=2)  # fmt: skip
        ax.scatter(x + rng.uniform(-0.08, 0.08, len(pv)), pv, s=40, color="#2c3e50",
                   label="patient (sections averaged)" if x == 0 else None, zorder=3)  # fmt: skip
        if pv:
            ax.plot([x - 0.25, x + 0.25], [np.mean(pv)] * 2, color="#c0392b", lw=2, zorder=4)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(f"log co-location ratio, {pair[0]} · {pair[1]}")
    caption = f"{pair[0]} · {pair[1]}"
    if row is not None:
        caption += (f"\neffect ({' − '.join(row['groups'])}) {row['effect']:+.2f} "
                    f"[{_fmt(row.get('low'))}, {_fmt(row.get('high'))}]\nWelch p={row['p']:.2g},"
                    f" q={row['q']:.2g}; exact permutation p={_fmt(row.get('p_perm'))}")  # fmt: skip
    ax.set_title(caption, fontsize=8)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, out)


def plot_phenotypes(samples: Sequence[Mapping[str, Any]], out: Path, *, threshold: float) -> Path:
    """Each section's infiltration (T in nests / T in margin) by group, coloured by its call;
    ``threshold`` is the rule's line between excluded and inflamed."""
    groups = sorted({str(s["group"]) for s in samples})
    fig, ax = _figure(1.6 * max(len(groups), 2) + 2.0, 4.0)
    rng = np.random.default_rng(0)
    shown: set[str] = set()
    for x, group in enumerate(groups):
        for s in samples:
            if str(s["group"]) != group or s.get("phenotype") is None:
                continue
            value = s.get("phenotype_infiltration")
            call = str(s["phenotype"])
            ax.scatter(x + rng.uniform(-0.15, 0.15), value if value is not None else 0.0, s=30,
                       color=PHENOTYPE_COLOURS.get(call, "black"),
                       label=call if call not in shown else None)  # fmt: skip
            shown.add(call)
    ax.axhline(threshold, color="black", lw=0.8, ls="--")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel("infiltration: T-cell share in nests / in margin")
    ax.set_title("immune phenotype of each section (dashed: inflamed above)", fontsize=9)
    if shown:
        ax.legend(fontsize=7)
    return _save(fig, out)


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _fmt(value: Any) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.2g}"
