"""The parent run's summary of a comparison (issue 27): per-arm metrics and verdict tags with
keys MLflow accepts, logged so the runs table can sort studies by result."""

from __future__ import annotations

import math
from types import SimpleNamespace

from studies.analysis.summary import log_summary, metric_key, summary


def row(arm: str, diff: float, p: float, needed: int | None, verdict: str) -> SimpleNamespace:
    return SimpleNamespace(arm=arm, mean_diff=diff, p_holm=p, seeds_needed=needed,
                           verdict=verdict)  # fmt: skip


def comparison(mode: str = "max") -> SimpleNamespace:
    return SimpleNamespace(scored_metric="test_acc", baseline="enorm.c=0", mode=mode, rows=[
        row("enorm.c=1.0", 0.02, 0.01, 4, "significant"),
        row("enorm.c=1.2", -0.01, 0.4, None, "not significant"),
        row("lr=0.1, c=2", math.nan, math.nan, None, "not enough pairs"),
    ])  # fmt: skip


def test_metric_keys_are_valid_mlflow_names():
    from mlflow.utils.validation import validate_param_and_metric_name

    for label in ("enorm.c=1.0", "lr=0.1, c=2", "model.name=wrn/16", "=", "https://u:secret@h"):
        key = metric_key(label)
        assert validate_param_and_metric_name(f"{key}/p_holm"), key
        assert "secret" not in key
    assert metric_key("enorm.c=1.0") == "enorm.c_1.0"


def test_summary_values():
    metrics, tags = summary(comparison())
    assert metrics == {
        "enorm.c_1.0/mean_diff": 0.02, "enorm.c_1.0/p_holm": 0.01,
        "enorm.c_1.0/seeds_needed": 4.0,
        "enorm.c_1.2/mean_diff": -0.01, "enorm.c_1.2/p_holm": 0.4,
        "arms_significant": 1.0, "best_mean_diff": 0.02,
    }  # fmt: skip
    assert tags["verdict/enorm.c_1.0"] == "significant"
    assert tags["verdict/lr_0.1_ c_2"] == "not enough pairs"
    assert tags["summary.metric"] == "test_acc"
    assert summary(comparison("min"))[0]["best_mean_diff"] == -0.01


def test_logged_to_a_run(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("s"))
    client.set_terminated(run.info.run_id, "FINISHED")
    before = client.get_run(run.info.run_id).info
    log_summary(client, run.info.run_id, comparison())
    after = client.get_run(run.info.run_id)
    assert after.data.metrics["enorm.c_1.0/p_holm"] == 0.01
    assert after.data.tags["verdict/enorm.c_1.2"] == "not significant"
    assert (after.info.start_time, after.info.end_time) == (before.start_time, before.end_time)
