"""Every catalog study through the CLI: `list`, `validate`, and one `--smoke` run per paper."""

from __future__ import annotations

import re

import pytest
from user_shell import study_runs

from studies.config.load import catalog_names

pytestmark = pytest.mark.acceptance

ONE_PER_PAPER = (
    "enorm-fc-cifar10",         # ENorm (Stock et al.)
    "rbn-wrn-cifar10",          # SGD-G / Adam-G (Cho & Lee)
    "bninit-resnet18-cifar10",  # BN-init (Davis & Frank)
    "alig-wrn-cifar10",         # ALI-G (Berrada et al.)
    "odenet4-norms-cifar10",    # Neural-ODE norms (Gusak et al.)
)  # fmt: skip


def test_list_shows_every_catalog_study_with_its_trial_count(shell):
    ran = shell.run("list")
    assert ran.code == 0, ran.text
    for name in catalog_names():
        line = next((line for line in ran.out.splitlines() if f"  {name} " in line), None)
        assert line is not None, name
        assert re.search(r"\s\d+(\+\d+)?\s+\d+\.\d\s", line), line  # trials, GPU-hours
    assert "No studies in" in ran.out


@pytest.mark.parametrize("name", catalog_names())
def test_validate_accepts_every_catalog_study(shell, name):
    ran = shell.run("validate", name, timeout=120)
    assert ran.code == 0, ran.text
    assert re.fullmatch(rf"{re.escape(name)}: valid, \d+ (search \+ \d+ confirm )?trials\n",
                        ran.out), ran.out  # fmt: skip


@pytest.mark.parametrize("name", ONE_PER_PAPER)
def test_smoke_run_of_a_catalog_study_trains_and_compares(shell, name):
    ran = shell.run("run", name, "--smoke")
    assert ran.code == 0, ran.text[-3000:]
    assert re.search(r"done in \d+s: \d+ finished", ran.out), ran.out[-2000:]
    assert "report:" in ran.out
    report = shell.results / f"{name}-smoke" / "comparison" / "report.md"
    rows = re.findall(r"^\| (\S[^|]*) \| (\d+) \|", report.read_text(), re.M)
    assert rows and all(int(n) == 2 for _, n in rows), rows  # every arm paired on both seeds
    trials = int(re.search(r"done in \d+s: (\d+) finished", ran.out).group(1))
    _, _, parents, children = study_runs(shell, f"{name}-smoke")
    assert len(parents) == 1 and len(children) == trials == 2 * (len(rows) + 1)
    assert {run.info.status for run in [*parents, *children]} == {"FINISHED"}
