"""MLflow under load: a real `mlflow server` on a real PostgreSQL, 200 trials (issue 19).

The test starts PostgreSQL from the distribution's package (``initdb`` / ``pg_ctl`` under
/usr/lib/postgresql/*/bin; as the ``postgres`` user when run as root) with its own data
directory on a free loopback port, then ``mlflow server --backend-store-uri postgresql+psycopg2://...``,
runs a 200-trial study against it (1 epoch of 1 step each: the load is the tracking) and
checks that every metric of every epoch arrived once, with one parent run and 200 children.
The driver reports its tracking time (the time its own thread waited for MLflow; deliveries
run on a background thread) as a fraction of the study; the test prints it. Everything
started here is stopped here. Skips, saying why, only where the PostgreSQL binaries are
missing (CI installs Debian's ``postgresql``).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from reliability_kit import (
    MlflowServer,
    assert_tracked_once,
    free_port,
    run_cli,
    tiny_spec,
    write_spec,
)

pytestmark = pytest.mark.integration

TRIALS = 200
SEEDS = [1, 2, 3, 4, 5]


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A throw-away PostgreSQL server: own data directory, 127.0.0.1, trust auth."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="normstudy-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "normstudy"
        # root may not run postgres: the distribution's postgres user does, owning the folder
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, text=True,
                       timeout=timeout, cwd=self.root)  # fmt: skip

    def start(self) -> str:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
                  "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "postgres.log"), "-w", "-t", "60", "start")  # fmt: skip
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", self.user, "mlflow")  # fmt: skip
        # psycopg2 named: SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/mlflow"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres_mlflow(tmp_path):
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql)")  # fmt: skip
    pytest.importorskip("psycopg2", reason="psycopg2-binary (the dev extra) is not installed")
    database = Postgres(bin_dir)
    server = None
    try:
        backend = database.start()
        server = MlflowServer(tmp_path / "server", backend=backend)
        server.root.mkdir()
        server.start(timeout=300)  # the first start creates MLflow's tables
        yield server
    finally:
        if server is not None:
            server.stop()
        database.stop()


def test_200_trials_against_mlflow_on_postgresql(tmp_path, postgres_mlflow):
    server = postgres_mlflow
    arms = TRIALS // len(SEEDS)
    lrs = [round(0.01 + 0.0005 * i, 6) for i in range(arms)]
    spec = tiny_spec("pgload", train__epochs=1, train__steps_per_epoch=1, seeds=SEEDS,
                     sweep={"optimizer.lr": {"grid": lrs}}, baseline={"optimizer.lr": lrs[0]},
                     enorm=None, model__n_layers=2)  # fmt: skip
    spec_file = write_spec(tmp_path, spec)
    started = time.time()
    ran = run_cli(["run", str(spec_file), "--storage", str(tmp_path / "results"),
                   "--tracking-uri", server.uri], timeout=1500)  # fmt: skip
    study_s = time.time() - started
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert f"{TRIALS}/{TRIALS} done" in ran.stdout, ran.stdout[-3000:]
    assert "did not take an update" not in ran.stdout, ran.stdout[-3000:]

    assert_tracked_once(server.uri, "pgload", TRIALS, epochs=1)  # every epoch once, 1 + 200

    match = re.search(r"MLflow tracking: (\d+) update\(s\) delivered in ([\d.]+)s on a background "
                      r"thread; the driver spent ([\d.]+)s on them during the study, ([\d.]+)% of "
                      r"its (\d+)s, and waited ([\d.]+)s", ran.stdout)  # fmt: skip
    assert match, ran.stdout[-3000:]
    updates, delivering, percent = int(match[1]), float(match[2]), float(match[4])
    driver_s, study, drain = float(match[3]), float(match[5]), float(match[6])
    assert updates >= 3 * TRIALS + 2  # start + epoch + finish per trial, study start and end
    print(f"\n{TRIALS} trials on MLflow + PostgreSQL: `normstudy run` {study_s:.0f}s (study "
          f"{study:.0f}s); {updates} updates delivered in {delivering:.1f}s on the delivery "
          f"thread ({delivering / study:.0%} of the study, beside training); the driver spent "
          f"{driver_s:.2f}s = {percent:.2f}% of the study on tracking, and {drain:.1f}s at "
          f"the end waiting for the last updates")
    assert percent < 5, ran.stdout[-3000:]  # logging never holds up the driver's loop
