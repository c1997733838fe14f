"""`normstudy resume` of a study that already finished answers from the study's mark without
starting Ray: exit 0, what the study's end printed (the outcome, the comparison, the report),
nothing run or logged again; a study folder that changed since is resumed with Ray as before."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from user_shell import Shell, assert_accounted

TINY = ("--set", "train.epochs=1", "--set", "seeds=[1, 2]")  # the quickstart's 3 arms x 2 seeds
TRIALS = 6


def with_ray_tmp(shell: Shell, tmp: Path) -> Shell:
    """The same shell, Ray's session folders under ``tmp`` (TMPDIR: where a local Ray puts
    them), so a Ray started by the command leaves ``tmp/ray``."""
    return Shell(shell.cwd, {**shell.env, "TMPDIR": str(tmp)}, shell.started)


def test_resume_of_a_finished_study_prints_its_end_without_ray(shell):
    ran = shell.run("run", "quickstart", *TINY)
    assert ran.code == 0, ran.text
    assert "6 finished" in ran.out and "report:" in ran.out
    study = shell.results / "quickstart"
    assert (study / ".normstudy-finished.json").is_file()
    states = sorted(p.name for p in study.glob("experiment_state-*.json"))

    with tempfile.TemporaryDirectory(prefix="rt") as tmp:  # short: Ray's socket paths
        resumed = with_ray_tmp(shell, Path(tmp)).run("resume", "quickstart")
        assert resumed.code == 0, resumed.text
        assert not (Path(tmp) / "ray").exists(), "resume started Ray"
    assert "Ray instance" not in resumed.text
    head, _, end = resumed.out.partition("\n")
    assert head == ("[normstudy] study 'quickstart' has finished; nothing to resume. "
                    "Its end printed:")
    assert "done in" in end and "6 finished" in end and "results:" in end
    assert "enorm.c=1.0" in end and "enorm.c=1.2" in end
    assert f"report: {study / 'comparison' / 'report.md'}" in end
    assert sorted(p.name for p in study.glob("experiment_state-*.json")) == states
    assert_accounted(shell, TRIALS)  # nothing run or logged twice

    newest = study / states[-1]  # the folder says otherwise: the mark no longer holds
    os.utime(newest, ns=(newest.stat().st_atime_ns, newest.stat().st_mtime_ns + 10**9))
    with tempfile.TemporaryDirectory(prefix="rt", ignore_cleanup_errors=True) as tmp:
        again = with_ray_tmp(shell, Path(tmp)).run("resume", "quickstart")
        assert again.code == 0, again.text
        assert (Path(tmp) / "ray").is_dir()  # what the check above would have seen
    assert "has finished" not in again.out and "6 finished" in again.out
    assert "enorm.c=1.0" in again.out
    assert_accounted(shell, TRIALS)
    assert "has finished" in shell.run("resume", "quickstart").out  # marked again
