"""Real Ray Tune + real MLflow (SQLite): studies run, track, diverge, search and resume."""

from collections import Counter

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
