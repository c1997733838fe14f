"""studies/store/lease.py: one driver per study (exclusive create, heartbeat, takeover), and the CLI
commands refusing a held study before any work."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from studies.config.spec import SpecError
from studies.store.lease import (
    TIMEOUT_ENV,
    LeaseHeld,
    acquire_lease,
    lease_path,
    lease_timeout,
    read_lease,
)

REPO = Path(__file__).resolve().parents[3]


def write_foreign(storage: Path, study: str, **fields) -> Path:
    """A lease file written by 'someone else' (defaults: a live lease of another host)."""
    now = time.time()
    record = {"host": "elsewhere", "host_id": "other-boot:1", "pid": 4242, "pid_start": 1,
              "started": now - 100, "heartbeat": now, "command": "normstudy run x",
              "token": uuid.uuid4().hex, **fields}  # fmt: skip
    path = lease_path(storage, study)
    storage.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_exclusive_create_then_refuse_with_a_message(tmp_path):
    with acquire_lease(tmp_path, "s", "normstudy run s.yaml") as lease:
        data = json.loads(lease_path(tmp_path, "s").read_text())
        assert data["pid"] == os.getpid() and data["host"] == socket.gethostname()
        assert data["command"] == "normstudy run s.yaml" and data["token"] == lease.info.token
        with pytest.raises(LeaseHeld) as refused:
            acquire_lease(tmp_path, "s", "normstudy resume s")
        message = str(refused.value)
        assert isinstance(refused.value, SpecError)
        for part in ("'s'", socket.gethostname(), f"pid {os.getpid()}", "since ",
                     "normstudy run s.yaml", "normstudy resume s", "Wait"):  # fmt: skip
            assert part in message, (part, message)
        assert read_lease(tmp_path, "s").gone() is None
    assert not lease_path(tmp_path, "s").exists()  # released
    assert read_lease(tmp_path, "s") is None
    acquire_lease(tmp_path, "s").release()  # free again


def test_other_studies_do_not_conflict(tmp_path):
    with acquire_lease(tmp_path, "a"), acquire_lease(tmp_path, "b"):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".a.lease", ".b.lease"]


def test_release_removes_only_its_own_file(tmp_path):
    lease = acquire_lease(tmp_path, "s", heartbeat_s=60)
    path = lease_path(tmp_path, "s")
    os.rename(path, tmp_path / "moved")  # another driver took it over meanwhile...
    write_foreign(tmp_path, "s", token="theirs")
    assert lease.renew() is False and lease.lost
    lease.release()
    assert json.loads(path.read_text())["token"] == "theirs"  # ...and keeps it
    lease.release()  # idempotent


def test_heartbeat_thread_renews_the_file(tmp_path):
    with acquire_lease(tmp_path, "s", heartbeat_s=0.05) as lease:
        first = read_lease(tmp_path, "s").heartbeat
        time.sleep(0.4)
        later = read_lease(tmp_path, "s")
        assert later.heartbeat > first and later.token == lease.info.token
        assert later.started == lease.info.started


def test_dead_pid_on_this_host_is_taken_over_at_once(tmp_path, capsys):
    live = acquire_lease(tmp_path, "s")
    record = json.loads(lease_path(tmp_path, "s").read_text())
    live.release()
    write_foreign(tmp_path, "s", host=record["host"], host_id=record["host_id"],
                  pid=ended_pid(), pid_start=None, heartbeat=time.time())  # fmt: skip
    started = time.monotonic()
    with acquire_lease(tmp_path, "s", timeout=3600) as lease:
        assert time.monotonic() - started < 10  # no wait for the lease's timeout (3600 s)
        assert read_lease(tmp_path, "s").token == lease.info.token
    assert "took over the lease of study 's'" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == []  # no stale copy or takeover lock left


def test_reused_pid_is_not_the_holder(tmp_path):
    """The lease names our own (live) pid but another start time: the holder is gone."""
    with acquire_lease(tmp_path, "probe") as probe:
        record = json.loads(probe.path.read_text())
    write_foreign(tmp_path, "s", host=record["host"], host_id=record["host_id"],
                  pid=os.getpid(), pid_start=record["pid_start"] - 1)  # fmt: skip
    assert "has ended" in read_lease(tmp_path, "s").gone()
    acquire_lease(tmp_path, "s").release()


def test_fresh_remote_lease_is_refused(tmp_path):
    write_foreign(tmp_path, "s", heartbeat=time.time() - 5)
    with pytest.raises(LeaseHeld, match="host elsewhere, pid 4242"):
        acquire_lease(tmp_path, "s", timeout=60)
    assert json.loads(lease_path(tmp_path, "s").read_text())["host"] == "elsewhere"


def test_stale_remote_lease_is_taken_over_after_the_timeout(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(TIMEOUT_ENV, "0.5")
    assert lease_timeout() == 0.5
    write_foreign(tmp_path, "s", heartbeat=time.time())
    with pytest.raises(LeaseHeld):
        acquire_lease(tmp_path, "s")  # fresh: the holder may be alive
    time.sleep(0.7)
    with acquire_lease(tmp_path, "s") as lease:
        assert read_lease(tmp_path, "s").token == lease.info.token
    err = capsys.readouterr().err
    assert "took over" in err and "host elsewhere" in err and "heartbeat" in err


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_bad_timeout_is_a_spec_error(monkeypatch, value):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(SpecError, match=TIMEOUT_ENV):
        lease_timeout()


def test_unreadable_lease_counts_as_held_until_its_mtime_is_stale(tmp_path):
    path = lease_path(tmp_path, "s")
    path.write_bytes(b"")  # its creator died between create and write
    with pytest.raises(LeaseHeld, match="unknown holder"):
        acquire_lease(tmp_path, "s", timeout=30)
    old = time.time() - 60
    os.utime(path, (old, old))
    acquire_lease(tmp_path, "s", timeout=30).release()


def test_concurrent_acquire_in_threads_one_wins(tmp_path):
    barrier, results = threading.Barrier(8), []

    def attempt():
        barrier.wait()
        try:
            results.append(acquire_lease(tmp_path, "s"))
        except LeaseHeld:
            results.append(None)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [lease for lease in results if lease is not None]
    assert len(results) == 8 and len(winners) == 1
    winners[0].release()


RACER = """
import sys, time
from studies.store.lease import LeaseHeld, acquire_lease
storage, at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, at - time.time()))
try:
    lease = acquire_lease(storage, "s", "racer")
