"""The mark of a finished study (store/finished.py, run/finished.py): it holds what the study's
end printed while every stage's folder is as it was; anything that says otherwise (a new
experiment state, an edited study.yaml, a stage gone, a look rerun) unmarks it."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from studies.run.finished import finish_marked, finished_stages
from studies.store.finished import MARK_FILE, read_mark, write_marks


def stage(folder: Path, looks: int = 0) -> Path:
    """A study folder as Ray Tune and normstudy leave it (the files the mark reads)."""
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(f"name: {folder.name}\n")
    (folder / ".study-yaml-sha256").write_text("abc\n")
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    for k in range(1, looks + 1):
        (folder / f"look-{k}").mkdir()
        (folder / f"look-{k}" / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    return folder


def test_a_mark_returns_what_the_end_printed(tmp_path):
    study = stage(tmp_path / "quickstart")
    assert read_mark(study) is None
    write_marks([study], "[normstudy] study 'quickstart' done\ntable\n")
    assert read_mark(study) == "[normstudy] study 'quickstart' done\ntable\n"


@pytest.mark.parametrize("change", ["new state", "state rewritten", "study.yaml", "checksum",
                                    "sequential.json"])  # fmt: skip
def test_a_study_folder_that_changed_is_not_finished(tmp_path, change):
    study = stage(tmp_path / "quickstart")
    write_marks([study], "done\n")
    state = study / "experiment_state-2026-01-01_00-00-00.json"
    if change == "new state":  # a resume that ran: Ray Tune saved a newer state
        (study / "experiment_state-2026-02-01_00-00-00.json").write_text('{"trial_data": []}')
    elif change == "state rewritten":
        state.write_text('{"trial_data": [1]}')
    elif change == "study.yaml":
        (study / "study.yaml").write_text("name: quickstart\noptimizer: {lr: 0.5}\n")
    elif change == "checksum":
        (study / ".study-yaml-sha256").write_text("edited\n")
    else:
        (study / "sequential.json").write_text("{}")
    assert read_mark(study) is None


def test_a_copy_kept_with_its_times_reads_its_own_folder(tmp_path):
    import shutil

    study = stage(tmp_path / "quickstart")
    write_marks([study], "done\n")
    copy = tmp_path / "quickstart-copy"
    shutil.copytree(study, copy)  # file times kept
    assert read_mark(copy) == "done\n"
    (copy / "study.yaml").write_text("name: other\n")
    assert read_mark(copy) is None and read_mark(study) == "done\n"


def test_the_same_bytes_with_another_time_are_not_trusted(tmp_path):
    study = stage(tmp_path / "quickstart")
    write_marks([study], "done\n")
    state = next(study.glob("experiment_state-*.json"))
    os.utime(state, ns=(1, state.stat().st_mtime_ns + 10**9))
    assert read_mark(study) is None


def test_a_two_stage_study_is_finished_while_both_stages_are(tmp_path):
    search, confirm = stage(tmp_path / "two"), stage(tmp_path / "two-confirm")
    write_marks([search, confirm], "confirm done\n")
    assert read_mark(search) == read_mark(confirm) == "confirm done\n"
    (confirm / "experiment_state-2026-02-01_00-00-00.json").write_text("{}")
    assert read_mark(search) is None and read_mark(confirm) is None


def test_a_stage_gone_or_a_look_rerun_unmarks(tmp_path):
    search, confirm = stage(tmp_path / "two"), stage(tmp_path / "two-confirm")
    write_marks([search, confirm], "done\n")
    (confirm / "study.yaml").unlink()
    assert read_mark(search) is None
    sequential = stage(tmp_path / "seq", looks=2)
    write_marks([sequential], "done\n")
    assert read_mark(sequential) == "done\n"
    (sequential / "look-2" / "experiment_state-2026-02-01_00-00-00.json").write_text("{}")
    assert read_mark(sequential) is None


@pytest.mark.parametrize("text", ["", "not json", '{"version": 1}', '{"version": 1, '
                                  '"stages": []}', '["a list"]', '{"version": 99, "stages": '
                                  '[{"folder": "quickstart", "digest": "x"}], "printed": ""}'])
def test_a_broken_mark_is_no_mark(tmp_path, text):
    study = stage(tmp_path / "quickstart")
    (study / MARK_FILE).write_text(text)
    assert read_mark(study) is None


def outcome(folder: Path, counts=None, confirm=None, confirm_of=None) -> SimpleNamespace:
    counts = {"finished": 4} if counts is None else counts
    return SimpleNamespace(
        folder=folder, counts=counts, interrupted=bool(counts.get("unfinished")),
        spec=SimpleNamespace(confirm=confirm, confirm_of=confirm_of),
    )  # fmt: skip


def test_only_a_study_whose_last_stage_finished_has_stages_to_mark(tmp_path):
    study = tmp_path / "s"
    assert finished_stages(outcome(study)) == [study]
    assert finished_stages(outcome(study, {"finished": 3, "diverged": 1})) == [study]
    assert finished_stages(outcome(tmp_path / "s-confirm", confirm_of="s")) == [
        study, tmp_path / "s-confirm"]  # fmt: skip
    assert finished_stages(outcome(study, confirm={"seeds": [1]})) == []  # confirm not started
    assert finished_stages(outcome(study, {"finished": 3, "errored": 1})) == []
    assert finished_stages(outcome(study, {"finished": 3, "unfinished": 1})) == []


def test_finish_is_printed_as_before_and_kept_in_the_mark(tmp_path, capsys):
    study = stage(tmp_path / "quickstart")

    def finish(_: object) -> int:
        print("[normstudy] study 'quickstart' done in 9s: 4 finished")
        print("table")
        return 0

    printed = "[normstudy] study 'quickstart' done in 9s: 4 finished\ntable\n"
    assert finish_marked(outcome(study), finish) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out == printed
    assert read_mark(study) == printed


@pytest.mark.parametrize("end", ["exit 1", "warning on stderr", "warning on stdout"])
def test_an_end_with_errors_or_warnings_is_not_marked(tmp_path, end):
    import sys

    study = stage(tmp_path / "quickstart")

    def finish(_: object) -> int:
        print("[normstudy] study 'quickstart' done")
        if end == "warning on stderr":
            print("[normstudy] warning: the comparison failed (OSError)", file=sys.stderr)
        if end == "warning on stdout":
            print("[normstudy] warning: not logged; `normstudy best` logs it later")
        return 1 if end == "exit 1" else 0

    finish_marked(outcome(study), finish)  # type: ignore[arg-type]
    assert not (study / MARK_FILE).exists()
