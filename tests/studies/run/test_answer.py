"""A search's answer from a results folder as Ray Tune leaves it (trial folders and an
experiment state written here), through ``search_answer`` and ``normstudy best``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from studies.cli import main
from studies.run import answer as answers
from studies.run.answer import answer_folders, answer_text, search_answer
from studies.store.layout import write_study_spec
from studies.trial.validation import load_spec

SEARCH = [
    "name=lrs",
    "enorm.c=0",
    "baseline=null",
    "seeds=[1]",
    "train.epochs=2",
    "sweep={optimizer.lr: {loguniform: [0.001, 1.0]}, optimizer.momentum: {uniform: [0, 0.95]}}",
    "search={name: optuna, num_samples: 6}",
]
# trial id, lr, momentum, val_acc per epoch, Ray Tune status; listed in proposal order
TRIALS = [
    ("aa", 0.01, 0.5, [0.4, 0.6], "TERMINATED"),
    ("bb", 0.2, 0.9, [0.7, 0.93], "TERMINATED"),
    ("cc", 0.002, 0.1, [0.1, 0.15], "TERMINATED"),
    ("dd", 0.5, 0.3, [0.5, 0.8], "TERMINATED"),
    ("ee", 0.05, 0.7, [0.3, 0.9], "TERMINATED"),
    ("ff", 0.9, 0.8, [0.2], "ERROR"),
]


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """The results folder of a 6-trial Optuna search (one trial errored)."""
    spec = load_spec("quickstart", [*SEARCH, f"storage={tmp_path}"])
    folder = tmp_path / "lrs"
    folder.mkdir()
    write_study_spec(spec, folder)
    entries = []
    for number, (trial_id, lr, momentum, accs, status) in enumerate(TRIALS, 1):
        config = {**spec.trial_config(), "seed": 1}
        config["optimizer"] = {**config["optimizer"], "lr": lr, "momentum": momentum}
        trial = folder / f"trial_{trial_id}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps(config))
        rows = [{"epoch": e, "val_acc": a, "trial_id": trial_id} for e, a in enumerate(accs, 1)]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        tag = f"{number}_lr={lr}"  # Ray Tune's experiment tag starts with the trial's counter
        entries.append([json.dumps({"trial_id": trial_id, "status": status,
                                    "experiment_tag": tag}), "{}"])  # fmt: skip
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": entries}))  # fmt: skip
    return folder


def test_the_answer_of_a_results_folder(study, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("http://user:hunter2@mlflow.example:5000 refused\nmore")

    monkeypatch.setattr(answers, "log_search", unreachable)
    answer = search_answer("lrs", storage=str(study.parent))
    assert [c.best_trial.trial_id for c in answer.ranking] == ["bb", "ee", "dd", "aa", "cc"]
    assert answer.best.best_trial.number == 2 and answer.counts["errored"] == 1
    assert answer.importances is not None and set(answer.importances) == {
        "optimizer.lr", "optimizer.momentum"}
    assert sorted(p.name for p in answer.files) == [
        "history.png", "importance.png", "report.md", "slice.png", "trials.csv"]
    text = answer_text(answer)
    assert "Best configuration" in text and "trial bb (#2), val_acc 93.00% at epoch 2" in text
    assert "6 of 6 trials: 5 finished, 0 stopped early, 0 diverged, 1 errored" in text
    assert ("[normstudy] warning: not logged to MLflow (ConnectionError: http://user:***@"
            "mlflow.example:5000 refused); `normstudy best lrs` logs it later") in text


def test_normstudy_best_prints_the_answer(study, capsys):
    assert main(["best", "lrs", "--storage", str(study.parent), "--no-log", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "Top 2 of 5 configurations:" in out and "logged to MLflow" not in out
    assert (study / "search" / "report.md").is_file()


def test_best_of_an_unknown_study_or_one_without_a_sweep_exits_2(tmp_path, capsys):
    assert main(["best", "nope", "--storage", str(tmp_path), "--no-log"]) == 2
    assert "study: no study 'nope'" in capsys.readouterr().err
    spec = load_spec("quickstart", ["name=one", "sweep={}", "baseline=null",
                                    f"storage={tmp_path}"])  # fmt: skip
    (tmp_path / "one").mkdir()
    write_study_spec(spec, tmp_path / "one")
    assert main(["best", "one", "--storage", str(tmp_path), "--no-log"]) == 2
    assert "'one' sweeps nothing" in capsys.readouterr().err
    assert not (tmp_path / "one" / "search").exists()


def test_which_studies_a_finished_run_answers(tmp_path):
    search = load_spec("quickstart", SEARCH)
    grid = load_spec("quickstart")  # a grid with a baseline: its comparison says it all
    confirm = grid.model_copy(update={"name": "lrs-confirm", "confirm_of": "lrs"})

    def outcome(spec):
        return SimpleNamespace(spec=spec, folder=tmp_path / spec.name)

    assert answer_folders(outcome(search)) == [tmp_path / "lrs"]
    assert answer_folders(outcome(grid)) == []
    assert answer_folders(outcome(confirm)) == [tmp_path / "lrs"]  # its search stage
