"""The cause line of an errored trial, read from Ray Tune's ``error.txt``."""

from __future__ import annotations

from studies.store.results import error_cause, error_summaries

TRACEBACK = """Failure # {n} (occurred at 2026-01-01_00-00-00)
\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=7, ip=10.0.0.2, actor_id=ab, repr=tune_trainable)
  File "/venv/ray/tune/trainable/function_trainable.py", line 249, in _trainable_func
    output = fn()
  File "/work/studies/trial/data.py", line 71, in load_splits
    raise DatasetMissing(
{last}
"""


def test_the_cause_is_the_last_failures_exception_and_its_first_message_line():
    text = TRACEBACK.format(n=1, last="_pickle.UnpicklingError: invalid load key, 'x'.")
    text += TRACEBACK.format(n=2, last="ValueError: \nthe first line\nthe second\nHint: none")
    assert error_cause(text) == "ValueError: the first line"
    assert error_cause(TRACEBACK.format(n=1, last="_pickle.UnpicklingError: invalid load key"))\
        == "UnpicklingError: invalid load key"  # fmt: skip
    assert error_cause("Failure # 1\nsomething odd\n") == "something odd"


def test_error_summaries_carry_the_cause_and_the_traceback_path(tmp_path):
    trial = tmp_path / "trial_00001"
    trial.mkdir()
    (trial / "error.txt").write_text(TRACEBACK.format(
        n=1, last="studies.trial.data.DatasetMissing: dataset 'mnist': /d/x not found on host "
        "'n1'; put them on storage every node mounts"))  # fmt: skip
    assert error_summaries(tmp_path) == [
        "trial_00001 errored: DatasetMissing: dataset 'mnist': /d/x not found on host 'n1'; put "
        f"them on storage every node mounts (traceback: {trial / 'error.txt'})"
    ]
