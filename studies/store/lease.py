"""One study, one driver: a lease file next to the study folder.

Every command that writes a study (``run``, ``run --overwrite``, ``resume``, ``sync``,
``compare`` when it logs, the driver of ``submit``) takes the lease of the study before it
starts any work, and releases it on every exit path. The lease of study ``NAME`` is the file
``<storage>/.NAME.lease``: beside the study folder, so it exists before the folder does and
survives ``--overwrite``; one lease covers both stages of a two-stage study (``NAME`` and
``NAME-confirm``).

File: one JSON object ``{host, host_id, pid, pid_start, started, heartbeat, command, token}``
created with ``O_CREAT | O_EXCL`` (atomic on local disks and on NFSv3+, unlike ``flock``) and
fsynced. The holder rewrites ``heartbeat`` (wall-clock seconds) in place every
``timeout / 6`` seconds through the descriptor it created, so it never writes a file it does not
own; it also checks that the path still names its file, and if not (taken over), warns and,
for the CLI, stops its own study like Ctrl-C. ``release()`` removes the file only if it is
still its own.

Takeover. A lease whose holder is gone is taken over with a message:

- same host (same hostname, boot id and pid namespace): the holder pid is dead, a zombie, or
  a different process (its start time, ``/proc/<pid>/stat``, differs): at once.
- another host: the heartbeat is older than ``NORMSTUDY_LEASE_TIMEOUT_S`` (default 60 s,
  six heartbeats). This is safe while the clocks of the hosts agree to well under 50 s (NTP
  keeps them within milliseconds) and a live holder's heartbeat thread is not stalled for
  longer than the timeout; should that happen anyway, the stalled holder finds its lease
  gone at its next heartbeat and stops its study (state saved, ``resume`` continues it).

A takeover is race-free: the taker holds ``<lease>.takeover`` (exclusive create), checks
that the lease is still the stale one it judged, renames it aside, checks the renamed file
is that one (else puts it back), and then exclusive-creates its own lease like anyone else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studies.config.spec import SpecError

TIMEOUT_ENV = "NORMSTUDY_LEASE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 60.0
HEARTBEATS_PER_TIMEOUT = 6
_TAKEOVER_LOCK_STALE_S = 10.0  # a taker that died holding the takeover lock


def lease_path(storage: str | os.PathLike, study: str) -> Path:
    """``<storage>/.<study>.lease``."""
    return Path(storage) / f".{study}.lease"


def lease_timeout() -> float:
    """Seconds without a heartbeat after which a lease of another host is stale."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise SpecError([(TIMEOUT_ENV, f"{raw!r} is not a positive number of seconds; unset it "
                          f"for the default ({DEFAULT_TIMEOUT_S:.0f} s)")])  # fmt: skip
    return value


