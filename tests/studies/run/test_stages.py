"""Two-stage studies: explicit arms, ranking the search, the confirm spec, and both stages
run end to end with Ray Tune + MLflow."""

import json
from collections import Counter
from pathlib import Path

import pytest

from studies.analysis.outputs import run_comparison
from studies.cli import main
from studies.config.load import dump_spec
from studies.config.space import (
    arm_of,
    arms,
    expected_trials,
    is_baseline,
    resolve_arm,
    resolved_config,
    total_trials,
)
from studies.config.spec import SpecError
from studies.run.runner import resume_study, run_study
from studies.run.stages import confirm_spec, rank_arms
from studies.store.layout import find_study
from studies.trial.validation import load_spec

TWO_STAGE = [
    "train.epochs=2",
    "train.steps_per_epoch=4",
    "enorm.c=0",
    "sweep={optimizer.lr: {grid: [0.02, 0.2, 3.0e+5]}}",
    "seeds=[0]",
    "baseline=null",
    "confirm={top_k: 1, seeds: [1, 2], baseline: {optimizer.lr: 0.005}}",
]
RECIPES = [
    "arms=[{optimizer: {name: sgd, lr: 0.1, momentum: 0.9}, schedule: {name: step, "
    "milestones: [1]}}, {optimizer: {name: alig, max_lr: 0.1}, schedule.name: constant}]",
    "baseline={optimizer: {name: sgd}}",
    "sweep={}",
    "enorm.c=0",
    "seeds=[0, 1]",
]


def two_stage(tmp_path, *extra):
    return load_spec("quickstart", [f"storage={tmp_path}", *TWO_STAGE, *extra])


# ---------------------------------------------------------------------------
# Explicit arms (several sections per arm)


def test_explicit_arms_cross_sections_and_resolve():
    spec = load_spec("quickstart", RECIPES)
    assert expected_trials(spec) == 2 * 2
    configs = [resolved_config(spec, values) for values in arms(spec)]
    assert [(c["optimizer"]["name"], c["schedule"]["name"]) for c in configs] == [
        ("sgd", "step"), ("alig", "constant"),
    ]  # fmt: skip
    assert [is_baseline(c, spec) for c in configs] == [True, False]
    assert arm_of(configs[1], spec) == {"optimizer": {"name": "alig", "max_lr": 0.1},
                                        "schedule.name": "constant"}  # fmt: skip
    ray_config = {**spec.trial_config(), "seed": 0, "arm": arms(spec)[1]}
    assert resolve_arm(ray_config)["optimizer"]["name"] == "alig"
    assert "arm" not in resolve_arm(ray_config)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("arms=[{optimizer.nope: 1}]", "arms[0].optimizer.nope"),
        ("arms=[{optimizer.lr: -1}]", "arms[0]"),
        ("arms=[{optimizer.lr: 0.1}, {optimizer.lr: 0.1}]", "arms[1]"),
        ("arms=[{}]", "arms"),
        ("arms=[{enorm.c: 1.2}]", "arms[0].enorm.c"),  # also swept by quickstart
    ],
)
def test_bad_arms_name_the_field(override, field):
    with pytest.raises(SpecError) as err:
        load_spec("quickstart", [override])
    assert any(path.startswith(field) for path, _ in err.value.problems), err.value


def test_confirm_needs_a_valid_baseline_arm():
    with pytest.raises(SpecError) as err:
        load_spec("quickstart", [*TWO_STAGE[:-1], "confirm={top_k: 1, seeds: [1, 2]}"])
    assert err.value.problems[0][0] == "confirm.baseline"
    with pytest.raises(SpecError) as err:
        bad = "confirm={seeds: [1, 2], baseline: {optimizer.lr: -2}}"
        load_spec("quickstart", [*TWO_STAGE[:-1], bad])
    assert err.value.problems[0][0] == "confirm.baseline"
    with pytest.raises(SpecError) as err:
        load_spec("quickstart", [*TWO_STAGE[:-1], "confirm={seeds: [1], baseline: {}}"])
    assert err.value.problems[0][0] == "confirm.seeds"


def test_two_stage_counts(tmp_path):
    spec = two_stage(tmp_path)
    assert spec.stage == "search"
    assert total_trials(spec) == (3, 2 * 2)
    assert main(["validate", "quickstart", *(f"--set={o}" for o in TWO_STAGE)]) == 0


# ---------------------------------------------------------------------------
# Ranking the search stage from its results directory


