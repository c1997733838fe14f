"""A restore takes the checkpoint the saved experiment state names, then the older ones Ray
Tune kept, never a newer one (its result may never have reached the driver)."""

from __future__ import annotations

from ray import tune

from studies.trial.checkpoints import fallbacks


def make(trial, *indices):
    for index in indices:
        (trial / f"checkpoint_{index:06d}").mkdir(parents=True)
    return [tune.Checkpoint(str(trial / f"checkpoint_{i:06d}")) for i in indices]


def names(checkpoints) -> list[str]:
    return [c.path.rsplit("/", 1)[-1] for c in checkpoints]


def test_fallbacks_are_the_named_checkpoint_then_older_never_newer(tmp_path):
    make(tmp_path, 1, 3, 4)
    named = tune.Checkpoint(str(tmp_path / "checkpoint_000003"))
    assert names(fallbacks(named)) == ["checkpoint_000003", "checkpoint_000001"]
