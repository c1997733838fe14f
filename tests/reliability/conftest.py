"""Fixtures of the reliability suite (helpers: reliability_kit.py). Everything a fixture
starts, it stops, also when the test fails."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reliability_kit import DISK_FULL, Driver, tiny_spec, write_spec  # noqa: E402


@pytest.fixture
def drivers():
    """Start `normstudy` subprocesses with ``drivers(args)``; all are killed at teardown."""
    started: list[Driver] = []

    def start(args: list[str], env: dict[str, str] | None = None,
              kill_on: str | None = None) -> Driver:
        started.append(Driver(args, env, kill_on))
        return started[-1]

    yield start
    for driver in started:
        driver.close()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs) for the in-process studies of the whole session.

    It is a new instance (address="local"), never a cluster someone else started here.
    The disk-full fault is armed in it for the study named ``diskfull`` only.
    """
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {
                 **DISK_FULL, "PYTHONWARNINGS": "ignore::DeprecationWarning"}})  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def reference_study(tmp_path_factory, ray_session):
    """The kill tests' spec run once without interruption (in-process): its results folder.
    Its comparison is written by the same call `normstudy run` makes."""
    from studies.analysis.outputs import run_comparison
    from studies.run.runner import run_study
    from studies.trial.validation import load_spec

    root = tmp_path_factory.mktemp("reference")
    spec_file = write_spec(root, tiny_spec("killme", max_concurrent=1))
    outcome = run_study(load_spec(spec_file, [f"storage={root / 'results'}"]))
    assert outcome.counts == {"finished": 4}
    run_comparison(outcome.folder)
    return outcome.folder