def write_trial(folder: Path, trial_id: str, config: dict, rows: list[dict]) -> None:
    trial = folder / f"trial_{trial_id}"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps(config))
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_rank_and_confirm_spec_from_results(tmp_path):
    spec = two_stage(tmp_path)
    base = {**spec.trial_config(), "seed": 0}

    def config(lr):
        return {**base, "optimizer": {**base["optimizer"], "lr": lr}}

    def rows(values, diverged=0):
        return [{"epoch": e, "val_acc": v, "diverged": diverged} for e, v in enumerate(values, 1)]

    write_trial(tmp_path, "a", config(0.02), rows([0.5, 0.7]))
    write_trial(tmp_path, "b", config(0.2), rows([0.6, 0.9]))
    write_trial(tmp_path, "c", config(3e5), rows([0.95, 0.95], diverged=1))
    write_trial(tmp_path, "d", config(0.005), rows([0.99]))  # stopped early (ASHA)
    ranked = rank_arms(spec, tmp_path)
    assert [values["optimizer.lr"] for values, _ in ranked] == [0.2, 0.02, 0.005]
    assert [score for _, score in ranked] == [0.9, 0.7, 0.99]

    confirm, scores = confirm_spec(spec, tmp_path)
    assert confirm.name == f"{spec.name}-confirm" and confirm.confirm_of == spec.name
    assert confirm.stage == "confirm" and confirm.confirm is None
    assert confirm.arms == [{"optimizer.lr": 0.005}, {"optimizer.lr": 0.2}]
    assert scores == [0.9]
    assert confirm.seeds == [1, 2] and confirm.metric.name == "test_acc"
    assert confirm.search.name == "grid" and confirm.scheduler.name == "fifo"
    assert confirm.experiment_name == spec.experiment_name
    assert expected_trials(confirm) == 4
    flags = [is_baseline(resolved_config(confirm, values), confirm) for values in arms(confirm)]
    assert flags == [True, False]


def test_confirm_spec_needs_a_finished_arm(tmp_path):
    spec = two_stage(tmp_path)
    base = {**spec.trial_config(), "seed": 0}
    write_trial(tmp_path, "x", base, [{"epoch": 1, "val_acc": 0.5, "diverged": 1}])
    with pytest.raises(ValueError, match="nothing to confirm"):
        confirm_spec(spec, tmp_path)


# ---------------------------------------------------------------------------
# End to end


@pytest.mark.integration
def test_two_stage_study_runs_both_stages_and_compares_the_confirm_stage(
    tmp_path, ray_local, study_runs
):
    spec = two_stage(tmp_path, "name=twostage")
    outcome = run_study(spec)
    assert outcome.spec.name == "twostage-confirm"
    assert outcome.counts == {"finished": 4}
    search_dir, confirm_dir = tmp_path / "twostage", tmp_path / "twostage-confirm"
    assert len(list(search_dir.glob("trial_*"))) == 3
    assert len(list(confirm_dir.glob("trial_*"))) == 4

    _, parents, children = study_runs(tmp_path, "twostage")
    runs = parents + children
    roles = Counter((r.data.tags["normstudy.role"], r.data.tags["normstudy.stage"]) for r in runs)
    assert roles == {("study", "search"): 1, ("trial", "search"): 3,
                     ("study", "confirm"): 1, ("trial", "confirm"): 4}  # fmt: skip
    assert {r.info.status for r in runs} == {"FINISHED"}
    confirm_parent = next(r for r in runs if r.data.tags["normstudy.role"] == "study"
                          and r.data.tags["normstudy.stage"] == "confirm")  # fmt: skip
    confirm_children = [r for r in runs if r.data.tags["normstudy.role"] == "trial"
                        and r.data.tags["normstudy.stage"] == "confirm"]  # fmt: skip
    assert {r.data.tags["mlflow.parentRunId"] for r in confirm_children} == {
        confirm_parent.info.run_id
    }
    assert sorted(r.data.tags["seed"] for r in confirm_children) == ["1", "1", "2", "2"]

    # The search stage's best finite arm is confirmed; the diverging one never is.
    chosen = load_spec(confirm_dir / "study.yaml").arms
    assert chosen[0] == {"optimizer.lr": 0.005}
    assert chosen[1]["optimizer.lr"] in (0.02, 0.2)

    # `compare NAME` of the search stage compares its confirm stage, on the test metric.
    result = run_comparison("twostage", storage=str(tmp_path))
    assert result.folder == confirm_dir
    assert result.comparison.scored_metric == "test_acc"
    (row,) = result.comparison.rows
    assert row.n_pairs == 2
    assert (confirm_dir / "comparison" / "report.md").is_file()

    # Resuming a finished two-stage study adds nothing and duplicates nothing.
    again = resume_study("twostage", storage=str(tmp_path))
    assert again.folder == confirm_dir and again.counts == {"finished": 4}
    _, parents, children = study_runs(tmp_path, "twostage")
    assert len(parents + children) == len(runs)


@pytest.mark.integration
def test_resume_starts_a_stage_that_was_killed_before_saving_state(tmp_path, ray_local):
    """A driver killed right after writing study.yaml leaves no Ray Tune state:
    resume runs that stage from the beginning instead of failing."""
    overrides = ["name=nostate", "train.epochs=1", "train.steps_per_epoch=2", "seeds=[0]"]
    spec = load_spec("quickstart", [f"storage={tmp_path}", *overrides, "sweep={}", "baseline=null"])
    folder = tmp_path / "nostate"
    folder.mkdir()
    (folder / "study.yaml").write_text(dump_spec(spec))
    assert find_study("nostate", str(tmp_path)) == folder
    outcome = resume_study("nostate", storage=str(tmp_path))
    assert outcome.counts == {"finished": 1}
    assert len(list(folder.glob("trial_*"))) == 1
