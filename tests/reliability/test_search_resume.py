"""Resume keeps the searcher: an Optuna search stopped by Ctrl-C and resumed continues the
same Optuna study, with the exact trial count and no configuration proposed twice.

`normstudy run` runs as a subprocess and gets SIGINT (what Ctrl-C sends) from the thread
that reads its output, at the moment it prints that 3 of its 10 trials are done. Ray Tune
then saves the experiment state with the searcher's (the Optuna study with its sampler),
and `normstudy resume` restores both. Afterwards the study has exactly 10 trials, numbered
1..10 in the order proposed, 10 distinct configurations, and the searcher's Optuna study
holds all 10 as its trials 0..9 with the values the trials ran with: a searcher started
afresh would hold only the trials proposed after the resume, and its seeded sampler would
propose the first configurations again. The trials finished before the interrupt are left
as they were; the resumed study ends with its answer, the best of the 10 trials.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import threading
from pathlib import Path

import pytest
from reliability_kit import Driver, assert_tracked_once, result_rows, sqlite_uri, write_spec

from studies.store.results import trial_numbers, trial_statuses

pytestmark = pytest.mark.integration

TRIALS, STOP_AFTER, EPOCHS = 10, 3, 2
NAME = "optuna-resume"


def search_spec() -> dict:
    """10 Optuna proposals over the learning rate (log) and momentum of a small MLP."""
    return {
        "name": NAME,
        "dataset": {"name": "digits", "val_fraction": 0.1},
        "model": {"name": "fully_connected", "n_layers": 2, "width": 32},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": EPOCHS, "batch_size": 64},
        "sweep": {"optimizer.lr": {"loguniform": [0.001, 1.0]},
                  "optimizer.momentum": {"uniform": [0.0, 0.95]}},
        "search": {"name": "optuna", "num_samples": TRIALS},
        "seeds": [1],
        "metric": {"name": "val_acc", "mode": "max"},
        "resources": {"cpu": 1},
    }  # fmt: skip


class CtrlC(Driver):
    """A `normstudy` command that gets SIGINT, as from Ctrl-C, from the thread reading its
    output as soon as a line matches ``pattern`` (no polling: the moment is the line's)."""

    def __init__(self, args: list[str], pattern: str):
        self.pattern = re.compile(pattern)
        self.interrupted = threading.Event()
        super().__init__(args)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if not self.interrupted.is_set() and self.pattern.search(line):
                self.interrupted.set()
                os.kill(self.proc.pid, signal.SIGINT)


def configs(folder: Path) -> dict[str, tuple[float, float]]:
    """Trial id -> (lr, momentum) it ran with (params.json)."""
    found = {}
    for path in folder.glob("trial_*/params.json"):
        optimizer = json.loads(path.read_text())["optimizer"]
        found[path.parent.name.removeprefix("trial_")] = (optimizer["lr"], optimizer["momentum"])
    return found


def searcher_state(folder: Path) -> dict:
    """The Optuna searcher Ray Tune saved last (OptunaSearch's fields)."""
    newest = sorted(folder.glob("searcher-state-*.pkl"))[-1]
    with open(newest, "rb") as file:
        return pickle.load(file)  # noqa: S301 - our own study's file


def test_an_interrupted_optuna_search_resumes_the_same_search(tmp_path):
    spec_file = write_spec(tmp_path, search_spec())
    folder = tmp_path / NAME
    run = CtrlC(["run", str(spec_file), "--storage", str(tmp_path)],
                rf"\[normstudy\] {STOP_AFTER}/{TRIALS} done")  # fmt: skip
    try:
        assert run.wait(300) == 130, run.output[-3000:]
    finally:
        run.close()
    assert run.interrupted.is_set() and "interrupted after" in run.output
    assert "Best configuration" not in run.output  # no answer for a stopped study
    before = configs(folder)
    finished = {name: rows for name, rows in result_rows(folder).items()
                if rows and rows[-1]["epoch"] == EPOCHS}  # fmt: skip
    assert STOP_AFTER <= len(finished) and len(before) < TRIALS, run.output[-3000:]

    resume = Driver(["resume", NAME, "--storage", str(tmp_path)])
    try:
        assert resume.wait(300) == 0, resume.output[-3000:]
    finally:
        resume.close()

    # Exactly the study's trials, each configuration once, numbered 1..10 as proposed.
    after = configs(folder)
    assert len(after) == TRIALS and len(set(after.values())) == TRIALS
    assert {t: after[t] for t in before} == before  # the first session's trials continue
    assert set(trial_statuses(folder).values()) == {"TERMINATED"}
    numbers = trial_numbers(folder)
    assert sorted(numbers.values()) == list(range(1, TRIALS + 1)) and set(numbers) == set(after)
    for name, rows in finished.items():  # finished before the interrupt: untouched
        assert result_rows(folder)[name] == rows

    # The searcher continued: one Optuna study holds all 10 proposals, in order.
    state = searcher_state(folder)
    study = state["_ot_study"]
    assert [t.number for t in study.trials] == list(range(TRIALS))
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    assert set(state["_ot_trials"]) == set(after)
    for trial_id, proposal in state["_ot_trials"].items():
        assert numbers[trial_id] == proposal.number + 1
        params = study.trials[proposal.number].params
        assert (params["optimizer/lr"], params["optimizer/momentum"]) == after[trial_id]
    values = {t.number + 1: t.value for t in study.trials}

    # One MLflow run per trial, every epoch once; the answer names the best of the 10.
    assert_tracked_once(sqlite_uri(tmp_path), NAME, TRIALS, epochs=EPOCHS)
    last = {name.removeprefix("trial_"): rows[-1]["val_acc"]
            for name, rows in result_rows(folder).items()}  # fmt: skip
    best_id = max(sorted(last, key=numbers.get), key=last.get)  # ties: the first proposed
    assert values[numbers[best_id]] == last[best_id]  # Optuna was told the same values
    assert f"{TRIALS} of {TRIALS} trials: {TRIALS} finished" in resume.output
    assert f"trial {best_id} (#{numbers[best_id]}), val_acc {100 * last[best_id]:.2f}%" in (
        resume.output)
