"""Comparing groups of tumours: power, calibration, phenotype calls and the oracle, over seeds.

    python benchmarks/compare.py [--seeds 10] [--spots 1000] [--work DIR] [--json]

Each seed writes one synthetic cohort of 14 patients × 2 sections (``--spots`` spots each),
phenotypes planted in turn as ``inflamed, excluded, inflamed, excluded, inflamed, excluded,
desert``: 6 inflamed, 6 excluded and 2 desert patients. Embedded with ``test-vit-tiny``; the
sub-spot model (16 µm, the cohort's reference; a ridge spot head, one member: the maps are what
is compared) is trained on 10 patients (5 inflamed, 5 excluded); one inflamed and one excluded
patient and both deserts are held out of training altogether. Then:

- **power**: ``compare --by group`` on the 12 inflamed / excluded patients (24 sections, 6 vs 6):
  is the planted pair (T cells with tumour) at q < 0.05, higher in inflamed?
- **calibration**: the same sections grouped so that each group holds half of each phenotype's
  patients (no true difference): the share of pairs with p < 0.05 (Welch, and the exact
  permutation p), the seeds with any q < 0.05, and the naive bin-level test's share beside them;
- **phenotype calls** from the maps of all 28 sections against the planted truth, for sections
  used in training and for held-out ones;
- **oracle**: the same comparison on the true cells (positions and one-hot types, what spicyR
  would see) with the planted grouping; every pair's effect from the maps beside the cells'.

With ``--scale DIR`` (``benchmarks/cohort_scale.py``'s results: a store of N samples with saved
16 µm maps and a model), it also measures on that cohort, whose patients carry no planted
difference:

- **cost**: ``compare`` of its N samples (maps already saved by ``interactions``), wall time
  and peak memory in a child process;
- **calibration over every relabelling**: the samples' summaries computed once, then every
  split of the patients into two equal groups compared (126 splits for 10 patients): the share
  of splits with any q < 0.05 and of pairs with p < 0.05, Welch's, the permutation's and the
  naive test's.

Everything a seed computes is kept under ``--work`` (default benchmarks/results/compare): a
killed run resumes at the first seed without a ``result.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

PATTERN = ("inflamed", "excluded") * 3 + ("desert",)
N_PATIENTS = 14
HELD_OUT_PATIENTS = (6, 11, 12, 13)  # a desert, an inflamed, an excluded, a desert
PLANTED = {"t_cell", "tumour"}
BASE_SEED = 500


def run_seed(seed: int, *, spots: int, work: Path) -> dict[str, Any]:
    """One cohort, start to end; its figures (cached in ``work/result.json``)."""
    done = work / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    from tmescope.jobs.compare import CompareSettings, run_compare
    from tmescope.jobs.embed_sheet import samplesheet_inputs
    from tmescope.jobs.synth import synthesize_cohort
    from tmescope.jobs.train import TrainSettings, train_model
    from tmescope.store import CohortStore
    from tmescope.workflows import embed_samples

    syn, store, model = work / "syn", work / "c.zarr", work / "model"
    sheet = syn / "samplesheet.csv"
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    if not sheet.is_file():
        synthesize_cohort(syn, n_samples=2 * N_PATIENTS, n_spots=spots, seed=seed,
                          phenotypes=list(PATTERN))  # fmt: skip
    clock["synth_s"] = time.perf_counter() - t0
    rows = list(csv.DictReader(sheet.open()))
    t0 = time.perf_counter()
    embed_samples(samplesheet_inputs(sheet), store=store, encoder="test-vit-tiny", device="cpu")
    clock["embed_s"] = time.perf_counter() - t0
    held = [r["sample"] for r in rows if _patient_index(r) in HELD_OUT_PATIENTS]
    if not (model / "model.json").is_file():
        t0 = time.perf_counter()
        settings = TrainSettings(
            models=("ridge",), n_members=1, cv_members=1, device="cpu", n_genes=20,
            reference=syn / "reference.h5ad", resolution_um=16.0, holdout=tuple(held),
        )  # fmt: skip
        train_model(store, model, settings=settings)
        clock["train_s"] = time.perf_counter() - t0
    planted_sheet = _sheet(sheet, syn / "planted.csv", rows, lambda r: r["phenotype"],
                           keep=lambda r: r["phenotype"] != "desert")  # fmt: skip
    cross = _cross_groups(rows)
    cross_sheet = _sheet(sheet, syn / "cross.csv", rows, lambda r: cross[r["patient"]],
                         keep=lambda r: r["phenotype"] != "desert")  # fmt: skip
    t0 = time.perf_counter()
    everything = run_compare(store, model, settings=CompareSettings(by="group"))
    clock["compare_all_s"] = time.perf_counter() - t0  # maps predicted and saved in this one
    t0 = time.perf_counter()
    planted = run_compare(store, model, settings=CompareSettings(by="group"),
                          samplesheet=planted_sheet)  # fmt: skip
    clock["compare_s"] = time.perf_counter() - t0  # maps saved: the cost after interactions
    crossed = run_compare(store, model, settings=CompareSettings(by="group"),
                          samplesheet=cross_sheet)  # fmt: skip
    oracle = _oracle(syn, [r for r in rows if r["phenotype"] != "desert"])
    truth = {r["sample"]: r["phenotype"] for r in rows}
    calls = [
        {"sample": s["sample"], "truth": truth[s["sample"]], "call": s["phenotype"],
         "held_out": s["sample"] in held, "infiltration": s.get("phenotype_infiltration"),
         "t_density": s.get("phenotype_t_density")}
        for s in everything.comparison.samples
    ]  # fmt: skip
    oracle_calls = [{"sample": s["sample"], "truth": truth[s["sample"]], "call": s["phenotype"]}
                    for s in oracle.samples]  # fmt: skip
    result = {
        "seed": seed,
        "n_sections": len(rows),
        "store": str(CohortStore.open(store, mode="r").path),
        "planted": _pick(planted.comparison.pairs),
        "oracle_planted": _pick(oracle.pairs),
        "pairs_maps": _effects(planted.comparison.pairs),
        "pairs_oracle": _effects(oracle.pairs),
        "cross_p": [p["p"] for p in crossed.comparison.pairs],
        "cross_p_perm": [p["p_perm"] for p in crossed.comparison.pairs],
        "cross_q": [p["q"] for p in crossed.comparison.pairs],
        "cross_naive_p": [p["naive_p"] for p in crossed.comparison.pairs],
        "planted_naive_p": [p["naive_p"] for p in planted.comparison.pairs],
        "calls": calls,
        "oracle_calls": oracle_calls,
        **{k: round(v, 1) for k, v in clock.items()},
    }
    done.write_text(json.dumps(result, indent=1))
    return result


def _patient_index(row: dict[str, str]) -> int:
    return int(row["patient"].split("_")[-1])


def _sheet(source: Path, out: Path, rows: list[dict[str, str]], group: Any, *, keep: Any) -> Path:
    kept = [dict(r, group=group(r)) for r in rows if keep(r)]
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    assert out.parent == source.parent  # relative paths stay right
    return out


def _cross_groups(rows: list[dict[str, str]]) -> dict[str, str]:
    """Half of each phenotype's patients in A, half in B: groups with no true difference."""
    by_phenotype: dict[str, list[str]] = {}
    for r in rows:
        patients = by_phenotype.setdefault(r["phenotype"], [])
        if r["patient"] not in patients:
            patients.append(r["patient"])
    label = {}
    for patients in by_phenotype.values():
        for i, p in enumerate(sorted(patients)):
            label[p] = "A" if i < len(patients) / 2 else "B"
    return label


