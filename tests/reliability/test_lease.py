"""Promise 9: one study, one driver. A second writer of a running study is refused before any
work (exit 2, the holder named); a crashed holder's lease is taken over, so `resume` is never
blocked. Real `normstudy` processes; MLflow exactly once after each scenario."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import uuid

import pytest
from reliability_kit import (
    EPOCHS,
    assert_tracked_once,
    driver_env,
    result_rows,
    sqlite_uri,
    tiny_spec,
    write_spec,
)

pytestmark = pytest.mark.integration

TRIALS = 4
REFUSED_WITHIN_S = 60  # import + refusal on a loaded 2-core machine; typically ~5 s


def wait_for(condition, driver, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert driver.proc.poll() is None, f"ended before {what}:\n{driver.output[-3000:]}"
        assert time.time() < deadline, f"never reached {what}:\n{driver.output[-3000:]}"
        time.sleep(0.05)


def refused_output(driver, holder_pid: int, study: str, started: float) -> float:
    """A command that must be refused: exit 2 naming the holder and the fix; its wall time."""
    code = driver.wait(REFUSED_WITHIN_S)
    out = driver.output
    assert code == 2, out[-3000:]
    assert f"study '{study}' is already running" in out and f"pid {holder_pid}" in out, out
    assert f"normstudy resume {study}" in out and "Traceback" not in out, out
    return round(time.monotonic() - started, 1)


def refused(drivers, args: list[str], holder_pid: int, study: str, env=None) -> float:
    started = time.monotonic()
    return refused_output(drivers(args, env), holder_pid, study, started)


def assert_complete(storage, study: str) -> None:
    """Every trial once, finished; MLflow: one parent, one run per trial, none KILLED or
    RUNNING; the lease is gone."""
    rows = result_rows(storage / study)
    assert len(rows) == TRIALS, sorted(rows)
    assert all(lines and lines[-1]["epoch"] == EPOCHS for lines in rows.values())
    assert_tracked_once(sqlite_uri(storage), study, TRIALS)
    assert not (storage / f".{study}.lease").exists()


@contextlib.contextmanager
def frozen(driver):
    """SIGSTOP the holder meanwhile: alive, its heartbeat stopping, the study unable to end
    (and on two shared cores, the other commands start without competing with it)."""
    os.kill(driver.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(driver.proc.pid, signal.SIGCONT)


def test_second_run_resume_and_overwrite_refused_while_a_run_holds(tmp_path, drivers):
    """A second `run` as the first starts; once trials report, `resume`, `run --overwrite`
    (refused) and `list` (shows the holder)."""
    storage = tmp_path / "results"
    spec_file = write_spec(tmp_path, tiny_spec("leased", max_concurrent=1))
    run = ["run", str(spec_file), "--storage", str(storage)]
    first = drivers(run)
    lease = storage / ".leased.lease"
    wait_for(lease.exists, first, "the lease")
    token = json.loads(lease.read_text())["token"]
    pid = first.proc.pid
    with frozen(first):
        seconds = {"run": refused(drivers, run, pid, "leased")}
    wait_for(lambda: any(result_rows(storage / "leased").values()), first, "the first epoch")
    with frozen(first):
        seconds["resume"] = refused(drivers, ["resume", "leased", "--storage", str(storage)],
                                    pid, "leased")  # fmt: skip
        seconds["overwrite"] = refused(drivers, [*run, "--overwrite"], pid, "leased")
        listing = drivers(["list", "--storage", str(storage)])
        assert listing.wait(REFUSED_WITHIN_S) == 0, listing.output
    assert f"running ({socket.gethostname()}, pid {pid})" in listing.output, listing.output
    assert json.loads(lease.read_text())["token"] == token  # untouched by the refused ones
    assert first.wait(300) == 0, first.output[-4000:]
    print(f"refused within {seconds} s")
    assert_complete(storage, "leased")


def test_stale_lease_of_another_host_is_taken_over_after_the_timeout(tmp_path, drivers):
    storage = tmp_path / "results"
    storage.mkdir()
    spec_file = write_spec(tmp_path, tiny_spec("remote", max_concurrent=2))
    now = time.time()
    record = {"host": "remote-head", "host_id": "another-boot:1", "pid": 4242, "pid_start": 7,
              "started": now - 3600, "heartbeat": now, "command": "normstudy run remote.yaml",
              "token": uuid.uuid4().hex}  # fmt: skip
    (storage / ".remote.lease").write_text(json.dumps(record))
    run = ["run", str(spec_file), "--storage", str(storage)]
    patient = driver_env(NORMSTUDY_LEASE_TIMEOUT_S="600")
    refused(drivers, run, 4242, "remote", patient)  # a fresh heartbeat: it may be alive
    assert sorted(p.name for p in storage.iterdir()) == [".remote.lease"]  # nothing written
    time.sleep(max(0.0, now + 4.5 - time.time()))
    second = drivers(run, driver_env(NORMSTUDY_LEASE_TIMEOUT_S="4"))
    assert second.wait(300) == 0, second.output[-4000:]
    assert "took over the lease of study 'remote' from host remote-head, pid 4242" in \
           second.output and "heartbeat" in second.output  # fmt: skip
    assert_complete(storage, "remote")
