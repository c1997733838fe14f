"""``normstudy ui``: the MLflow UI of a results directory, on loopback only.

The MLflow server (``mlflow server``, which ``mlflow ui`` aliases) runs with one uvicorn
worker and no job runner, in a new process group, so SIGINT or SIGTERM to ``normstudy ui``
alone (a process manager, ``timeout``) stops all of it and frees the port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from studies.config.spec import SpecError
from studies.store.layout import MLFLOW_DB, default_tracking_uri
from studies.store.queries import runs_page


def serve_ui(storage: Path, port: int) -> int:
    """Serve the MLflow UI of the store in ``storage`` on 127.0.0.1 until Ctrl-C or SIGTERM,
    which stop the server and every process it started (its own process group)."""
    if not (storage / MLFLOW_DB).is_file():
        raise SpecError([("--storage", f"no MLflow store in {storage} (run a study first)")])
    check_port_free(port)
    uri = default_tracking_uri(storage)
    base = f"http://127.0.0.1:{port}"
    print(f"[normstudy] MLflow UI at {base} (store {uri}); Ctrl-C to stop", flush=True)
    for name, experiment_id in study_experiments(uri):
        print(f"[normstudy]   {name}: {runs_page(base, experiment_id)}", flush=True)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # before the server starts: it never outlives us
    server = subprocess.Popen(command, start_new_session=True, env=server_env())
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_group(server)


def study_experiments(uri: str) -> list[tuple[str, str]]:
    """(name, id) of the experiments in a store, oldest first; the Default one left out."""
    from mlflow import MlflowClient

    experiments = MlflowClient(tracking_uri=uri).search_experiments()
    return [(e.name, e.experiment_id) for e in sorted(experiments,
                                                      key=lambda e: e.creation_time or 0)
            if e.name != "Default"]  # fmt: skip


def check_port_free(port: int) -> None:
    if not 0 < port < 65536:
        raise SpecError([("--port", f"{port} is not a TCP port (1-65535)")])
    with socket.socket() as sock:  # as the server will bind: TIME_WAIT is not "in use"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise SpecError([("--port", f"127.0.0.1:{port} is in use; pass --port with a free "
                              "port, e.g. --port 5001")]) from None  # fmt: skip


def server_env() -> dict[str, str]:
    """The UI server's environment: without MLflow's job runner (server-side GenAI jobs, not
    needed to browse runs; one process less to start and stop). The user's setting wins."""
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM a process started in its own session and all it started; after ``grace_s``,
    SIGKILL what is left of the group. Returns once the group is empty (at most ~2 x grace_s).
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        if _group_gone(process, timeout=grace_s):
            return


def _group_gone(leader: subprocess.Popen, timeout: float) -> bool:
    """Whether the process group of ``leader`` is empty within ``timeout`` seconds (the leader
    is reaped on the way: a zombie still counts as a member)."""
    deadline = time.monotonic() + timeout
    while True:
        leader.poll()
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
