"""A study on the local two-node cluster: run --address, HTTP MLflow, submit as a Ray job."""

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.cluster


def test_study_runs_on_both_nodes_and_tracks_over_http(finished_study, results_of, tmp_path):
    cluster = finished_study.cluster
    nodes = cluster.nodes()
    assert len(nodes) == 2 and sorted(nodes.values()) == [False, True]
    rows = results_of(finished_study.folder)
    assert len(rows) == 4
    assert all([r["epoch"] for r in trial] == [1, 2] for trial in rows.values())
    used = {row["node_id"] for trial in rows.values() for row in trial}
    assert used == set(nodes), f"trials ran on {used}, the cluster's nodes are {set(nodes)}"

    client = MlflowClient(cluster.mlflow_uri)
    assert cluster.mlflow_uri.startswith("http://127.0.0.1:")
    experiment = client.get_experiment_by_name(finished_study.name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    roles = Counter(r.data.tags.get("normstudy.role") for r in runs)
    assert roles == {"study": 1, "trial": 4}
    parent = next(r for r in runs if r.data.tags["normstudy.role"] == "study")
    assert parent.info.status == "FINISHED"
    for run in runs:
        if run is parent:
            continue
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2]
        assert 0.0 <= history[-1].value <= 1.0

    # the comparison went through the server's artifact proxy and comes back the same way
    listed = [a.path for a in client.list_artifacts(parent.info.run_id, "comparison")]
    assert {"comparison/report.md", "comparison/comparison.csv"} <= set(listed)
    assert any(path.endswith(".png") for path in listed)
    local = client.download_artifacts(parent.info.run_id, "comparison", str(tmp_path))
    report = (tmp_path / "comparison" / "report.md").read_text()
    assert finished_study.name in report and "enorm.c=1.0" in report
    assert (tmp_path / "comparison" / "comparison.csv").read_text().count("\n") >= 2
    pngs = sorted((tmp_path / "comparison").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs), local


def test_submit_runs_the_driver_as_a_ray_job(local_cluster, study_args, results_of, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    args = study_args("cluster-job", tmp_path, epochs=1)
    done = local_cluster.normstudy("submit", *args, "--address", local_cluster.dashboard, "--wait")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    job_id = re.search(r"as Ray job (\S+) to ", output).group(1)
    assert f"ray job logs {job_id} --follow --address {local_cluster.dashboard}" in output
    assert f"job {job_id} SUCCEEDED" in output

    auth = {"Authorization": f"Bearer {local_cluster.token()}"}
    client = JobSubmissionClient(local_cluster.dashboard, headers=auth)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED
    info = client.get_job_info(job_id)
    assert info.entrypoint == "python -m studies.cli run study.yaml --address auto"
    assert info.metadata["normstudy.study"] == "cluster-job"
    logs = client.get_job_logs(job_id)
    assert "study 'cluster-job' done" in logs and "4 finished" in logs
    rows = results_of(tmp_path / "cluster-job")  # the driver on the head wrote here
    assert len(rows) == 4 and all(trial[-1]["epoch"] == 1 for trial in rows.values())
    study = (tmp_path / "cluster-job" / "study.yaml").read_text()
    assert "name: cluster-job" in study


def test_submit_rejects_a_bad_spec_before_submitting(local_cluster, tmp_path):
    from ray.job_submission import JobSubmissionClient

    auth = {"Authorization": f"Bearer {local_cluster.token()}"}
    client = JobSubmissionClient(local_cluster.dashboard, headers=auth)
    before = len(client.list_jobs())
    address = ["--address", local_cluster.dashboard]
    bad = local_cluster.normstudy("submit", "quickstart", "--storage", str(tmp_path),
                                  "--set", "optimizer.lr=-1", *address)  # fmt: skip
    assert bad.returncode == 2 and "optimizer.lr" in bad.stderr
    relative = local_cluster.normstudy("submit", "quickstart", "--storage", "results", *address)
    assert relative.returncode == 2 and "storage: 'results' is relative" in relative.stderr
    unreachable = local_cluster.normstudy("submit", "quickstart", "--storage", str(tmp_path),
                                          "--address", "http://127.0.0.1:9")  # fmt: skip
    assert unreachable.returncode == 2 and "--address: cannot reach" in unreachable.stderr
    assert len(client.list_jobs()) == before


def test_status_names_the_running_services(local_cluster):
    script = Path(__file__).resolve().parents[2] / "cluster" / "local-cluster.sh"
    done = subprocess.run([str(script), "status"], env=local_cluster.env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for name, pid in local_cluster.pids.items():
        assert f"{name}: running (pid {pid})" in done.stdout
    assert f"--address {local_cluster.ray_address}" in done.stdout
    assert local_cluster.mlflow_uri in done.stdout
    again = subprocess.run([str(script), "start"], env=local_cluster.env, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert again.returncode == 1 and "already running" in again.stderr
