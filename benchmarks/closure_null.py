"""Calibration and cost of the closed null for pair statistics on shares.

    python benchmarks/closure_null.py [--seeds 20] [--shifts 99] [--bins 20000] [--json]

Independent smooth random fields on an irregular tissue with holes (about 1,000 bins of 16 µm),
taken as raw abundances and made into shares of 3 and of 9 populations: the share of pairs at
p < 0.05 and the mean and spread of z, under the plain toroidal shift and the closed one (raw
abundances under the plain shift for reference). Independent populations should give 5 % and
z ~ N(0, 1). Then the time of :func:`pair_statistics` on shares of 9 populations at about
``--bins`` locations with 199 shifts, closed over plain (best of two runs each, same shifts).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from tmescope.analysis.interfaces import ClosedShift, PlainShift, ShiftNull, pair_statistics

PITCH = 16.0  # µm, as the sub-spot bins
RADIUS = 30.0
FILL = 0.6  # about the share of the bounding box a tissue below covers


def tissue(rng: np.random.Generator, side: int) -> np.ndarray:
    """Grid cells (i, j) of an irregular section: a wavy outline with four holes."""
    gx, gy = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    centre = (side - 1) / 2
    theta = np.arctan2(gy - centre, gx - centre)
    k = np.arange(1, 5)[:, None, None]
    wave = rng.normal(0, 0.24, (4, 1, 1)) / k * np.cos(k * theta + rng.uniform(0, 6.3, (4, 1, 1)))
    mask = np.hypot(gx - centre, gy - centre) < 0.46 * side * (1 + wave.sum(axis=0))
    for _ in range(4):
        inside = np.argwhere(mask)
        hole = inside[rng.integers(len(inside))]
        mask &= np.hypot(gx - hole[0], gy - hole[1]) > rng.uniform(1.5, 3.5) * side / 40
    return np.argwhere(mask)


def fields(rng: np.random.Generator, cells: np.ndarray, side: int, p: int) -> np.ndarray:
    """``p`` independent smooth positive fields at the cells (exponentiated smoothed noise)."""
    out = []
    for _ in range(p):
        f = gaussian_filter(rng.normal(size=(side, side)), 2.0)
        out.append(np.exp(f / f.std())[cells[:, 0], cells[:, 1]])
    return np.stack(out, axis=1)


def calibration(p: int, seeds: int, shifts: int) -> dict[str, Any]:
    nulls: dict[str, tuple[bool, ShiftNull]] = {
        "raw_plain": (False, PlainShift()),
        "shares_plain": (True, PlainShift()),
        "shares_closed": (True, ClosedShift()),
    }
    found: dict[str, list[np.ndarray]] = {k: [] for k in nulls}
    zs: dict[str, list[np.ndarray]] = {k: [] for k in nulls}
    upper = np.triu_indices(p, 1)
    names = [f"P{i}" for i in range(p)]
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        cells = tissue(rng, 40)
        raw = fields(rng, cells, 40, p)
        shares = raw / raw.sum(axis=1, keepdims=True)
        xy = cells * PITCH
        for key, (closed, null) in nulls.items():
            values = shares if closed else raw
            stats = pair_statistics(
                xy, values, names, radius=RADIUS, n_shifts=shifts, seed=seed, null=null
            )
            found[key].append(stats.pvalue[upper])
            zs[key].append(stats.zscore[upper])
    out: dict[str, Any] = {"populations": p, "seeds": seeds, "pairs": seeds * len(upper[0])}
    for key in nulls:
        pv, z = np.concatenate(found[key]), np.concatenate(zs[key])
        out[key] = {"p_below_0.05": round(float((pv < 0.05).mean()), 4),
                    "z_mean": round(float(z.mean()), 3), "z_sd": round(float(z.std()), 3)}  # fmt: skip
    return out


def timing(bins: int) -> dict[str, Any]:
    side = math.isqrt(round(bins / FILL))
    rng = np.random.default_rng(0)
    cells = tissue(rng, side)
    raw = fields(rng, cells, side, 9)
    shares = raw / raw.sum(axis=1, keepdims=True)
    xy = cells * PITCH
    names = [f"P{i}" for i in range(9)]
    seconds: dict[str, float] = {}
    for _ in range(2):
        for null in (PlainShift(), ClosedShift()):
            start = time.perf_counter()
            pair_statistics(xy, shares, names, radius=RADIUS, n_shifts=199, null=null)
            took = time.perf_counter() - start
            seconds[null.name] = min(seconds.get(null.name, np.inf), took)
    return {"bins": len(xy), "populations": 9, "shifts": 199,
            "plain_s": round(seconds["toroidal"], 3),
            "closed_s": round(seconds["toroidal-closed"], 3),
            "ratio": round(seconds["toroidal-closed"] / seconds["toroidal"], 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="samples per population count")
    parser.add_argument("--shifts", type=int, default=99, help="shifts per sample (calibration)")
    parser.add_argument("--bins", type=int, default=20_000, help="locations for the timing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = {
        "calibration": [calibration(p, args.seeds, args.shifts) for p in (3, 9)],
        "timing": timing(args.bins),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for block in results["calibration"]:
        print(
            f"shares of {block['populations']}: {block['pairs']} pairs over {block['seeds']} seeds"
        )
        for key in ("raw_plain", "shares_plain", "shares_closed"):
            r = block[key]
            print(
                f"  {key:14s} p<0.05 {r['p_below_0.05']:.3f}  z {r['z_mean']:+.2f} ± {r['z_sd']:.2f}"
            )
    t = results["timing"]
    print(f"timing, {t['bins']} bins × 9 populations × 199 shifts: plain {t['plain_s']:.2f} s, "
          f"closed {t['closed_s']:.2f} s, ratio {t['ratio']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
