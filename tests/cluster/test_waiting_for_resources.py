"""A study whose trials no node can hold waits, says so, and stops like Ctrl-C after
``resources.wait_s``; once a node that can hold them joins, ``resume`` finishes it exactly
(issue 31). The trials ask for a custom resource, so the test means the same on a machine with
or without GPUs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.cluster

WAIT_S = 20


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def session_members(sid: int) -> list[int]:
    """Pids of the live processes in session ``sid`` (a zombie has ended: it only waits for
    its parent to read its exit status)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if os.getsid(int(entry.name)) == sid and stat.rsplit(")", 1)[1].split()[0] != "Z":
                    members.append(int(entry.name))
            except OSError:
                pass
    return members


def start_node(cluster, resources: str, log: Path) -> subprocess.Popen[bytes]:
    """A third Ray node joining ``cluster`` with 1 CPU and ``resources`` (JSON), in its own
    session (as cluster/local-cluster.sh starts its nodes); its pid = its session id."""
    agent, metrics = free_ports(2)
    ray = Path(sys.executable).parent / "ray"
    command = [
        str(ray), "start", "--block", "--disable-usage-stats", "--address", cluster.ray_address,
        "--node-ip-address", "127.0.0.1", "--dashboard-agent-listen-port", str(agent),
        "--metrics-export-port", str(metrics), "--num-cpus", "1", "--num-gpus", "0",
        "--resources", resources, "--object-store-memory", "200000000",
        "--min-worker-port", "0", "--max-worker-port", "0",
        "--temp-dir", str(cluster.state / "ray-scratch"),
    ]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env={**cluster.env, "RAY_USAGE_STATS_ENABLED": "0"},
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
    return proc


def stop_node(node: subprocess.Popen[bytes]) -> None:
    """SIGTERM the node's session (Ray drains it), SIGKILL what is left after 30 s, and reap
    the ``ray start`` process this test started."""
    sid = node.pid
    for pid in session_members(sid):
        with_signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in session_members(sid):
        with_signal(pid, signal.SIGKILL)
    node.wait(timeout=60)
    deadline = time.monotonic() + 60  # a SIGKILLed process is gone once the kernel ends it
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.5)


def with_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def wait_nodes(cluster, count: int, what: str) -> dict[str, bool]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        nodes = cluster.nodes()
        if len(nodes) == count:
            return nodes
        time.sleep(1)
    pytest.fail(f"timed out after 180s waiting for {what}")


def test_a_study_waits_for_resources_stops_after_wait_s_and_resumes_when_a_node_joins(
    cluster_factory, study_args, results_of, tmp_path
):
    cluster = cluster_factory()  # its own: Ray's state API lists no nodes once one has left
    before = cluster.nodes()
    name = "cluster-wait"
    started = time.monotonic()
    ran = cluster.normstudy(
        "run", *study_args(name, tmp_path, epochs=1),
        "--set", "resources.custom={scratch: 1}", "--set", f"resources.wait_s={WAIT_S}",
        "--address", cluster.ray_address, "--tracking-uri", cluster.mlflow_uri,
    )  # fmt: skip
    output = ran.stdout + ran.stderr
    assert ran.returncode == 130, output
    assert time.monotonic() - started >= WAIT_S
    assert "[normstudy] waiting for resources: 1 'scratch' per trial, the cluster has 0 now; " \
           f"the study stops after {WAIT_S}s (resources.wait_s)" in output  # fmt: skip
    assert f"no trial could start for {WAIT_S}s (resources.wait_s;" in output
    assert f"continue with `normstudy resume {name} --storage '{tmp_path}'`" in output
    assert "No trial is running and no new trial has been started" not in output  # Ray's own
    assert results_of(tmp_path / name) == {}  # no trial ran an epoch

    node = start_node(cluster, '{"scratch": 1}', tmp_path / "scratch-node.log")
    try:
        nodes = wait_nodes(cluster, 3, "the scratch node to join")
        resumed = cluster.normstudy("resume", name, "--storage", str(tmp_path),
                                    "--address", cluster.ray_address)  # fmt: skip
        output = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, output
        assert "4 finished" in output and "waiting for resources" not in output
    finally:
        stop_node(node)
    assert session_members(node.pid) == []  # the node this test started is gone
    rows = results_of(tmp_path / name)
    assert len(rows) == 4 and all([r["epoch"] for r in trial] == [1] for trial in rows.values())
    scratch = set(nodes) - set(before)
    assert {trial[0]["node_id"] for trial in rows.values()} == scratch  # only it can hold them

    client = MlflowClient(cluster.mlflow_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert Counter(r.data.tags.get("normstudy.role") for r in runs) == {"study": 1, "trial": 4}
    trials = Counter(r.data.tags["normstudy.trial_id"] for r in runs
                     if r.data.tags["normstudy.role"] == "trial")  # fmt: skip
    assert len(trials) == 4 and max(trials.values()) == 1
    assert all(r.info.status == "FINISHED" for r in runs)