def _oracle(syn: Path, rows: list[dict[str, str]]) -> Any:
    """The comparison on the true cells of each section (one-hot types), planted groups."""
    import anndata as ad
    import pandas as pd

    from tmescope.workflows import compare_adatas, one_hot_types

    adatas = []
    for r in rows:
        cells = pd.read_csv(syn / r["sample"] / "cells.csv")
        adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(cells))]))
        adata.obsm["spatial"] = cells[["x", "y"]].to_numpy(float)
        adata.obsm["populations"] = one_hot_types(cells["cell_type"], index=adata.obs_names)
        adata.uns.update(sample_id=r["sample"], patient=r["patient"], group=r["phenotype"])
        adatas.append(adata)
    names = sorted({c for a in adatas for c in a.obsm["populations"].columns})
    for a in adatas:  # every section with every type, in one order
        a.obsm["populations"] = a.obsm["populations"].reindex(columns=names, fill_value=0.0)
    return compare_adatas(adatas, by="group", um_per_px=0.5)


def _pick(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    row = next((p for p in pairs if {p["a"], p["b"]} == PLANTED), {})
    return {k: row.get(k) for k in ("effect", "low", "high", "p", "p_perm", "q", "higher_in")}


def _effects(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"|".join(sorted((p["a"], p["b"]))): [p["effect"], p["q"]] for p in pairs}


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    power = [r["planted"]["q"] is not None and r["planted"]["q"] < 0.05
             and r["planted"]["higher_in"] == "inflamed" for r in results]  # fmt: skip
    cross_p = np.array([p for r in results for p in r["cross_p"]], float)
    cross_perm = np.array([p for r in results for p in r["cross_p_perm"]], float)
    naive = np.array([p if p is not None else np.nan for r in results
                      for p in r["cross_naive_p"]], float)  # fmt: skip
    calls = [c for r in results for c in r["calls"]]
    oracle_calls = [c for r in results for c in r["oracle_calls"]]

    def accuracy(items: list[dict[str, Any]]) -> float | None:
        return round(float(np.mean([c["call"] == c["truth"] for c in items])), 4) if items else None

    by_truth = {t: accuracy([c for c in calls if c["truth"] == t])
                for t in ("inflamed", "excluded", "desert")}  # fmt: skip
    maps_e, oracle_e, agree, agree_sig = [], [], [], []
    for r in results:
        for key, (effect, _) in r["pairs_maps"].items():
            if key in r["pairs_oracle"] and effect is not None:
                o, oracle_q = r["pairs_oracle"][key]
                maps_e.append(effect)
                oracle_e.append(o)
                agree.append(np.sign(effect) == np.sign(o))
                if oracle_q is not None and oracle_q < 0.05:
                    agree_sig.append(np.sign(effect) == np.sign(o))
    oracle_sig = [(r["pairs_maps"].get(k, [None, None])[1], v[1]) for r in results
                  for k, v in r["pairs_oracle"].items()]  # fmt: skip
    found = [m is not None and m < 0.05 for m, o in oracle_sig if o is not None and o < 0.05]
    keys = sorted({k for r in results for k in r["pairs_oracle"]})
    side_by_side = {}
    for key in keys:
        m = [r["pairs_maps"][key] for r in results if r["pairs_maps"].get(key, [None])[0] is not None]
        o = [r["pairs_oracle"][key] for r in results if key in r["pairs_oracle"]]
        side_by_side[key] = {
            "maps_effect": round(float(np.mean([e for e, _ in m])), 3) if m else None,
            "oracle_effect": round(float(np.mean([e for e, _ in o])), 3) if o else None,
            "maps_q05_seeds": sum(q is not None and q < 0.05 for _, q in m),
            "oracle_q05_seeds": sum(q is not None and q < 0.05 for _, q in o),
        }
    return {
        "seeds": n,
        "power": round(float(np.mean(power)), 3),
        "planted_q": [r["planted"]["q"] for r in results],
        "planted_effect_maps": [r["planted"]["effect"] for r in results],
        "planted_effect_oracle": [r["oracle_planted"]["effect"] for r in results],
        "calibration_p05": round(float(np.mean(cross_p < 0.05)), 4),
        "calibration_p_perm05": round(float(np.mean(cross_perm < 0.05)), 4),
        "calibration_seeds_with_q05": int(sum(any(q < 0.05 for q in r["cross_q"]) for r in results)),
        "calibration_naive_p05": round(float(np.nanmean(naive < 0.05)), 4),
        "phenotype_accuracy": accuracy(calls),
        "phenotype_accuracy_training": accuracy([c for c in calls if not c["held_out"]]),
        "phenotype_accuracy_held_out": accuracy([c for c in calls if c["held_out"]]),
        "phenotype_accuracy_by_truth": by_truth,
        "phenotype_accuracy_oracle_cells": accuracy(oracle_calls),
        "oracle_effect_pearson": round(float(np.corrcoef(maps_e, oracle_e)[0, 1]), 3)
        if len(maps_e) > 2 else None,
        "oracle_sign_agreement": round(float(np.mean(agree)), 3) if agree else None,
        "oracle_sign_agreement_where_cells_differ": round(float(np.mean(agree_sig)), 3)
        if agree_sig else None,
        "oracle_significant_found_by_maps": round(float(np.mean(found)), 3) if found else None,
        "oracle_significant_pairs": len(found),
        "compare_s_median": float(np.median([r["compare_s"] for r in results])),
        "pairs_side_by_side": side_by_side,
    }


MAX_SPLITS = 500  # past this many splits of the patients, a seeded sample of them


def scale_figures(scale: Path, n: int, model: Path | None = None) -> dict[str, Any]:
    """Cost and relabelling calibration on the scale benchmark's ``n``-sample cohort (every
    split of its patients in two, or :data:`MAX_SPLITS` of them drawn at random)."""
    import itertools
    import subprocess
    import sys

    from tmescope.analysis.group_compare import compare_groups
    from tmescope.jobs.compare import CompareSettings, CompareTask, summarise_stored_sample

    store = scale / f"store_{n}.zarr"
    model = model or scale / f"n{n}" / "model"
    source = scale / "cohort_40x4000" / "samplesheet.csv"
    rows = list(csv.DictReader(source.open()))[:n]
    sheet = source.with_name(f"samplesheet_{n}_groups.csv")
    with sheet.open("w", newline="") as handle:  # a grouping for the cost run: patients' parity
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "group"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(dict(r, group="AB"[_patient_index(r) % 2]) for r in rows)
    out = scale / f"compare_{n}"
    command = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "tmescope", "compare",
               str(store), str(model), "--by", "group", "--samplesheet", str(sheet),
               "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall, rss_kb = done.stderr.strip().splitlines()[-1].split()
    task = CompareTask(store=store, model_dir=model, settings=CompareSettings(by="group"),
                       keep=False)  # fmt: skip
    summaries = [summarise_stored_sample(r["sample"], task) for r in rows]
    patients = sorted({r["patient"] for r in rows})
    half = len(patients) // 2
    any_q, p05, perm05, naive05, tests = 0, 0, 0, 0, 0
    splits = [c for c in itertools.combinations(patients, half) if patients[0] in c]
    if len(splits) > MAX_SPLITS:
        picked = np.random.default_rng(0).choice(len(splits), MAX_SPLITS, replace=False)
        splits = [splits[i] for i in sorted(picked)]
    for chosen in splits:
        meta = {r["sample"]: {"patient": r["patient"],
                              "group": "A" if r["patient"] in chosen else "B"} for r in rows}
        pairs = compare_groups(summaries, meta, by="group").pairs
        any_q += any(p["q"] < 0.05 for p in pairs)
        p05 += sum(p["p"] < 0.05 for p in pairs)
        perm05 += sum(p["p_perm"] < 0.05 for p in pairs)
        naive05 += sum(p["naive_p"] is not None and p["naive_p"] < 0.05 for p in pairs)
        tests += len(pairs)
    return {
        "scale_samples": n,
        "scale_model": str(model),
        "scale_compare_s": float(wall),
        "scale_compare_peak_rss_mb": round(int(rss_kb) / 1024),
        "scale_splits": len(splits),
        "scale_splits_with_q05": round(any_q / len(splits), 4),
        "scale_p05": round(p05 / tests, 4),
        "scale_p_perm05": round(perm05 / tests, 4),
        "scale_naive_p05": round(naive05 / tests, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--spots", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/compare"))
    parser.add_argument("--scale", type=Path, default=None,
                        help="benchmarks/cohort_scale.py's results folder (store_N.zarr, nN/model)")
    parser.add_argument("--scale-samples", type=int, default=20)
    parser.add_argument("--scale-model", type=Path, default=None,
                        help="the model (default: the scale benchmark's nN/model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.scale is not None:
        figures = scale_figures(args.scale, args.scale_samples, args.scale_model)
        print(json.dumps(figures, indent=1), flush=True)
        (args.work / f"scale_{args.scale_samples}.json").parent.mkdir(parents=True, exist_ok=True)
        (args.work / f"scale_{args.scale_samples}.json").write_text(json.dumps(figures, indent=1))
    results = []
    for k in range(args.seeds):
        work = args.work / f"seed_{k:02d}"
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        results.append(run_seed(BASE_SEED + k, spots=args.spots, work=work))
        print(f"seed {k}: planted q {results[-1]['planted']['q']}, "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    if not results:
        return
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "spots": args.spots,
        **summarise(results),
    }
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1) if args.json else
          "\n".join(f"{k}: {v}" for k, v in summary.items()))  # fmt: skip


if __name__ == "__main__":
    main()
