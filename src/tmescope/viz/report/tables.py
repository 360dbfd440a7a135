"""The cross-validation report of ``tmescope train`` as HTML: models side by side, and per target.

``cv`` is the ``cv`` entry of a model's ``model.json`` (what ``train_model`` reports):
``models → {mean, folds, per_gene, states: {mean, folds, per_state}, coverage_90}``, plus
``folds`` (each with the samples it holds out), ``genes``, ``states``, ``target`` and ``n_spots``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tmescope.viz.report.page import escape

# What each model name stands for, in words a reader of the report can follow.
MODEL_NOTES = {
    "gat": "graph-attention head over each spot and its neighbours (the saved model)",
    "mlp": "two-layer network on the spot alone",
    "ridge": "ridge regression on the spot's embedding (HEST probe)",
    "ridge-cv": "the same with its penalty tuned by inner cross-validation",
    "smooth-ridge": "tuned ridge on embeddings averaged with the neighbours'",
}


def cv_section(cv: Mapping[str, Any]) -> str:
    """What the numbers mean, the comparison table, and per-gene / per-state details."""
    models: Mapping[str, Any] = cv["models"]
    folds = [f"{', '.join(f.get('test', [])) or f['name']}" for f in cv["folds"]]
    genes, states = list(cv.get("genes", [])), list(cv.get("states", []))
    headline = "TME states" if cv.get("target") == "states" else "genes"
    intro = (
        "<p>Each number is a Pearson correlation between predicted and measured values across "
        "the spots of slides the model did not see while learning: each fold trains on the "
        "other slides and tests on the slides named in its column (leave-one-slide-out unless "
        f"folds were given). <b>{escape(headline)}</b> averages over "
        f"{len(genes) if headline == 'genes' else len(states)} targets"
        + (
            " (log1p expression per 10,000 counts of the most variable genes, chosen on the "
            "training slides of each fold)"
            if headline == "genes"
            else ""
        )
        + (
            f"; <b>TME states</b> over the {len(states)} state scores"
            if headline == "genes" and states
            else ""
        )
        + ". 1 is a perfect match, 0 no better than a constant. <b>90% coverage</b> is the "
        "share of held-out values inside the ensemble's 90% interval: near 0.90 means the "
        "uncertainty maps below can be trusted (only ensembles give one). "
        f"{cv.get('n_spots', 0):,} spots in all; the best model is in bold.</p>"
    )
    return (
        intro
        + _comparison_table(models, folds, headline=headline)
        + _legend(models)
        + _details(models, "per_gene", "Pearson per gene")
        + _details(models, "per_state", "Pearson per TME state")
    )


def top_targets(cv: Mapping[str, Any], names: Sequence[str], *, key: str, model: str) -> list[str]:
    """``names`` ordered by ``model``'s cross-validated Pearson (``key``: per_gene/per_state).

    Names the report does not score keep their order, after the scored ones.
    """
    scores = per_target(cv.get("models", {}).get(model, {}), key)

    def rank(name: str) -> float:
        value = _num(scores.get(name))
        return -value if math.isfinite(value) else math.inf

    return sorted(names, key=rank)


def _comparison_table(models: Mapping[str, Any], folds: Sequence[str], *, headline: str) -> str:
    has_states = any("states" in m for m in models.values())
    has_coverage = any("coverage_90" in m for m in models.values())
    header = ["model", f"{headline} (mean r)"]
    header += ["TME states (mean r)"] if has_states else []
    header += [f"held out: {f}" for f in folds]
    header += ["90% coverage"] if has_coverage else []
    best = max(models, key=lambda m: _sortable(models[m].get("mean")), default=None)
    rows = []
    for name, scores in models.items():
        cells = [escape(name), _fmt(scores.get("mean"))]
        if has_states:
            cells.append(_fmt(scores.get("states", {}).get("mean")))
        cells += [_fmt(v) for v in scores.get("folds", [])]
        if has_coverage:
            cells.append(_fmt(scores.get("coverage_90"), digits=2))
        css = ' class="best"' if name == best else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (
        f'<div class="scroll"><table class="cv"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _legend(models: Mapping[str, Any]) -> str:
    items = [
        f"<li><b>{escape(name)}</b>: {escape(MODEL_NOTES[name])}</li>"
        for name in models
        if name in MODEL_NOTES
    ]
    return f'<ul class="legend">{"".join(items)}</ul>' if items else ""


def _details(models: Mapping[str, Any], key: str, label: str) -> str:
    """A folded table: targets × models, best-scored target first."""
    table = {name: per_target(scores, key) for name, scores in models.items()}
    names = list(dict.fromkeys(t for scores in table.values() for t in scores))
    if not names:
        return ""
    first = next(iter(models))
    names.sort(key=lambda t: -_sortable(table[first].get(t)))
    head = "".join(f"<th>{escape(h)}</th>" for h in ["", *models])
    rows = "".join(
        f"<tr><td>{escape(t)}</td>"
        + "".join(f"<td>{_fmt(table[m].get(t))}</td>" for m in models)
        + "</tr>"
        for t in names
    )
    return (
        f"<details><summary>{escape(label)} ({len(names)})</summary>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
        "</table></div></details>"
    )


def per_target(scores: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """Per-gene scores sit at the top; per-state ones under ``states`` when genes come too."""
    if key in scores:
        return dict(scores[key])
    return dict(scores.get("states", {}).get(key, {}))


def _num(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _sortable(value: Any) -> float:
    number = _num(value)
    return number if math.isfinite(number) else -math.inf


def _fmt(value: Any, *, digits: int = 3) -> str:
    number = _num(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "–"
