"""Helpers of the reliability suite: tiny specs, driver subprocesses that can be SIGKILLed,
a real MLflow server, and readers for results and runs (fixtures: conftest.py).

Everything started here is stopped here, also when a test fails: Ray by
``ray.shutdown``, subprocesses by killing their own process group (each one is
started in a new session, so its group holds exactly what it spawned).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NORMSTUDY = str(REPO / ".venv" / "bin" / "normstudy")
MLFLOW = str(REPO / ".venv" / "bin" / "mlflow")
EPOCHS = 3
# Test-only disk-full fault (studies/checkpoints.py), armed in the shared Ray for one study.
DISK_FULL_STUDY = "diskfull"
DISK_FULL = {"NORMSTUDY_FAULT_DISK_FULL_AT_EPOCH": f"2@/{DISK_FULL_STUDY}/"}


def tiny_spec(study: str, **changes) -> dict:
    """A 4-trial study (ENorm c in {0, 1.2} x seeds {1, 2}, 3 short epochs on digits)."""
    spec = {
        "name": study,
        "dataset": {"name": "digits", "val_fraction": 0.1},
        "model": {"name": "fully_connected", "n_layers": 3, "width": 16},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "enorm": {"c": 0},
        # every epoch checkpoints: these tests are about restoring from checkpoints
        "train": {"epochs": EPOCHS, "batch_size": 32, "steps_per_epoch": 6,
                  "checkpoint_every_s": 0},
        "sweep": {"enorm.c": {"grid": [0, 1.2]}},
        "seeds": [1, 2],
        "baseline": {"enorm.c": 0},
        "resources": {"cpu": 1},
    }
    for path, value in changes.items():
        node = spec
        *parents, last = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


def write_spec(folder: Path, spec: dict) -> Path:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def driver_env(**extra: str) -> dict[str, str]:
    """Environment of a `normstudy` subprocess: its own new local Ray (never a cluster another
    process started on this machine), unbuffered output, small thread pools."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": "local", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # set in this process by the in-process studies (studies.run.tune.prepare_env): a
    # subprocess decides for itself, as from a user's shell (an older normstudy needs Ray's
    # automatic loggers for its result.json)
    env.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)
    env.update(extra)
    return env


def kill_group(pgid: int, timeout: float = 20) -> None:
    """SIGKILL every process of a group and wait until none is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


class Driver:
    """A `normstudy` command in its own process group; stdout and stderr are collected."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 kill_on: str | None = None, cwd: Path | None = None):
        """``kill_on``: SIGKILL the driver from the reading thread as soon as a line contains
        it (no polling delay, for moments shorter than a poll: the comparison stage).
        ``cwd``: the working directory (default: the repository)."""
        self.lines: list[str] = []
        self.kill_on = kill_on
        self.killed = threading.Event()
        self.proc = subprocess.Popen(
            [NORMSTUDY, *args], cwd=cwd or REPO, env=env or driver_env(), start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.kill_on and self.kill_on in line and not self.killed.is_set():
                self.killed.set()  # first: from now on no one else polls (reaps) the driver
                os.kill(self.proc.pid, signal.SIGKILL)  # not reaped yet: the pid is still ours

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def sigkill(self) -> None:
        """SIGKILL the driver alone (as a crash would), then the Ray it had started."""
        if not self.killed.is_set():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        kill_group(self.proc.pid)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            kill_group(self.proc.pid)
            self._reader.join(5)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        kill_group(self.proc.pid)


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None):
    """A `normstudy` command to its end (in ``cwd``, default the repository); returns the
    CompletedProcess."""
    driver = Driver(args, env, cwd=cwd)
    try:
        code = driver.wait(timeout)
    except subprocess.TimeoutExpired:
        driver.close()
        pytest.fail(f"normstudy {' '.join(args)} ran over {timeout}s:\n{driver.output[-3000:]}")
    return subprocess.CompletedProcess(args, code, driver.output, "")


# ---------------------------------------------------------------------------
# Reading results and runs


