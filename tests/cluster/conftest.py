"""A real local cluster (cluster/local-cluster.sh: Ray head + Ray worker node + MLflow server on
loopback) for the tests in this folder; every process it starts is stopped by pid afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cluster" / "local-cluster.sh"
SERVICES = ("head", "worker", "mlflow")


@dataclass
class LocalCluster:
    state: Path
    env: dict[str, str]  # os.environ + cluster.env: what a client of this cluster needs
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def ray_address(self) -> str:
        return self.env["RAY_ADDRESS"]

    @property
    def dashboard(self) -> str:
        return self.env["RAY_DASHBOARD"]

    @property
    def mlflow_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def token(self) -> str:
        return Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()

    def normstudy(self, *args: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "studies.cli", *args]
        return subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, **kwargs)  # fmt: skip

    def kill(self, service: str) -> None:
        """SIGKILL every process of a service's session (Ray workers have their own groups)."""
        for pid in session_members(self.pids[service]):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def nodes(self) -> dict[str, bool]:
        """node id -> is head, for the alive nodes (Ray's state API, in a subprocess)."""
        code = (
            "import json, sys\nfrom ray.util.state import list_nodes\n"
            "nodes = list_nodes(address=sys.argv[1], filters=[('state', '=', 'ALIVE')])\n"
            "print(json.dumps({n.node_id: n.is_head_node for n in nodes}))"
        )
        out = subprocess.run([sys.executable, "-c", code, self.dashboard], env=self.env,
                             capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])


def session_members(sid: int) -> list[int]:
    """Pids of the processes still in session ``sid`` (a service and what it started)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
            except OSError:
                pass
    return members


def start_cluster(state: Path, **settings: str) -> LocalCluster:
    # Fresh actors per trial: the worker node gets trials even when trials are short.
    env = {**os.environ, "LOCAL_CLUSTER_DIR": str(state), "PYTHON": sys.executable,
           "NORMSTUDY_REUSE_ACTORS": "0", **settings}  # fmt: skip
    cluster = LocalCluster(state, env)
    done = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    for name in SERVICES:  # recorded even when start failed midway, so stop_cluster can clean up
        pidfile = state / "pids" / f"{name}.pid"
        if pidfile.is_file():
            cluster.pids[name] = int(pidfile.read_text())
    if done.returncode != 0:
        stop_cluster(cluster)
        pytest.fail(f"local-cluster.sh start failed:\n{done.stdout}\n{done.stderr}")
    for line in (state / "cluster.env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return cluster


def stop_cluster(cluster: LocalCluster) -> list[int]:
    """``local-cluster.sh stop``, then SIGKILL whatever it left behind; returns the leftovers."""
    subprocess.run([str(SCRIPT), "stop"], env=cluster.env, capture_output=True, timeout=300)
    leftovers = [pid for sid in cluster.pids.values() for pid in session_members(sid)]
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return leftovers


@pytest.fixture(scope="session")
def local_cluster():
    """One local cluster for the session; stopped (and checked stopped) at the end."""
    state = Path(tempfile.mkdtemp(prefix="nsc-", dir="/tmp"))  # short: Ray's socket paths
    cluster = start_cluster(state)
    try:
        yield cluster
    finally:
        leftovers = stop_cluster(cluster)
        shutil.rmtree(state, ignore_errors=True)
        assert not leftovers, f"local-cluster.sh stop left processes running: {leftovers}"


def tiny_study(name: str, storage: Path, epochs: int = 2) -> list[str]:
    """`normstudy run` arguments of a 4-trial digits study (2 arms x 2 seeds) whose trials take
    several seconds: Ray Tune reuses actors, so the worker node gets a trial only if its actor
    is up before the head's actor has finished its first trial."""
    return [
        "quickstart", "--storage", str(storage), "--set", f"name={name}",
        "--set", f"train.epochs={epochs}", "--set", "train.batch_size=16",
        "--set", "train.checkpoint_every_s=0",
        "--set", "model.width=1024", "--set", "seeds=[1, 2]",
        "--set", "sweep={enorm.c: {grid: [0, 1.0]}}",
    ]  # fmt: skip


@dataclass
class FinishedStudy:
    cluster: LocalCluster
    name: str
    folder: Path
    output: str
    seconds: float


@pytest.fixture(scope="session")
def finished_study(local_cluster, tmp_path_factory):
    """The tiny study, run with --address and an HTTP --tracking-uri on the local cluster."""
    storage = tmp_path_factory.mktemp("results")
    started = time.time()
    done = local_cluster.normstudy(
        "run", *tiny_study("cluster-run", storage),
        "--address", local_cluster.ray_address, "--tracking-uri", local_cluster.mlflow_uri,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return FinishedStudy(local_cluster, "cluster-run", storage / "cluster-run", output,
                         time.time() - started)  # fmt: skip


def result_rows(folder: Path) -> dict[str, list[dict]]:
    """trial folder name -> the rows of its result.json."""
    rows = {}
    for path in sorted(folder.glob("trial_*/result.json")):
        rows[path.parent.name] = [json.loads(line) for line in path.read_text().splitlines()]
    return rows


@pytest.fixture
def study_args():
    return tiny_study


@pytest.fixture
def results_of():
    return result_rows


@pytest.fixture
def cluster_factory():
    """Start extra local clusters in a test (``factory(**settings)``); all stopped afterwards."""
    started: list[LocalCluster] = []

    def factory(**settings: str) -> LocalCluster:
        state = Path(tempfile.mkdtemp(prefix="nsc-", dir="/tmp"))
        cluster = start_cluster(state, **settings)
        started.append(cluster)
        return cluster

    yield factory
    leftovers = []
    for cluster in started:
        leftovers += stop_cluster(cluster)
        shutil.rmtree(cluster.state, ignore_errors=True)
    assert not leftovers, f"local-cluster.sh stop left processes running: {leftovers}"
