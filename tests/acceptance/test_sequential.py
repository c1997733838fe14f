"""README, "Sequential confirmation": the quickstart with looks at 3, 5 and 8 seeds stops at
least one arm before 8 seeds, and the printed table and report.md say where and why."""

from __future__ import annotations

import json
import re

import pytest
from user_shell import study_runs

pytestmark = pytest.mark.acceptance

COMMAND = ("run", "quickstart", "--set", "sequential={looks: [3, 5, 8]}")
REASON = re.compile(r"^  (enorm\.c=\S+): (efficacy|futility|max seeds) at look (\d) \((\d) seeds\)",
                    re.M)  # fmt: skip


def test_readme_command_stops_an_arm_early_and_says_why(shell):
    ran = shell.run(*COMMAND)
    assert ran.code == 0, ran.text
    assert "at most 24 trials (looks at [3, 5, 8] seeds per arm)" in ran.out
    stops = {arm: (why, int(look), int(n)) for arm, why, look, n in REASON.findall(ran.out)}
    assert set(stops) == {"enorm.c=1.0", "enorm.c=1.2"}, ran.out
    assert any(n < 8 for _, _, n in stops.values()), stops
    for _, look, n in stops.values():
        assert n == [3, 5, 8][look - 1]
    folder = shell.results / "quickstart"
    state = json.loads((folder / "sequential.json").read_text())
    assert state["seeds"] == [1, 2, 3, 4, 5, 6, 7, 8] and state["done"]
    report = (folder / "comparison" / "report.md").read_text()
    assert "## Sequential confirmation" in report
    for why, look, n in stops.values():
        assert f"{why} at look {look} ({n} seeds)" in report
    # every trial ran once, one MLflow child run each, under one parent
    trials = list(folder.glob("look-*/trial_*"))
    assert len(trials) == state["trials_run"] < 24
    _, _, parents, children = study_runs(shell)
    assert len(parents) == 1 and len(children) == len(trials)
    assert parents[0].data.tags["normstudy.sequential.looks"] == "3,5,8"
