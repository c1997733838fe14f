"""A driver stopped with Ctrl-C, and then `normstudy resume` (a SIGKILLed driver at three
moments: tests/reliability/test_driver_kill.py)."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from user_shell import TRIALS, assert_accounted, wait_for

pytestmark = pytest.mark.acceptance

FINISHED = re.compile(r"trial \S+ finished")


def start_quickstart(shell):
    log = shell.cwd / "run.log"
    handle = open(log, "w")  # noqa: SIM115 - closed at the end of the test
    proc = shell.start("run", "quickstart", stdout=handle, stderr=handle)
    return proc, log, handle


def first_trial_done(log):
    return lambda: FINISHED.search(log.read_text(errors="replace"))


def assert_resumes(shell):
    ran = shell.run("resume", "quickstart")
    assert ran.code == 0, ran.text
    assert "enorm.c=1.0" in ran.out and "report:" in ran.out
    assert "not enough pairs" not in ran.out
    assert_accounted(shell, TRIALS)
    return ran


def test_ctrl_c_stops_within_30_s_says_how_to_resume_and_resume_finishes(shell):
    proc, log, handle = start_quickstart(shell)
    with handle:
        wait_for(first_trial_done(log), 240, "the first finished trial", proc)
        os.kill(proc.pid, signal.SIGINT)  # to the driver alone, as `timeout` or `kill` send it
        sent = time.monotonic()
        proc.wait(timeout=60)
        stopped = time.monotonic() - sent
    text = log.read_text(errors="replace")
    assert stopped < 30, f"stopped after {stopped:.0f}s"
    assert proc.returncode == 130, text[-3000:]
    assert "normstudy resume quickstart" in text
    assert "report:" not in text  # no comparison of a half-run study
    wait_for(lambda: not _group_alive(proc.pid), 30, "the local Ray of the driver to end")
    assert_resumes(shell)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
