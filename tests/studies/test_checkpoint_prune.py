"""Trials prune their own checkpoints (issue 19: Ray Tune's num_to_keep costs an O(N)
experiment-state save per trial). A restore takes the checkpoint the saved experiment state
names or an older one, never a newer one (its result may never have reached the driver), and
starts the trial over when all of those were pruned."""

from __future__ import annotations

from ray import tune

from studies.build.checkpoints import fallbacks, prune, restore_checkpoint


def make(trial, *indices):
    for index in indices:
        (trial / f"checkpoint_{index:06d}").mkdir(parents=True)
    return [tune.Checkpoint(str(trial / f"checkpoint_{i:06d}")) for i in indices]


def names(checkpoints) -> list[str]:
    return [c.path.rsplit("/", 1)[-1] for c in checkpoints]


def test_prune_keeps_the_two_newest(tmp_path):
    *_, latest = make(tmp_path, 0, 1, 2, 3)
    (tmp_path / "result.json").write_text("")
    prune(latest)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_000002", "checkpoint_000003", "result.json"]  # fmt: skip


def test_prune_never_deletes_newer_checkpoints(tmp_path):
    old, middle, newer = make(tmp_path, 4, 5, 6)
    prune(old, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_000004", "checkpoint_000005", "checkpoint_000006"]  # fmt: skip


def test_fallbacks_are_the_named_checkpoint_then_older_never_newer(tmp_path):
    make(tmp_path, 1, 3, 4)
    named = tune.Checkpoint(str(tmp_path / "checkpoint_000003"))
    assert names(fallbacks(named)) == ["checkpoint_000003", "checkpoint_000001"]


def test_a_pruned_named_checkpoint_starts_the_trial_over(tmp_path):
    make(tmp_path, 3, 4)  # the trial pruned 0..2 after the state naming checkpoint 2 was saved
    named = tune.Checkpoint(str(tmp_path / "checkpoint_000002"))
    state, problems = restore_checkpoint(named)
    assert state is None
    assert problems == ["its checkpoint checkpoint_000002 was pruned after Ray Tune last saved "
                        "the study's state; the trial starts over from epoch 1"]
