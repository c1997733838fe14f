"""One study, one driver on the local two-node cluster: two `submit`s of one study, one refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# `normstudy submit` without its local lease check: a submitting machine that cannot see the
# cluster's shared folder. The driver on the cluster must refuse by itself.
SUBMIT_BLIND = """
import sys
from studies.trial.validation import load_spec
from studies.run.submit import submit_study
spec = load_spec(sys.argv[2], sys.argv[3:])
sys.exit(submit_study(spec, address=sys.argv[1], wait=True))
"""


def overrides(args: list[str], uri: str) -> list[str]:
    """The spec overrides `normstudy submit` would apply for these arguments."""
    sets = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
    return [f"storage={args[args.index('--storage') + 1]}", *sets, f"tracking.uri={uri}"]


def test_two_submits_of_one_study_one_refused(local_cluster, study_args, results_of, tmp_path):
    name = "cluster-lease"
    args = study_args(name, tmp_path)
    address = ["--address", local_cluster.dashboard]
    first = subprocess.Popen(
        [sys.executable, "-m", "studies.cli", "submit", *args, *address, "--wait"],
        env=local_cluster.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    lease = tmp_path / f".{name}.lease"
    deadline = time.time() + 300
    while not (lease.exists() and any(results_of(tmp_path / name).values())):
        assert first.poll() is None, first.communicate()[0][-4000:]
        assert time.time() < deadline, "the first job's driver never started training"
        time.sleep(0.2)
    holder = json.loads(lease.read_text())
    os.kill(holder["pid"], signal.SIGSTOP)  # the first job's driver: alive, cannot finish
    try:
        seen = local_cluster.normstudy("submit", *args, *address, "--wait", timeout=300)
        blind = subprocess.run(
            [sys.executable, "-c", SUBMIT_BLIND, local_cluster.dashboard, "quickstart",
             *overrides(args, local_cluster.mlflow_uri)],
            env=local_cluster.env, cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        os.kill(holder["pid"], signal.SIGCONT)
    out = seen.stdout + seen.stderr
    assert seen.returncode == 2 and "submitted" not in out, out  # refused before submitting
    assert f"study '{name}' is already running" in out and f"pid {holder['pid']}" in out, out
    out = blind.stdout + blind.stderr
    assert blind.returncode == 1 and "FAILED" in out, out[-4000:]  # its driver refused
    assert f"study '{name}' is already running" in out and f"pid {holder['pid']}" in out, out
    output = first.communicate(timeout=600)[0]
    assert first.returncode == 0 and "SUCCEEDED" in output, output[-4000:]

    assert not lease.exists()
    rows = results_of(tmp_path / name)
    assert len(rows) == 4 and all(trial[-1]["epoch"] == 2 for trial in rows.values())
    client = MlflowClient(local_cluster.mlflow_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert Counter(r.data.tags.get("normstudy.role") for r in runs) == {"study": 1, "trial": 4}
    assert {r.info.status for r in runs} == {"FINISHED"}
    trial_ids = {r.data.tags["normstudy.trial_id"] for r in runs if "normstudy.trial_id" in
                 r.data.tags}  # fmt: skip
    assert len(trial_ids) == 4
