"""What a study's end prints (studies/cli_report.py): no password of the tracking URI, which
would reach terminals, CI logs and the finished study's mark (.normstudy-finished.json)."""

from __future__ import annotations

from studies import cli_report
from studies.config.secrets import redact
from studies.run.fit import StudyOutcome
from studies.store import queries
from studies.trial.validation import load_spec

PASSWORD = "hunter2222-report"


def test_the_end_of_a_study_prints_its_tracking_uri_without_the_password(
        tmp_path, monkeypatch, capsys):  # fmt: skip
    uri = f"http://alice:{PASSWORD}@127.0.0.1:9"
    monkeypatch.setattr(queries, "study_runs_page",  # the server's answer, as it is redacted
                        lambda uri, name: f"{redact(uri)}/#/experiments/1")  # fmt: skip
    spec = load_spec("quickstart", [f"storage={tmp_path}"])
    outcome = StudyOutcome(spec, tmp_path / spec.name, {"finished": 15}, uri, 12.0)
    assert cli_report.report(outcome) == 0
    printed = capsys.readouterr().out
    assert "MLflow:  http://alice:***@127.0.0.1:9 (experiment 'quickstart')" in printed
    assert PASSWORD not in printed