except LeaseHeld:
    print("HELD", flush=True)
else:
    print("WON", flush=True)
    time.sleep(2)
    lease.release()
"""


def race(storage: Path, n: int = 6) -> list[str]:
    """``n`` processes acquire the lease at the same instant; their verdicts."""
    at = time.time() + 3  # all of them imported by then
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(storage), str(at)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]  # fmt: skip
    return sorted(proc.communicate(timeout=60)[0].strip() for proc in procs)


def test_concurrent_acquire_in_processes_one_wins(tmp_path):
    assert race(tmp_path) == ["HELD"] * 5 + ["WON"]
    assert os.listdir(tmp_path) == []


def test_concurrent_takeover_of_a_dead_holder_one_wins(tmp_path):
    with acquire_lease(tmp_path, "probe") as probe:
        record = json.loads(probe.path.read_text())
    write_foreign(tmp_path, "s", host=record["host"], host_id=record["host_id"],
                  pid=ended_pid(), pid_start=None)  # fmt: skip
    assert race(tmp_path) == ["HELD"] * 5 + ["WON"]
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# The CLI: refused before any work, read-only commands never take the lease.


def tiny_study(tmp_path: Path) -> Path:
    import yaml

    spec = {"name": "lease-cli", "model": {"name": "fully_connected", "n_layers": 3, "width": 16},
            "optimizer": {"name": "sgd", "lr": 0.1}, "enorm": {"c": 0},
            "train": {"epochs": 1, "batch_size": 32}, "sweep": {"enorm.c": {"grid": [0, 1]}},
            "seeds": [1]}  # fmt: skip
    path = tmp_path / "lease-cli.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_cli_run_and_overwrite_refused_while_held(tmp_path, capsys):
    from studies.cli import main

    storage = tmp_path / "results"
    spec = tiny_study(tmp_path)
    with acquire_lease(storage, "lease-cli", "normstudy run lease-cli.yaml"):
        before = sorted(os.listdir(storage))
        for extra in ([], ["--overwrite"]):
            code = main(["run", str(spec), "--storage", str(storage), *extra])
            assert code == 2
            err = capsys.readouterr().err
            assert "study 'lease-cli' is already running" in err and "Traceback" not in err
            assert f"pid {os.getpid()}" in err and "normstudy resume lease-cli" in err
            assert sorted(os.listdir(storage)) == before  # nothing written


def test_cli_writers_refused_and_readers_free_on_a_held_study(tmp_path, capsys):
    from studies.cli import main

    storage = tmp_path / "results"
    (storage / "held").mkdir(parents=True)
    (storage / "held" / "study.yaml").write_text("name: held\ntrain: {epochs: 2}\n")
    with acquire_lease(storage, "held", "normstudy run held.yaml"):
        for command in (["resume", "held"], ["sync", "held"], ["compare", "held"]):
            assert main([*command, "--storage", str(storage)]) == 2, command
            assert "study 'held' is already running" in capsys.readouterr().err
        main(["compare", "held", "--no-log", "--storage", str(storage)])  # read-only: no lease
        assert "already running" not in capsys.readouterr().err
        assert main(["list", "--storage", str(storage)]) == 0
        out = capsys.readouterr().out
        assert f"running ({socket.gethostname()}, pid {os.getpid()})" in out
    assert sorted(os.listdir(storage)) == ["held"]
    assert main(["list", "--storage", str(storage)]) == 0
    assert "running (" not in capsys.readouterr().out


def test_a_refused_or_failed_command_leaves_no_empty_folder(tmp_path):
    storage = tmp_path / "new" / "results"
    acquire_lease(storage, "s").release()
    assert os.listdir(tmp_path) == []  # the folders it made for the lease, removed again
    with acquire_lease(storage, "s"):
        (storage / "s").mkdir()  # the study wrote something: kept
    assert os.listdir(storage) == ["s"]


def test_a_command_that_wrote_nothing_leaves_the_folder_times_unchanged(tmp_path):
    old = time.time() - 3600
    os.utime(tmp_path, (old, old))
    before = os.stat(tmp_path).st_mtime_ns
    acquire_lease(tmp_path, "s").release()
    assert os.stat(tmp_path).st_mtime_ns == before
    with acquire_lease(tmp_path, "s"):
        (tmp_path / "s").mkdir()
    assert os.stat(tmp_path).st_mtime_ns != before  # it wrote: the folder's time is real
