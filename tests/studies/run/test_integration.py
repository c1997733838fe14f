"""Real Ray Tune + real MLflow (SQLite): studies run, track, diverge, search and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from studies.run.runner import run_study
from studies.trial.validation import load_spec

pytestmark = pytest.mark.integration


def small(tmp_path, *overrides):
    return load_spec("quickstart", [
        f"storage={tmp_path}", "train.epochs=2", "train.steps_per_epoch=4", *overrides,
    ])  # fmt: skip


def test_grid_study_tracks_every_trial_and_survives_divergence(tmp_path, ray_local, study_runs):
    spec = small(
        tmp_path,
        "name=grid4",
        "enorm.c=0",
        "sweep={optimizer.lr: {grid: [0.1, 1.0e+6]}}",
        "seeds=[1, 2]",
        "baseline={optimizer.lr: 0.1}",
    )
    outcome = run_study(spec)
    assert outcome.counts == {"finished": 2, "diverged": 2}
    client, parents, children = study_runs(tmp_path, "grid4")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert Counter(r.data.tags["baseline"] for r in children) == {"true": 2, "false": 2}
    for run in children:
        diverged = run.data.tags.get("diverged") == "true"
        assert diverged == (run.data.params["optimizer.lr"] == "1000000.0")
        history = client.get_metric_history(run.info.run_id, "val_acc")
        if not diverged:
            assert sorted(m.step for m in history) == [1, 2]
            assert 0.0 <= history[-1].value <= 1.0
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert "study.yaml" in artifacts
    # Ray Tune's JSON logger only: result.json per trial, no TensorBoard or CSV files (issue 19)
    trials = sorted(outcome.folder.glob("trial_*"))
    assert len(trials) == 4 and all((t / "result.json").stat().st_size > 0 for t in trials)
    assert not [p for t in trials for p in t.iterdir()
                if p.name.startswith("events.out.tfevents") or p.name == "progress.csv"]


def test_optuna_search_with_asha(tmp_path, ray_local, study_runs):
    spec = small(
        tmp_path,
        "name=optuna4",
        "enorm.c=1.0",
        "train.epochs=3",
        "sweep={optimizer.lr: {loguniform: [0.01, 0.3]}, enorm.c: {choice: [0, 1.2]}}",
        "search={name: optuna, num_samples: 4}",
        "scheduler={name: asha, grace_period: 1, reduction_factor: 2}",
        "baseline=null",
        "max_concurrent=2",
    )
    outcome = run_study(spec)
    assert sum(outcome.counts.values()) == 4 and "errored" not in outcome.counts
    _, parents, children = study_runs(tmp_path, "optuna4")
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    lrs = {float(r.data.params["optimizer.lr"]) for r in children}
    assert len(lrs) == 4 and all(0.01 <= lr <= 0.3 for lr in lrs)
    assert {r.data.params["seed"] for r in children} == {"1"}  # optuna proposals use seeds[0]


def _result_lines(folder: Path):
    lines = {}
    for path in folder.glob("trial_*/result.json"):
        text = path.read_text().strip()
        lines[path.parent.name] = [json.loads(x) for x in text.splitlines()] if text else []
    return lines


def test_sigkilled_driver_resumes_without_losing_or_duplicating(tmp_path, study_runs):
    # Ray Tune saves its experiment state (which checkpoint each trial has) every 10 s at
    # first; save it often so that the kill below finds a trial checkpoint recorded.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}
    cli = [sys.executable, "-m", "studies.cli"]
    args = [
        "--storage",
        str(tmp_path),
        "--set",
        "name=killme",
        "--set",
        "train.epochs=4",
        "--set",
        "train.checkpoint_every_s=0",
        "--set",
        "seeds=[1, 2, 3]",
        "--set",
        "sweep.enorm.c={grid: [0, 1.2]}",
        "--set",
        "model.width=512",  # epochs long enough to kill a trial mid-run
    ]
    driver = subprocess.Popen(
        [*cli, "run", "quickstart", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = tmp_path / "killme"
    deadline = time.time() + 240
    while time.time() < deadline:
        lines = _result_lines(folder) if folder.exists() else {}
        if any(len(v) >= 2 for v in lines.values()):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the study never reported")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    before = _result_lines(folder)
    finished_before = {k: v for k, v in before.items() if v and v[-1]["epoch"] == 4}
    time.sleep(2)
    try:  # the dead driver's local Ray daemons; a real cluster would outlive it
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

    resumed = subprocess.run(
        [*cli, "resume", "killme", "--storage", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    after = _result_lines(folder)
    assert len(after) == 6 and all(v[-1]["epoch"] == 4 for v in after.values())
    for trial, lines in finished_before.items():  # finished trials untouched
        assert after[trial] == lines
    restored = [
        v for v in after.values() if any(x["iterations_since_restore"] < x["epoch"] for x in v)
    ]
    assert restored, "no trial continued from its checkpoint"
    for lines in after.values():  # each epoch reported once after its checkpoint
        epochs = [x["epoch"] for x in lines]
        assert epochs[-4:] == [1, 2, 3, 4] or sorted(set(epochs)) == [1, 2, 3, 4]

    client, parents, children = study_runs(tmp_path, "killme")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 6
    assert len({r.data.tags["normstudy.trial_id"] for r in children}) == 6
    assert {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == [1, 2, 3, 4]  # no epoch lost, none logged twice
