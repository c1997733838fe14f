"""Operating characteristics of the group-sequential paired design, by simulation.

For each spending function, with looks [5, 10, 15, 20] and one-sided alpha 0.05, the design
effect delta is the d_z the efficacy boundaries detect with 80% power (``detectable_effect``)
and min_effect = delta for the conditional-power futility rule. Each scenario simulates
``--studies`` studies of the t-based procedure (``normlib.stats.simulation.simulate``): the null
with normal and t(3) differences, delta and 2 delta, with and without the futility rule.
``fixed`` is the fixed paired t-test with the power the design has at delta (simulated);
ratio = mean seeds / fixed.

    python bench/sequential.py [--studies 200000] [--seed 0] [--out PATH]

prints a table and writes bench/results/sequential.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy

from normlib.stats import SPENDINGS, SequentialDesign, detectable_effect, seeds_needed, simulate

RESULTS = Path(__file__).resolve().parent / "results"
LOOKS = (5, 10, 15, 20)
ALPHA = 0.05
COLUMNS = ("spending", "futility", "scenario", "rejection", "mc_se", "mean_seeds", "fixed",
           "ratio")


def run(studies: int, seed: int) -> list[dict]:
    rows = []
    for spending in SPENDINGS:
        delta = detectable_effect(SequentialDesign(LOOKS, ALPHA, spending), 0.8)
        for futility in (None, "conditional_power"):
            design = SequentialDesign(LOOKS, ALPHA, spending, min_effect=delta,
                                      futility=futility)
            scenarios = [("null normal", 0.0, "normal"), ("null t3", 0.0, "t3"),
                         ("delta", delta, "normal"), ("2 delta", 2 * delta, "normal")]
            results = {name: simulate(design, effect, 1.0, studies, noise, seed + i)
                       for i, (name, effect, noise) in enumerate(scenarios)}
            fixed = seeds_needed(delta, ALPHA, results["delta"].rejection_rate)
            for name, r in results.items():
                rows.append({
                    "spending": spending,
                    "futility": futility or "none",
                    "scenario": name,
                    "delta": delta,
                    "rejection": r.rejection_rate,
                    "mc_se": r.mc_se,
                    "mean_seeds": r.mean_seeds,
                    "fixed": fixed,
                    "ratio": r.mean_seeds / fixed,
                    "actions": r.actions,
                })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "sequential.json")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args.studies, args.seed)
    elapsed = time.perf_counter() - start
    widths = [14, 17, 11, 9, 7, 10, 5, 6]
    print("  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for row in rows:
        cells = [row["spending"], row["futility"], row["scenario"], f"{row['rejection']:.4f}",
                 f"{row['mc_se']:.4f}", f"{row['mean_seeds']:.2f}", str(row["fixed"]),
                 f"{row['ratio']:.3f}"]
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    print(f"{len(rows)} scenarios x {args.studies} studies in {elapsed:.1f} s")
    payload = {
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "scipy": scipy.__version__, "date": time.strftime("%Y-%m-%d")},
        "looks": list(LOOKS), "alpha": ALPHA, "studies": args.studies, "seed": args.seed,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
