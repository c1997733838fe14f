"""Promises 7 and 8: damaged checkpoints and a full disk.

7. A truncated or corrupted checkpoint gives a clear error naming the file,
   and the trial restarts from the previous checkpoint when there is one
   (the same numbers as before: the restart is exact). Loading never
   unpickles arbitrary objects (``weights_only=True``).
8. A checkpoint write that fails as on a full disk fails the trial with a
   message saying so; the earlier checkpoints stay intact and no half-written
   file is left.
"""

from __future__ import annotations

import pathlib

import pytest
import torch
from reliability_kit import mlflow_runs, result_rows, sqlite_uri, tiny_spec, write_spec

from studies.trial.checkpoints import (
    STATE_FILE,
    CheckpointError,
    load_state,
    restore_checkpoint,
    write_state,
)

pytestmark = pytest.mark.integration


def _state(epoch: int) -> dict:
    return {"model": {"w": torch.full((3,), float(epoch))}, "optimizer": {}, "scheduler": {},
            "data_rng": torch.zeros(4, dtype=torch.uint8), "torch_rng": torch.get_rng_state(),
            "epoch": epoch, "step": 10 * epoch, "last_finite": {"val_acc": 0.5}}  # fmt: skip


def _trial_with_checkpoints(root: pathlib.Path, epochs=(1, 2)) -> list[pathlib.Path]:
    folders = []
    for index, epoch in enumerate(epochs):
        folder = root / "trial_x" / f"checkpoint_{index:06d}"
        folder.mkdir(parents=True)
        write_state(_state(epoch), folder, epoch)
        folders.append(folder)
    return folders


def _checkpoint(folder: pathlib.Path):
    from ray import tune

    return tune.Checkpoint(str(folder))


class Payload:
    """Unpickling this object would create a file: the attack weights_only=True blocks."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scramble(path):
    data = bytearray(path.read_bytes())
    data[40:200] = bytes(160)
    path.write_bytes(bytes(data))


def _garbage(path):
    path.write_bytes(b"\x00not a checkpoint at all" * 10)


@pytest.mark.parametrize("damage", [_truncate, _scramble, _garbage, "pickle"])
def test_damaged_latest_checkpoint_falls_back_to_previous(damage, tmp_path):
    first, latest = _trial_with_checkpoints(tmp_path)
    sentinel = tmp_path / "pwned"
    if damage == "pickle":
        torch.save({**_state(2), "model": Payload(sentinel)}, latest / STATE_FILE)
    else:
        damage(latest / STATE_FILE)
    state, problems = restore_checkpoint(_checkpoint(latest))
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    (problem,) = problems
    assert str(latest / STATE_FILE) in problem and "cannot be read" in problem
    assert "restarting from the previous checkpoint checkpoint_000000 (epoch 1)" in problem
    assert not sentinel.exists(), "an arbitrary object was unpickled"
    if damage == "pickle":
        assert "weights_only" in problem


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    (only,) = _trial_with_checkpoints(tmp_path, epochs=(1,))
    _truncate(only / STATE_FILE)
    with pytest.raises(CheckpointError) as err:
        restore_checkpoint(_checkpoint(only))
    message = str(err.value)
    assert "no usable checkpoint" in message and str(only / STATE_FILE) in message
    assert "--retry-errored" in message


def test_a_state_without_the_trial_fields_is_refused(tmp_path):
    (tmp_path / STATE_FILE).write_bytes(b"")
    torch.save({"weights": torch.ones(2)}, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError, match="not a normstudy trial state"):
        load_state(tmp_path)


def test_disk_full_write_leaves_nothing_half_written(tmp_path):
    write_state(_state(1), tmp_path, 1)
    before = (tmp_path / STATE_FILE).read_bytes()
    with pytest.raises(CheckpointError) as err:
        write_state(_state(2), tmp_path, 2, fail=True)
    assert "No space left on device (is the disk full?)" in str(err.value)
    assert "earlier checkpoints are intact" in str(err.value)
    assert (tmp_path / STATE_FILE).read_bytes() == before  # never replaced by half a file
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]


def _study(tmp_path, name, **changes):
    from studies.trial.validation import load_spec

    spec = tiny_spec(name, sweep={}, seeds=[5], baseline=None, **changes)
    return load_spec(write_spec(tmp_path, spec), [f"storage={tmp_path / 'results'}"])


def test_corrupted_checkpoint_in_a_real_trial_restarts_from_the_previous_one(
    tmp_path, ray_session
):
    from studies.run.runner import resume_study, run_study

    # Fails at epoch 3 every time: checkpoints of epochs 1 and 2 stay behind.
    outcome = run_study(_study(tmp_path, "corrupt", train__fail_at_epoch=3))
    assert outcome.counts == {"errored": 1}
    folder = tmp_path / "results" / "corrupt"
    (trial,) = folder.glob("trial_*")
    (before,) = result_rows(folder).values()
    assert [r["epoch"] for r in before] == [1, 2]
    latest = max(trial.glob("checkpoint_*"))
    assert load_state(latest)["epoch"] == 2
    _truncate(latest / STATE_FILE)

    outcome = resume_study("corrupt", storage=str(tmp_path / "results"), retry_errored=True)
    assert outcome.counts == {"errored": 1}  # the injected fault at epoch 3 is still there
    (after,) = result_rows(folder).values()
    redone = after[len(before)]
    assert redone["epoch"] == 2 and redone["restored_from_epoch"] == 1
    assert "cannot be read" in redone["checkpoint_warning"]
    assert str(latest / STATE_FILE) in redone["checkpoint_warning"]
    for key in ("train_loss", "val_acc", "test_acc", "lr"):  # the restart is exact
        assert redone[key] == before[1][key]
    _, _, (run,) = mlflow_runs(sqlite_uri(tmp_path / "results"), "corrupt")
    assert "restarting from the previous checkpoint" in run.data.tags["checkpoint_warning"]


def test_disk_full_during_a_real_trial(tmp_path, ray_session):
    from studies.run.runner import run_study

    # conftest arms the fault for trials of the study named "diskfull" at epoch 2.
    outcome = run_study(_study(tmp_path, "diskfull"))
    assert outcome.counts == {"errored": 1}
    folder = tmp_path / "results" / "diskfull"
    (trial,) = folder.glob("trial_*")
    error = (trial / "error.txt").read_text()
    assert "could not write the checkpoint of epoch 2: No space left on device" in error
    assert "(is the disk full?)" in error
    (rows,) = result_rows(folder).values()
    assert [r["epoch"] for r in rows] == [1]  # epoch 2 was never reported as saved
    (kept,) = trial.glob("checkpoint_*")  # the epoch-1 checkpoint, intact
    assert load_state(kept)["epoch"] == 1
    assert not list(folder.rglob("*.partial"))
    _, parents, (run,) = mlflow_runs(sqlite_uri(tmp_path / "results"), "diskfull")
    assert run.info.status == "FAILED" and parents[0].info.status == "FAILED"
