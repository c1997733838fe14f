"""Test tiers, and what every test folder shares.

Every test is in exactly one tier (a marker): ``unit`` (the inner loop: no Ray, no server, no
CLI subprocess; a guard below fails a unit test that starts one), ``integration`` (real Ray,
MLflow servers, databases, in-process), ``acceptance`` (the installed ``normstudy`` command
from a temporary folder: tests/acceptance/), ``cluster`` (a local multi-node Ray cluster:
tests/cluster/). A test without a tier marker outside those two folders is a unit test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
TIERS = ("unit", "integration", "acceptance", "cluster")
FOLDER_TIERS = {"acceptance": "acceptance", "cluster": "cluster"}
# What a unit test may not start: a CLI of ours or of the services we drive.
SERVICE_COMMANDS = ("normstudy", "mlflow", "ray", "postgres", "pg_ctl", "initdb", "moto_server")

# Helpers shared by every test folder (e.g. dataset_files: torchvision's file layouts).
sys.path.insert(0, str(TESTS))

# Two cores on the CI machine: keep intra-op threads small so parallel
# processes (Ray workers) do not oversubscribe.
torch.set_num_threads(2)

# The signal dispositions a terminal gives, whoever started pytest: a background job of a
# non-interactive shell starts with SIGINT ignored, and every command a test starts would
# inherit that (a Ctrl-C test then waits for nothing). A handler, unlike SIG_IGN, is reset
# to the default in a child at exec.
signal.signal(signal.SIGINT, signal.default_int_handler)


def tier_of(item: pytest.Item) -> str:
    """The test's one tier: its folder's, its marker's, else ``unit``; two is an error."""
    marked = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
    folder = Path(str(item.path)).relative_to(TESTS).parts[0]
    if folder in FOLDER_TIERS:
        marked.add(FOLDER_TIERS[folder])
    if len(marked) > 1:
        raise pytest.UsageError(f"{item.nodeid} is in tiers {sorted(marked)}: give it one")
    return marked.pop() if marked else "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if not item.get_closest_marker(tier):
            item.add_marker(tier)


def _refuse(what: str) -> None:
    raise RuntimeError(f"a unit test started {what}: mark it integration (Ray, servers, "
                       "in-process) or acceptance (the CLI), or make it a unit test")


@pytest.fixture(autouse=True)
def unit_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A unit test that starts Ray, a server or one of our CLIs fails loudly."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    import ray

    def no_ray(*args: object, **kwargs: object) -> None:
        _refuse("Ray (ray.init)")

    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.setattr(ray._private.worker, "init", no_ray)
    real_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        argv = [args] if isinstance(args, (str, bytes)) else list(args)  # type: ignore[call-overload]
        words = " ".join(map(str, argv)).split()
        names = {Path(word).name for word in words}
        if names & set(SERVICE_COMMANDS) or "studies.cli" in words:
            _refuse(f"a subprocess ({' '.join(words)[:120]})")
        real_init(self, args, *rest, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    yield
