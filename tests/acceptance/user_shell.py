"""Helpers of the acceptance suite (fixtures: conftest.py): a user's shell that runs the
installed ``normstudy`` console script in a fresh working directory. Nothing here starts Ray
or MLflow for the CLI.

The working directory's path is long and has a space (and, for the second run of the main
flow, non-ASCII characters); ``PWD`` is that directory, ``HOME`` another temporary folder, and
``AWS_SECRET_ACCESS_KEY`` a fake credential that must appear in no file and no MLflow record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

BIN = Path(sys.executable).parent
NORMSTUDY = BIN / "normstudy"
SECRET = "acceptance-secret-123"
TRIALS = 15  # the quickstart: 3 arms x 5 seeds
ARMS = ("enorm.c=0", "enorm.c=1.0", "enorm.c=1.2")
WORKDIRS = {"space": ("my studies", "study-1"), "non-ascii": ("études", "é-1")}


@dataclass
class Ran:
    code: int
    out: str
    err: str
    seconds: float  # wall time: printed, never asserted (a loaded machine stretches it)
    cpu_seconds: float  # the command's own CPU time (user + system), whatever the load

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Shell:
    """A user's shell: a working directory and an environment, running ``normstudy``."""

    cwd: Path
    env: dict[str, str]
    started: list[subprocess.Popen] = field(default_factory=list)

    @property
    def results(self) -> Path:
        return self.cwd / "normstudy-results"

    def run(self, *args: str, timeout: float = 600) -> Ran:
        """Run ``normstudy ARGS`` to its end; past ``timeout`` it is killed and the test fails.

        The command is reaped here with ``os.wait4``, which gives its CPU time (and that of
        what it started and waited for): "refused within seconds" is asserted on that, which
        a loaded machine does not stretch, instead of on wall time.
        """
        began = time.monotonic()
        proc = self.start(*args)
        with ThreadPoolExecutor(2) as pool:
            out, err = (pool.submit(stream.read) for stream in (proc.stdout, proc.stderr))
            timed_out = threading.Event()
            killer = threading.Timer(timeout, lambda: (timed_out.set(), self.kill(proc)))
            killer.start()
            _, status, usage = os.wait4(proc.pid, 0)
            killer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            text = (out.result(), err.result())
            proc.stdout.close(), proc.stderr.close()  # type: ignore[union-attr]
        if timed_out.is_set():
            pytest.fail(f"normstudy {' '.join(args)} ran past {timeout}s:\n{text[0]}\n{text[1]}")
        return Ran(proc.returncode, *text, time.monotonic() - began,
                   usage.ru_utime + usage.ru_stime)  # fmt: skip

    def start(self, *args: str, **popen) -> subprocess.Popen:
        """Start ``normstudy ARGS`` in a new session (its process group holds all it starts)."""
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen([str(NORMSTUDY), *args], cwd=self.cwd, env=self.env, text=True,
                                start_new_session=True, **popen)  # fmt: skip
        self.started.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL a started command and everything it started (its group and descendants)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            family = psutil.Process(proc.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for child in locals().get("family", []):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()

    @classmethod
    def stop(cls, proc: subprocess.Popen) -> None:
        """:meth:`kill`, then reap the command."""
        cls.kill(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None or _group_alive(proc.pid):
                self.stop(proc)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def make_shell(root: Path, parts: tuple[str, ...]) -> Shell:
    cwd = root.joinpath(*parts)
    cwd.mkdir(parents=True)
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RAY_", "MLFLOW_", "NORMSTUDY_"))}  # fmt: skip
    env.update(PWD=str(cwd), HOME=str(home), AWS_SECRET_ACCESS_KEY=SECRET, PYTHONUNBUFFERED="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # fmt: skip
    return Shell(cwd, env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def study_runs(user, name="quickstart"):
    client = MlflowClient(tracking_uri=f"sqlite:///{user.results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name!r}"
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    parents = [r for r in runs if r.data.tags.get("normstudy.role") == "study"]
    children = [r for r in runs if r.data.tags.get("normstudy.role") == "trial"]
    return client, experiment, parents, children


def assert_accounted(user, trials=TRIALS):
    """One parent and one FINISHED child per trial, each with an end time, none twice."""
    _, _, parents, children = study_runs(user)
    assert len(parents) == 1 and len(children) == trials
    ids = Counter(r.data.tags["normstudy.trial_id"] for r in children)
    assert len(ids) == trials and max(ids.values()) == 1
    for run in [*parents, *children]:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        assert run.info.end_time and run.info.end_time >= run.info.start_time
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    return parents[0], children
