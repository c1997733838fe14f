"""Type-I error and coverage of the pooled tests across settings, by simulation.

Each scenario simulates ``--studies`` studies of K settings from the mixed model
d_si = effect + u_s + sd_s e_si, u_s ~ N(0, tau^2) (``normlib.stats.simulate_settings``):
few seeds, unequal within-setting sds, settings that differ. Under the null (effect 0) it gives
the one-sided rejection rate at alpha 0.05 of the pooled t-test (the test of record), HKSJ,
DerSimonian-Laird's z, the fixed effect's z and a t-test over all (setting, seed) pairs; at
effect 0.7 the coverage of the pooled t-test's one-sided 95% bound and two-sided 95% interval
and of HKSJ's two-sided interval.

    python bench/across.py [--studies 200000] [--seed 0] [--out PATH]

prints a table and writes bench/results/across.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy

from normlib.stats import TESTS_ACROSS, simulate_settings

RESULTS = Path(__file__).resolve().parent / "results"
ALPHA = 0.05
SCENARIOS = (  # (within-setting sds, seeds per setting, tau)
    ((1.0, 1.0, 1.0, 1.0, 1.0), 5, 0.0),  # homogeneous: the pooled t is exact
    ((0.2, 0.5, 1.0, 2.0, 4.0), 3, 0.0),  # unequal sds only
    ((0.2, 0.5, 1.0, 2.0, 4.0), 3, 1.0),  # unequal sds, settings differ
    ((0.1, 0.1, 0.1, 0.1, 3.0), 3, 0.3),  # four settings whose few seeds agree
    ((0.3, 1.0, 3.0), 3, 1.0),
    ((0.5, 2.0), 3, 0.5),  # K = 2
    ((0.5, 1.0, 2.0, 0.5, 1.0, 2.0, 0.5, 1.0, 2.0, 4.0), 3, 0.5),  # K = 10
)
COVERED = ("pooled_t_bound", "pooled_t_interval", "hksj_interval")


def run(studies: int, seed: int) -> list[dict]:
    rows = []
    for i, (sds, seeds, tau) in enumerate(SCENARIOS):
        null = simulate_settings(sds, seeds, tau, 0.0, ALPHA, studies, seed + 2 * i)
        shifted = simulate_settings(sds, seeds, tau, 0.7, ALPHA, studies, seed + 2 * i + 1)
        rows.append({"K": len(sds), "seeds": seeds, "sds": list(sds), "tau": tau,
                     "rejection": null.rejection, "mc_se": null.mc_se,
                     "coverage": {name: shifted.coverage[name] for name in COVERED}})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "across.json")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args.studies, args.seed)
    elapsed = time.perf_counter() - start
    header = ["K", "seeds", "sds", "tau", *TESTS_ACROSS, *COVERED]
    print("  ".join(header))
    for row in rows:
        sds = "/".join(f"{s:g}" for s in row["sds"])
        cells = [str(row["K"]), str(row["seeds"]), sds, f"{row['tau']:g}"]
        cells += [f"{row['rejection'][t]:.4f}" for t in TESTS_ACROSS]
        cells += [f"{row['coverage'][c]:.4f}" for c in COVERED]
        print("  ".join(cells))
    se = max(max(row["mc_se"].values()) for row in rows)
    print(f"{len(rows)} scenarios x 2 x {args.studies} studies in {elapsed:.1f} s; "
          f"Monte Carlo standard error of a rate <= {se:.4f}")  # fmt: skip
    payload = {
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "scipy": scipy.__version__, "date": time.strftime("%Y-%m-%d")},
        "alpha": ALPHA, "studies": args.studies, "seed": args.seed, "rows": rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
