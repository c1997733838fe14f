"""Losing the Ray worker node mid-study: its trials continue on the head from their checkpoints."""

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.cluster


def test_study_survives_the_worker_node_dying(cluster_factory, study_args, results_of, tmp_path):
    cluster = cluster_factory()
    nodes = cluster.nodes()
    worker_node = next(node for node, head in nodes.items() if not head)
    args = study_args("cluster-kill", tmp_path, epochs=3)
    command = [sys.executable, "-m", "studies.cli", "run", *args,
               "--address", cluster.ray_address, "--tracking-uri", cluster.mlflow_uri]  # fmt: skip
    log = (tmp_path / "run.log").open("w")
    study = subprocess.Popen(command, env=cluster.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 600
        on_worker = []
        while not on_worker:  # a trial on the worker node has reported (and checkpointed) epoch 1
            assert study.poll() is None, (tmp_path / "run.log").read_text()
            assert time.time() < deadline, "no trial reported from the worker node"
            time.sleep(0.5)
            rows = results_of(tmp_path / "cluster-kill")
            on_worker = [
                t
                for t, trial in rows.items()
                if trial and trial[-1]["node_id"] == worker_node and trial[-1]["epoch"] < 3
            ]
        cluster.kill("worker")  # the whole node: ray start, raylet, its workers
        assert study.poll() is None, "the study ended before the node was killed"
        code = study.wait(timeout=900)
    finally:
        if study.poll() is None:
            study.kill()
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert code == 0, output
    assert "4 finished" in output
    rows = results_of(tmp_path / "cluster-kill")
    assert len(rows) == 4
    head_node = next(node for node, head in nodes.items() if head)
    for name in on_worker:
        trial = rows[name]
        # each epoch reported once: the retry resumed from the checkpoint, it did not restart
        assert [r["epoch"] for r in trial] == [1, 2, 3], trial
        assert trial[0]["node_id"] == worker_node and trial[-1]["node_id"] == head_node
    assert all(trial[-1]["epoch"] == 3 for trial in rows.values())
