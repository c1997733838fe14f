"""comparison/ as `compare` writes it: the plots are drawn again only when what they show
changed (studies.analysis.outputs.plot_files), and the record of that survives processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studies.analysis import outputs, plots
from studies.analysis.comparison import compare
from studies.analysis.trials import TrialHistory
from studies.config.space import arm_label
from studies.trial.validation import load_spec

LRS, BASE_LR, SEEDS = [0.01, 0.05, 0.1], 0.05, [1, 2, 3]


def small_comparison(storage: str, shift: float = 0.0):
    """A 3-arm lr sweep on 3 seeds with known values (no training); ``shift`` moves one trial."""
    spec = load_spec("quickstart", overrides=[
        "name=plots-cache", f"storage={storage}", f"seeds={SEEDS}",
        f"sweep={{optimizer.lr: {{grid: {LRS}}}}}", f"baseline={{optimizer.lr: {BASE_LR}}}",
    ])  # fmt: skip
    trials = []
    for lr in LRS:
        for seed in SEEDS:
            value = 0.9 + 0.01 * seed + (lr - BASE_LR) * 0.1 + (shift if len(trials) == 0 else 0)
            trials.append(TrialHistory(
                trial_id=f"t{len(trials):03d}", arm=arm_label({"optimizer.lr": lr}),
                arm_values={"optimizer.lr": lr}, seed=seed, baseline=lr == BASE_LR,
                status="finished", history={"val_acc": {1: value - 0.02, 2: value}},
            ))  # fmt: skip
    return compare(trials, spec)


@pytest.fixture
def drawn(monkeypatch):
    """The names of every draw_plots call the test makes."""
    calls: list[list[str]] = []
    real = plots.draw_plots

    def counting(comparison, out):
        calls.append(real(comparison, out))
        return calls[-1]

    monkeypatch.setattr(plots, "draw_plots", counting)
    return calls


def test_an_unchanged_comparison_is_not_drawn_again(tmp_path, drawn):
    comparison = small_comparison(str(tmp_path / "storage"))
    first = outputs.write_outputs(comparison, tmp_path)
    again = outputs.write_outputs(small_comparison(str(tmp_path / "storage")), tmp_path)
    assert len(drawn) == 1 and drawn[0] == ["paired.png", "learning_curves.png"]
    assert first == again and all(path.stat().st_size > 0 for path in again)
    report = (tmp_path / "comparison" / "report.md").read_text()
    assert all(f"![{name}]({name})" in report for name in drawn[0])


def test_a_changed_trial_a_missing_png_or_changed_plot_code_draws_again(tmp_path, drawn,
                                                                         monkeypatch):
    storage = str(tmp_path / "storage")
    outputs.write_outputs(small_comparison(storage), tmp_path)
    outputs.write_outputs(small_comparison(storage, shift=0.01), tmp_path)  # a trial changed
    assert len(drawn) == 2
    (tmp_path / "comparison" / "paired.png").unlink()  # a plot deleted by hand
    outputs.write_outputs(small_comparison(storage, shift=0.01), tmp_path)
    assert len(drawn) == 3 and (tmp_path / "comparison" / "paired.png").is_file()
    edited = tmp_path / "plots.py"  # plots.py edited: what is drawn may differ
    edited.write_bytes(outputs.PLOTS_SOURCE.read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(outputs, "PLOTS_SOURCE", edited)
    outputs.write_outputs(small_comparison(storage, shift=0.01), tmp_path)
    assert len(drawn) == 4
    (tmp_path / "comparison" / outputs.PLOTS_RECORD).write_text("{not json")  # a torn record
    outputs.write_outputs(small_comparison(storage, shift=0.01), tmp_path)
    assert len(drawn) == 5
    assert json.loads((tmp_path / "comparison" / outputs.PLOTS_RECORD).read_text())["plots"]


def test_the_digest_is_the_same_in_every_process(tmp_path):
    """Python salts the hashes of strings per process: a digest that pickled a set of them
    (a pydantic model keeps one) would never match the one saved by the last compare."""
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import test_outputs as t; "
              "from studies.analysis.outputs import plots_digest; "
              "print(plots_digest(t.small_comparison(sys.argv[2])))")  # fmt: skip
    digests = set()
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path)],
            env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
            timeout=300, check=True,
        )  # fmt: skip
        digests.add(done.stdout.strip())
    assert len(digests) == 1 and len(digests.pop()) == 128
