"""How fast the commands that do not train answer: wall time and peak memory.

Each command runs as a user runs it (the installed ``normstudy``, a fresh process) in a work
folder that holds the quickstart's results, copies of them (``--copies``, default 9: ten
studies in storage for ``list``) and a study of ``--large`` minimal trials (default 1,000;
0 skips it; bench/scale.py's spec). The first run of each command is a warm-up (it fills
normstudy's cache, as a user's first call does), then ``--repeats`` runs (default 5) give
the median wall time and the largest peak resident memory (the command's process and its
children, from ``getrusage`` of a wrapper process per run); ``ray`` says whether the command
started a local Ray (its session folder under the run's own ``TMPDIR``).

    python bench/cli.py [--work DIR] [--large 1000] [--copies 9] [--repeats 5] [--out PATH]

prints a table and writes bench/results/cli.json. Targets (issue 29, a 2-core machine):
``list`` < 1 s and < 250 MB, ``validate`` of a catalog spec < 2 s, ``compare`` of the
quickstart < 2 s and of 1,000 trials < 5 s, ``resume`` of a finished study < 2 s without
Ray, ``<command> --help`` < 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python bench/cli.py` from anywhere

from bench._common import RESULTS, machine, print_table  # noqa: E402
from bench.scale import study_spec  # noqa: E402

NORMSTUDY = str(Path(sys.executable).parent / "normstudy")
COMMANDS = ("run", "resume", "compare", "list", "validate", "ui", "sync", "best")
# One wrapper process per measured run: its only child is the command, so the children's
# ru_maxrss is the command's peak (kB on Linux).
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
wall = time.perf_counter() - started
print(json.dumps({"code": code, "wall": wall,
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measure(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """One run of ``argv`` in ``cwd``: exit code, wall seconds, peak RSS in MB."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *argv], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(label: str, argv: list[str], cwd: Path, env: dict[str, str], repeats: int,
          target_s: float, target_mb: float | None = None) -> dict[str, Any]:  # fmt: skip
    """A warm-up, then ``repeats`` runs: the median wall time and the largest peak RSS."""
    measure(argv, cwd, env)
    runs = [measure(argv, cwd, env) for _ in range(repeats)]
    wall = statistics.median(r["wall"] for r in runs)
    rss = max(r["rss_mb"] for r in runs)
    met = wall < target_s and (target_mb is None or rss < target_mb)
    target = f"< {target_s:g} s" + (f", < {target_mb:g} MB" if target_mb else "")
    row = {"command": label, "wall_s": wall, "rss_mb": rss, "exit": runs[0]["code"],
           "target": target, "met": "yes" if met else "NO"}  # fmt: skip
    print(f"  {label}: {wall:.2f} s, {rss:.0f} MB", flush=True)
    return row


def prepare(work: Path, env: dict[str, str], large: int, copies: int) -> Path:
    """The results folder: the quickstart, its copies, the large study (each run once)."""
    storage = work / "normstudy-results"
    if not (storage / "quickstart" / "comparison" / "comparison.csv").is_file():
        print("running the quickstart (once) ...", flush=True)
        subprocess.run([NORMSTUDY, "run", "quickstart"], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    for i in range(1, copies + 1):
        copy = storage / f"quickstart-copy{i}"
        if not copy.exists():
            shutil.copytree(storage / "quickstart", copy)
    if large and not (storage / f"large{large}" / "comparison").is_dir():
        print(f"running a study of {large} minimal trials (once) ...", flush=True)
        spec = work / f"large{large}.yaml"
        spec.write_text(yaml.safe_dump(study_spec(f"large{large}", large), sort_keys=False))
        subprocess.run([NORMSTUDY, "run", str(spec)], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    return storage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="keep the studies here")
    parser.add_argument("--large", type=int, default=1000, help="trials of the large study")
    parser.add_argument("--copies", type=int, default=9, help="copies of the quickstart")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-cli-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAY_ADDRESS": "local", "NORMSTUDY_CACHE_DIR": str(work / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    prepare(work, env, args.large, args.copies)

    rows = []
    helps = [timed(f"{c} --help", [NORMSTUDY, c, "--help"], work, env, args.repeats, 0.3)
             for c in COMMANDS]  # fmt: skip
    rows.append(max(helps, key=lambda row: row["wall_s"]) | {"command": "<command> --help "
                                                              "(slowest)"})  # fmt: skip
    plan = [
        ("list", ["list"], 1.0, 250.0),
        ("validate quickstart", ["validate", "quickstart"], 2.0, None),
        ("validate enorm-fc-cifar10 --smoke", ["validate", "enorm-fc-cifar10", "--smoke"],
         2.0, None),
        ("compare quickstart --no-log", ["compare", "quickstart", "--no-log"], 2.0, None),
        ("resume quickstart (finished)", ["resume", "quickstart"], 2.0, None),
    ]
    if args.large:
        plan.append((f"compare large{args.large} --no-log",
                     ["compare", f"large{args.large}", "--no-log"], 5.0, None))  # fmt: skip
    for label, argv, target_s, target_mb in plan:
        # a Ray the command starts puts its session folders under TMPDIR/ray: seen, not guessed
        ray_tmp = work / "tmp" / argv[0]
        ray_tmp.mkdir(parents=True, exist_ok=True)
        row = timed(label, [NORMSTUDY, *argv], work, {**env, "TMPDIR": str(ray_tmp)},
                    args.repeats, target_s, target_mb)  # fmt: skip
        row["ray"] = "started" if (ray_tmp / "ray").exists() else "no"
        if argv[0] == "resume" and row["ray"] != "no":
            row["met"] = "NO"
        rows.append(row)
    print()
    print_table([("command", "s"), ("wall_s", ".2f"), ("rss_mb", ".0f"), ("exit", "d"),
                 ("ray", "s"), ("target", "s"), ("met", "s")], rows)  # fmt: skip
    path = args.out or RESULTS / "cli.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(torch.device("cpu")), "repeats": args.repeats,
               "large": args.large, "copies": args.copies, "rows": rows}  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