def _host_id() -> str:
    """Boot id and pid namespace: equal only where a pid names the same process."""
    parts = []
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return ":".join(parts)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _pid_alive(pid: int, pid_start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        if state in ("Z", "X") or (pid_start is not None and start != pid_start):
            return False  # a zombie, or the pid now names another process
    return True


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease file says, and the file it was read from."""

    study: str
    path: Path
    host: str
    host_id: str
    pid: int
    pid_start: int | None
    started: float
    heartbeat: float
    command: str
    token: str
    identity: tuple[int, int]  # (st_dev, st_ino) of the file

    @property
    def since(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))

    @property
    def same_host(self) -> bool:
        return self.host == socket.gethostname() and self.host_id == _host_id()

    def gone(self, timeout: float | None = None, now: float | None = None) -> str | None:
        """Why the holder is gone (a takeover message), or None while it holds the lease."""
        timeout = lease_timeout() if timeout is None else timeout
        if self.pid > 0 and self.same_host:
            if _pid_alive(self.pid, self.pid_start):
                return None
            return f"its process {self.pid} on {self.host} has ended"
        age = (time.time() if now is None else now) - self.heartbeat
        if age <= timeout:
            return None
        return f"its last heartbeat is {age:.0f} s old ({TIMEOUT_ENV}={timeout:g})"

    def describe(self) -> str:
        host = f"host {self.host}, pid {self.pid}" if self.pid > 0 else "an unknown holder"
        command = f", `{self.command}`" if self.command else ""
        return f"{host}, since {self.since}{command}"


def read_lease(storage: str | os.PathLike, study: str, tries: int = 5) -> LeaseInfo | None:
    """The lease of a study, None if there is none (read-only: for display and checks).

    A file that does not parse (its creator is between create and write, or died there) is
    read again a few times; then it counts as held by an unknown holder since its mtime.
    """
    path = lease_path(storage, study)
    for attempt in range(tries):
        try:
            with open(path, "rb") as file:
                stat = os.fstat(file.fileno())
                raw = file.read(65536)
        except FileNotFoundError:
            return None
        identity = (stat.st_dev, stat.st_ino)
        try:
            data = json.loads(raw)
            return LeaseInfo(
                study=study, path=path, host=str(data["host"]), host_id=str(data["host_id"]),
                pid=int(data["pid"]), pid_start=data.get("pid_start"),
                started=float(data["started"]), heartbeat=float(data["heartbeat"]),
                command=str(data.get("command", "")), token=str(data["token"]),
                identity=identity,
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            if attempt + 1 < tries:
                time.sleep(0.02)
    return LeaseInfo(study, path, "?", "", 0, None, stat.st_mtime, stat.st_mtime, "", "",
                     identity)  # fmt: skip


class LeaseHeld(SpecError):
    """Another driver holds the study's lease (exit code 2, nothing started)."""

    def __init__(self, info: LeaseInfo):
        self.info = info
        message = (
            f"study {info.study!r} is already running: {info.describe()} (lease "
            f"{info.path}). Wait for it to end, or `normstudy resume {info.study}` after "
            "it ends; a crashed driver's lease is taken over by the next command."
        )
        self.problems = [("study", message)]
        ValueError.__init__(self, message)


def _warn(message: str) -> None:
    print(f"[normstudy] {message}", file=sys.stderr, flush=True)


class Lease:
    """A held lease: renewed by a daemon thread until ``release()`` (or the ``with`` ends)."""

    def __init__(self, info: LeaseInfo, fd: int, record: dict, heartbeat_s: float,
                 on_lost: Callable[[], None] | None):  # fmt: skip
        self.info = info
        self.path = info.path
        self.lost = False
        self._fd: int | None = fd
        self._record = record
        self._on_lost = on_lost
        self.created: list[Path] = []  # folders made for the lease: removed again if empty
        self.folder_times: tuple[int, int, int] | None = None  # (atime, mtime) before, after
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True,
                                        name=f"normstudy-lease-{info.study}")  # fmt: skip
        self._thread.start()

    def owned(self) -> bool:
        """The lease path still names the file this lease created."""
        if self._fd is None:
            return False
        try:
            path_stat, own = os.stat(self.path), os.fstat(self._fd)
        except OSError:
            return False
        return (path_stat.st_dev, path_stat.st_ino) == (own.st_dev, own.st_ino)

    def renew(self) -> bool:
        """Write a new heartbeat into our own file; False (and ``lost``) if it is ours no more."""
        with self._lock:
            if self._fd is None or self.lost:
                return False
            self._record["heartbeat"] = time.time()
            data = _encode(self._record)
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
            os.fsync(self._fd)
            if self.owned():
                return True
            self.lost = True
        _warn(f"the lease of study {self.info.study!r} ({self.path}) was taken over by "
              "another driver; stopping this one (its state is saved)")  # fmt: skip
        if self._on_lost is not None:
            self._on_lost()
        return False

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                if not self.renew():
                    return
            except OSError as err:  # a network filesystem hiccup: try again next beat
                _warn(f"could not renew the lease {self.path}: {err}")

    def release(self) -> None:
        """Stop the heartbeat and remove the lease file if it is still ours (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._fd is None:
                return
            if not self.lost and self.owned():
                folder = self.path.parent
                times = self.folder_times
                untouched = times is not None and os.stat(folder).st_mtime_ns == times[2]
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                if times is not None and untouched:  # nothing else changed: leave it as it was
                    try:
                        os.utime(folder, ns=times[:2])
                    except OSError:
                        pass  # not our folder: only its time is off
            os.close(self._fd)
            self._fd = None
        for folder in self.created:  # a refused or failed command leaves no empty folder
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _encode(record: dict) -> bytes:
    return (json.dumps(record, sort_keys=True) + "\n").encode()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale(info: LeaseInfo) -> bool:
    """Move the stale lease ``info`` out of the way under the takeover lock; False when
    another process holds that lock or the lease changed meanwhile (judge again)."""
    lock = info.path.with_name(info.path.name + ".takeover")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            if time.time() - os.stat(lock).st_mtime > _TAKEOVER_LOCK_STALE_S:
                os.unlink(lock)  # its taker died mid-takeover
        except FileNotFoundError:
            pass
        time.sleep(0.05)
        return False
    try:
        current = read_lease(info.path.parent, info.study)
        if current is None or (current.identity, current.token) != (info.identity, info.token):
            return False
        aside = info.path.with_name(f"{info.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(info.path, aside)
        except FileNotFoundError:
            return False
        stat = os.stat(aside)
        if (stat.st_dev, stat.st_ino) != info.identity:  # a fresh lease slipped in: restore
            try:
                os.link(aside, info.path)
            except FileExistsError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True
    finally:
        os.close(fd)
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass


def acquire_lease(storage: str | os.PathLike, study: str, command: str = "", *,
                  timeout: float | None = None, heartbeat_s: float | None = None,
                  interrupt_on_loss: bool = False) -> Lease:  # fmt: skip
    """Take the lease of ``study`` in the results folder ``storage`` (created if missing).

    Raises :class:`LeaseHeld` while another live driver holds it; takes over (with a
    message) a lease whose holder is gone. ``interrupt_on_loss``: should the lease be taken
    over while held (a stalled heartbeat), send this process SIGINT so the study stops.
    """
    timeout = lease_timeout() if timeout is None else timeout
    heartbeat_s = timeout / HEARTBEATS_PER_TIMEOUT if heartbeat_s is None else heartbeat_s
    storage = Path(storage)
    created = [p for p in (storage, *storage.parents) if not p.exists()]
    storage.mkdir(parents=True, exist_ok=True)
    path = lease_path(storage, study)
    stat = _proc_stat(os.getpid())
    before = os.stat(storage)
    now = time.time()
    record: dict[str, Any] = {
        "host": socket.gethostname(), "host_id": _host_id(), "pid": os.getpid(),
        "pid_start": stat[1] if stat else None, "started": now, "heartbeat": now,
        "command": command, "token": uuid.uuid4().hex,
    }  # fmt: skip
    taken_from: tuple[LeaseInfo, str] | None = None
    deadline = time.monotonic() + 30
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        else:
            try:
                os.write(fd, _encode(record))
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
            _fsync_dir(storage)
            if taken_from is not None:
                _warn(f"took over the lease of study {study!r} from {taken_from[0].describe()}: "
                      f"{taken_from[1]}")  # fmt: skip
            st = os.fstat(fd)
            info = LeaseInfo(study, path, record["host"], record["host_id"], record["pid"],
                             record["pid_start"], now, now, command, record["token"],
                             (st.st_dev, st.st_ino))  # fmt: skip
            on_lost = (lambda: os.kill(os.getpid(), signal.SIGINT)) if interrupt_on_loss else None
            lease = Lease(info, fd, record, heartbeat_s, on_lost)
            lease.created = created
            lease.folder_times = (before.st_atime_ns, before.st_mtime_ns,
                                  os.stat(storage).st_mtime_ns)  # fmt: skip
            return lease
        holder = read_lease(storage, study)
        if holder is None:
            continue  # released meanwhile: try again
        reason = holder.gone(timeout)
        if reason is None:
            raise LeaseHeld(holder)
        if _remove_stale(holder):
            taken_from = (holder, reason)
        elif time.monotonic() > deadline:
            raise LeaseHeld(holder)
