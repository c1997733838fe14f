"""The line a study's end prints for its registered models: every alias of a few arms, a
count for a study of hundreds (one alias per arm)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from studies.run import callbacks


@pytest.mark.parametrize(("arms", "named", "more"), [(3, 3, None), (200, 6, 194)])
def test_the_models_line_names_a_few_and_counts_the_rest(arms, named, more, monkeypatch,
                                                         capsys, tmp_path):  # fmt: skip
    aliases = {f"optimizer_lr-{i}": str(i + 1) for i in range(arms)}
    monkeypatch.setattr(callbacks, "log_study_models", lambda *args: aliases)
    monkeypatch.setattr(callbacks, "registry_name", lambda spec: "big")
    hook = callbacks.MLflowTrialCallback.__new__(callbacks.MLflowTrialCallback)
    hook.tracker = SimpleNamespace(spec=None, client=None, uri="sqlite://",
                                   trial_runs=lambda: {})  # fmt: skip
    hook._log_models(tmp_path)
    [line] = [text for text in capsys.readouterr().err.splitlines() if "MLflow models" in text]
    assert line.count("models:/big@") == named
    assert (f"and {more} more" in line) if more else "more" not in line
