"""What MLflow tracking of models and system metrics costs a study (issue 27).

Runs ``normstudy run quickstart`` as a user runs it (the installed command, a fresh temporary
folder each time) in interleaved rounds, one run of every mode per round, the modes' order
rotating from round to round, so a machine shared with other work loads every mode alike:

* ``on``: the defaults (``tracking.log_model: best``, ``tracking.system_metrics: true``);
* ``off``: ``--set tracking.log_model=none --set tracking.system_metrics=false``;
* ``models`` / ``system``: only one of the two on;
* ``before``: the source tree of ``--before REF`` (``git archive``, put first on PYTHONPATH;
  the same virtualenv), the code as it was before issue 27 (d2131e4 by default).

Each run gives the study time the command prints (``study 'quickstart' done in Ns``, whole
seconds: Ray's start to the models logged), the wall time of the whole command (start-up,
Ray, the study, the comparison) and the CPU seconds of every process it started (the driver,
Ray's daemons and workers, the trials: a wrapper is their subreaper and reaps each one, so
``getrusage`` of its children holds them all), with the 1-minute load average at its start.
On a machine other work loads, the wall times move with that work; the CPU seconds measure
what the study itself asked of the machine, so they tell the modes apart where the wall
times cannot.

    python bench/tracking.py [--rounds 3] [--modes on,off] [--before REF] [--out PATH]

prints every run and a table of medians, and writes bench/results/tracking.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python bench/tracking.py` from anywhere

from bench._common import RESULTS, print_table  # noqa: E402

NORMSTUDY = str(Path(sys.executable).parent / "normstudy")
OFF_MODELS = ["--set", "tracking.log_model=none"]
OFF_SYSTEM = ["--set", "tracking.system_metrics=false"]
MODES: dict[str, list[str]] = {
    "on": [],
    "off": [*OFF_MODELS, *OFF_SYSTEM],
    "models": OFF_SYSTEM,  # models logged, no system metrics
    "system": OFF_MODELS,  # system metrics, no models
    "before": [],
}
DONE = re.compile(r"study '[^']+' done in (\d+)s")
# The wrapper of one measured run: the subreaper of everything the command starts (Ray's
# workers outlive their parents), it waits for all of them, so RUSAGE_CHILDREN counts all.
MEASURE = """
import ctypes, json, os, resource, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - started
left, deadline = 0, time.monotonic() + 120
while True:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid == 0:
        if time.monotonic() > deadline:
            left = 1  # something still runs: its CPU is not counted
            break
        time.sleep(0.05)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": done.returncode, "out": done.stdout, "err": done.stderr[-3000:],
                  "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "left": left}))
"""


def before_tree(ref: str, work: Path) -> Path:
    """The repository's ``studies`` and ``normlib`` packages at ``ref``, extracted under
    ``work`` (nothing in the repository changes)."""
    tree = work / f"tree-{ref}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "studies", "normlib"],
                             capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def one_run(mode: str, work: Path, tree: Path | None) -> dict[str, Any]:
    """``normstudy run quickstart`` in a fresh folder under ``work``: study and wall seconds."""
    folder = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=work))
    env = dict(os.environ)
    if mode == "before" and tree is not None:
        env["PYTHONPATH"] = str(tree)
    load = os.getloadavg()[0]
    measured = subprocess.run([sys.executable, "-c", MEASURE, NORMSTUDY, "run", "quickstart",
                               *MODES[mode]], cwd=folder, env=env, capture_output=True,
                              text=True, check=True)  # fmt: skip
    done = json.loads(measured.stdout.strip().splitlines()[-1])
    found = DONE.search(done["out"])
    if done["code"] != 0 or found is None:
        raise SystemExit(f"{mode}: exit {done['code']}\n{done['out'][-2000:]}{done['err']}")
    if tree is not None and mode == "before" and str(tree) not in _imported_from(env, folder):
        raise SystemExit(f"before: the tree at {tree} was not imported")
    return {"mode": mode, "study_s": int(found.group(1)), "wall_s": done["wall"],
            "cpu_s": done["cpu"], "uncounted": done["left"], "load": load}  # fmt: skip


def _imported_from(env: dict[str, str], cwd: Path) -> str:
    """Where ``studies`` is imported from with ``env`` (the before tree is checked once)."""
    return subprocess.run([sys.executable, "-c", "import studies; print(studies.__file__)"],
                          env=env, cwd=cwd, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def summary(runs: list[dict[str, Any]], modes: list[str]) -> list[dict[str, Any]]:
    """Median study, wall and CPU seconds per mode, and their ratios to the last mode's."""
    rows = []
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        rows.append({"mode": mode, "runs": len(mine),
                     "study_s": statistics.median(r["study_s"] for r in mine),
                     "study_mean": statistics.mean(r["study_s"] for r in mine),
                     "wall_s": statistics.median(r["wall_s"] for r in mine),
                     "cpu_s": statistics.median(r["cpu_s"] for r in mine),
                     "load": statistics.median(r["load"] for r in mine)})  # fmt: skip
    ref = rows[-1]
    for row in rows:
        row["study_ratio"] = row["study_mean"] / ref["study_mean"]  # whole seconds: the means
        row["wall_ratio"] = row["wall_s"] / ref["wall_s"]
        row["cpu_ratio"] = row["cpu_s"] / ref["cpu_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode")
    parser.add_argument("--modes", default="on,off",
                        help=f"comma-separated, of {sorted(MODES)}; ratios are to the last")
    parser.add_argument("--before", default="d2131e4", help="the commit of mode 'before'")
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "tracking.json")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; choose from {sorted(MODES)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    work.mkdir(parents=True, exist_ok=True)
    tree = before_tree(args.before, work) if "before" in modes else None
    runs = []
    for round_ in range(args.rounds):
        shift = round_ % len(modes)
        for mode in modes[shift:] + modes[:shift]:  # each mode goes first in turn
            runs.append(one_run(mode, work, tree))
            print(json.dumps({"round": round_, **runs[-1]}), flush=True)
    rows = summary(runs, modes)
    print_table([("mode", ""), ("runs", "d"), ("study_s", ".1f"), ("study_mean", ".1f"),
                 ("study_ratio", ".3f"),
                 ("wall_s", ".1f"), ("wall_ratio", ".3f"), ("cpu_s", ".1f"),
                 ("cpu_ratio", ".3f"), ("load", ".1f")], rows)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu_count": os.cpu_count(), "rounds": args.rounds,
                                    "before": args.before if tree else None, "runs": runs,
                                    "summary": rows}, indent=1) + "\n")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
