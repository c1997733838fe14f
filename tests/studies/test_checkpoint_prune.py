"""Trials prune their own checkpoints (issue 19: Ray Tune's num_to_keep costs an O(N)
experiment-state save per trial), and a restore named an already pruned checkpoint takes the
newest the trial kept."""

from __future__ import annotations

from ray import tune

from studies.build.checkpoints import fallbacks, prune


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


def test_fallbacks_newer_first_then_named_then_older(tmp_path):
    make(tmp_path, 1, 3, 4)
    named = tune.Checkpoint(str(tmp_path / "checkpoint_000002"))  # pruned since it was saved
    assert names(fallbacks(named)) == [
        "checkpoint_000004", "checkpoint_000003", "checkpoint_000002", "checkpoint_000001"]