def result_rows(folder: Path) -> dict[str, list[dict]]:
    """trial dir name -> the rows of its result.json (complete lines only)."""
    rows = {}
    for path in sorted(Path(folder).glob("trial_*/result.json")):
        lines = []
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut short by the kill
        rows[path.parent.name] = lines
    return rows


def trial_key(trial_dir: Path) -> str:
    """What identifies a trial across two runs of one spec: its config (arm + seed)."""
    return json.dumps(json.loads((trial_dir / "params.json").read_text()), sort_keys=True)


DETERMINISTIC = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                 "test_acc", "lr", "diverged")  # fmt: skip (epoch_seconds is a wall time)


def epoch_metrics(folder: Path) -> dict[str, dict[int, tuple]]:
    """config key -> epoch -> the deterministic metrics of the last report of that epoch."""
    table = {}
    for trial_dir in sorted(Path(folder).glob("trial_*")):
        rows = result_rows(folder).get(trial_dir.name, [])
        table[trial_key(trial_dir)] = {
            row["epoch"]: tuple(row.get(k) for k in DETERMINISTIC) for row in rows
        }
    return table


def mlflow_runs(uri: str, experiment: str):
    """(client, parent runs, trial runs) of a study's experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} at {uri}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("normstudy.role") == "study"]
    children = [r for r in runs if r.data.tags.get("normstudy.role") == "trial"]
    return client, parents, children


def sqlite_uri(storage: Path) -> str:
    return f"sqlite:///{(storage / 'mlflow.db').resolve()}"


def assert_tracked_once(uri: str, name: str, trials: int, epochs: int = EPOCHS) -> dict:
    """Exactly one parent run and one child run per trial, none RUNNING, every epoch of every
    metric logged exactly once. Returns trial id -> {metric: {epoch: value}}."""
    client, parents, children = mlflow_runs(uri, name)
    assert len(parents) == 1, [p.info.run_id for p in parents]
    assert parents[0].info.status == "FINISHED"
    ids = [r.data.tags["normstudy.trial_id"] for r in children]
    assert len(children) == trials and len(set(ids)) == trials, sorted(ids)
    assert {r.info.status for r in children} == {"FINISHED"}
    logged = {}
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        per_metric = {}
        for key in ("epoch", "val_acc", "train_loss", "test_acc"):
            history = client.get_metric_history(run.info.run_id, key)
            steps = [m.step for m in history]
            assert sorted(steps) == list(range(1, epochs + 1)), (key, steps)  # once each
            per_metric[key] = {m.step: m.value for m in history}
        logged[run.data.tags["normstudy.trial_id"]] = per_metric
    return logged


def tree_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file and folder under ``folder``."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    snap = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        snap[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return snap


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (SQLite store, or ``backend``) that can be stopped
    and restarted on the same port and store. ``serve_artifacts``: clients send and fetch
    artifacts over HTTP (``mlflow-artifacts:/``, kept under ``root/artifacts``), as from
    another machine; else they write ``root/artifacts`` directly."""

    def __init__(self, root: Path, backend: str | None = None, serve_artifacts: bool = False):
        self.root = Path(root)
        self.backend = backend or f"sqlite:///{self.root / 'server.db'}"
        self.serve_artifacts = serve_artifacts
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.root / "server.log"

    def start(self, timeout: float = 180) -> None:
        import urllib.request

        command = [
            MLFLOW, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", self.backend,
        ]  # fmt: skip
        if self.serve_artifacts:
            artifacts = str(self.root / "artifacts")
            command += ["--serve-artifacts", "--artifacts-destination", artifacts]
        else:
            command += ["--default-artifact-root", (self.root / "artifacts").as_uri()]
        with open(self.log, "a") as log:
            env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner
            self.proc = subprocess.Popen(command, cwd=self.root, start_new_session=True, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"mlflow server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Kill the server and everything it spawned (as a crash would): the port refuses
        connections at once."""
        if self.proc is None:
            return
        kill_group(self.proc.pid)
        self.proc.wait()
        self.proc = None
