"""The rows for docs/benchmarks.md from the JSON files of a benchmark run.

Reads ``epoch.json``, ``methods.json`` and ``packing.json`` from ``--results`` (default
bench/results) and prints, per file found, a Markdown table in the layout of
docs/benchmarks.md, headed by the machine it was measured on, then the issue's GPU targets
with the measured ratio. Standard library only (runs wherever the benchmarks ran).

    python bench/gpu_rows.py [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
LABELS = {"fc-15x500": "FC-15x500", "fullyconv": "FullyConvolutional",
          "odenet4-16": "ODENet4-16", "resnet18": "ResNet-18", "wrn-16-4": "WRN-16-4",
          "wrn-28-10": "WRN-28-10"}  # fmt: skip
METHODS = {"sgd": "SGD", "sgdg": "SGD-G", "adamg": "Adam-G", "alig": "ALI-G",
           "enorm": "ENorm cycle"}  # fmt: skip


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i == 0 or not rows or not _numeric(rows[0][i]) else "---:"
             for i in range(len(header))]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == "-"
    return True


def _machine(data: dict) -> str:
    m = data.get("machine", {})
    where = m.get("gpu") or m.get("cpu", "?")
    return (f"{where}, {m.get('device', '?')}, torch {m.get('torch', '?')}"
            f"{', CUDA ' + m['cuda'] if m.get('cuda') else ''}, {m.get('date', '?')}")


def epoch_rows(data: dict) -> str:
    rows = [[LABELS.get(r["model"], r["model"]), r.get("variant", "fp32"),
             _num(r["ours_s"], ".2f"), _num(r["seed_s"], ".2f"), _num(r["ours_img_s"], ".0f"),
             _num(r["seed_img_s"], ".0f"), _num(r["ratio"], ".2f"), r.get("note", "")]
            for r in data["rows"]]  # fmt: skip
    head = (f"`bench/epoch.py`, {data['images']} images, batch {data['batch']}, "
            f"median of {data['repeats']} ({_machine(data)}):")
    return head + "\n\n" + _table(["model", "variant", "ours s/epoch", "seed s/epoch",
                                   "ours img/s", "seed img/s", "ratio ours/seed", "note"], rows)


def methods_rows(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        method = r["method"]
        label = METHODS.get(method, method.replace("enorm", "ENorm cycle"))
        rows.append([LABELS.get(r["model"], r["model"]), label, _num(r["step_ms"], ".2f"),
                     _num(r["x_sgd_step"], ".2f"), _num(r["train_ms"], ".1f"),
                     _num(r["x_sgd_train"], ".3f")])  # fmt: skip
    head = (f"`bench/methods.py`, batch {data['batch']}, median of {data['repeats']} "
            f"({_machine(data)}):")
    return head + "\n\n" + _table(["model", "method", "step ms", "x sgd step", "sgd train ms",
                                   "x sgd train"], rows)


def packing_rows(data: dict) -> str:
    if data.get("runner") == "processes":
        rows = [[str(r["k"]), _num(r["study_s"], ".1f"), _num(r["trial_s"], ".2f"),
                 _num(r["trials_per_hour"], ".0f"), _num(r["x_first_k"], ".2f")]
                for r in data["rows"]]  # fmt: skip
        header = ["k", "study s", "median trial s", "trials/hour", "x k=1"]
        what = f"{data['trials']} trials, k worker processes"
    else:
        rows = [[str(r["k"]), _num(r["round_s"], ".1f"), _num(r["study_s"], ".0f"),
                 _num(r["trials_per_hour"], ".0f"), _num(r["x_first_k"], ".2f")]
                for r in data["rows"]]  # fmt: skip
        header = ["k", "round s", "study s", "trials/hour", "x k=1"]
        what = "16 trials in rounds of k processes"
    head = (f"`bench/packing.py`, {LABELS.get(data['model'], data['model'])}, {what}, "
            f"{data['steps']} steps of batch {data['batch']} per trial, sharing "
            f"{data['shared']} ({_machine(data)}):")
    return head + "\n\n" + _table(header, rows)


def targets(found: dict[str, dict]) -> str:
    """The issue's GPU targets with what this run measured (``-`` where not measured)."""
    rows = []
    epoch = {r["model"]: r for r in found.get("epoch", {}).get("rows", [])
             if r.get("variant", "fp32") == "fp32"}  # fmt: skip
    for model, goal in (("fc-15x500", 3.0), ("odenet4-16", 3.0), ("resnet18", 1.5)):
        ratio = epoch.get(model, {}).get("ratio")
        rows.append([f"our loop >= {goal}x the seeds' loop, {LABELS[model]}",
                     _num(ratio, ".2f"), _status(ratio, goal, above=True)])  # fmt: skip
    enorm = [r for r in found.get("methods", {}).get("rows", []) if r["method"] == "enorm"]
    for r in enorm:
        share = r["x_sgd_train"] - 1.0
        rows.append([f"ENorm cycle <= 10% of a training step, {LABELS.get(r['model'])}",
                     f"{100 * share:.1f}%", _status(share, 0.10, above=False)])  # fmt: skip
    packing = {r["k"]: r for r in found.get("packing", {}).get("rows", [])}
    x4 = packing.get(4, {}).get("x_first_k")
    rows.append(["packing >= 3x trials/hour at k = 4", _num(x4, ".2f"),
                 _status(x4, 3.0, above=True)])  # fmt: skip
    return _table(["target", "measured", "status"], rows)


def _status(value: float | None, goal: float, above: bool) -> str:
    if value is None:
        return "not measured"
    return "met" if (value >= goal if above else value <= goal) else "missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    found = {}
    for name in ("epoch", "methods", "packing"):
        path = args.results / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    printers = {"epoch": epoch_rows, "methods": methods_rows, "packing": packing_rows}
    for name, data in found.items():
        print(printers[name](data), end="\n\n")
    missing = [n for n in printers if n not in found]
    if missing:
        print(f"no results for: {', '.join(missing)}\n")
    devices = sorted({d["machine"].get("device", "?") for d in found.values()})
    print(f"The GPU targets of issue #19, measured on {', '.join(devices) or 'nothing'}:\n")
    print(targets(found))


if __name__ == "__main__":
    main()
