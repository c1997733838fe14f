"""Sequential confirmation: the spec's ``sequential`` section, the decisions at each look from
a synthetic results directory (looks in ``look-<k>/``), the state file and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from normlib.stats import SequentialDesign
from studies.analysis.comparison import compare
from studies.analysis.outputs import run_comparison
from studies.analysis.sequential import analyze
from studies.analysis.trials import trials_from_results
from studies.cli import main
from studies.config.space import with_values
from studies.config.spec import SpecError
from studies.run.sequential import look_spec
from studies.store.layout import write_study_spec
from studies.store.looks import SEQUENTIAL_FILE, look_dir, read_state, write_state
from studies.trial.validation import load_spec

LOOKS = [3, 5, 8]
SEQ = "sequential={looks: [3, 5, 8], spending: pocock}"


# ---------------------------------------------------------------------------
# Spec


def test_quickstart_seeds_are_extended_to_the_last_look():
    spec = load_spec("quickstart", ["sequential={looks: [3, 5, 8]}"])
    assert spec.seeds == [1, 2, 3, 4, 5, 6, 7, 8]  # quickstart lists 1..5
    s = spec.sequential
    assert (s.looks, s.spending, s.futility, s.min_effect, s.alpha) == (
        [3, 5, 8], "obrien_fleming", "conditional_power", 0.01, 0.05)
    assert load_spec("quickstart", [SEQ, "seeds=[10, 3]"]).seeds == [10, 3, 11, 12, 13, 14, 15, 16]
    assert load_spec("quickstart", [SEQ, "sequential.futility=none"]).sequential.futility == "none"


def test_seeds_not_given_are_one_to_the_last_look(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodel: {name: fully_connected, n_layers: 2, width: 8}\n"
                    "optimizer: {name: sgd, lr: 0.1}\n"
                    "train: {epochs: 1}\nsweep: {optimizer.lr: {grid: [0.1, 0.2]}}\n"
                    "baseline: {optimizer.lr: 0.1}\n"
                    "sequential: {looks: [2, 4]}\n")  # fmt: skip
    assert load_spec(str(path)).seeds == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ("sequential={looks: [1, 4]}", "sequential.looks", "at least 2 seeds"),
        ("sequential={looks: [4, 4]}", "sequential.looks", "strictly increasing"),
        ("sequential={looks: [4]}", "sequential.looks", "at least 2 looks"),
        ("sequential={looks: [2, 4]}", "sequential.looks", "seeds lists 5"),
        ("sequential={looks: [3, 8], spending: linear}", "sequential.spending", "pocock"),
        ("sequential={looks: [3, 8], futility: maybe}", "sequential.futility", "none"),
        ("sequential={looks: [3, 8], min_effect: 0}", "sequential.min_effect", "greater"),
        ("sequential={looks: [3, 8], alpha: 1.5}", "sequential.alpha", "less"),
        ("sequential={looks: [3, 8], nope: 1}", "sequential.nope", "unknown field"),
        ("scheduler.name=asha", "sequential", "fifo"),
        ("search.name=random", "sequential", "grid"),
        ("baseline=null", "baseline", "baseline arm"),
    ],
)
def test_bad_sequential_sections_name_the_field(override, field, words):
    overrides = [override] if override.startswith("sequential") else [SEQ, override]
    with pytest.raises(SpecError) as err:
        load_spec("quickstart", overrides)
    assert any(path == field and words in message for path, message in err.value.problems), (
        err.value.problems)


def test_bad_section_exits_2_naming_the_field(capsys):
    assert main(["validate", "quickstart", "--set", "sequential={looks: [1, 2]}"]) == 2
    assert "sequential.looks: the first look needs at least 2 seeds" in capsys.readouterr().err


def test_two_stage_studies_take_it_in_confirm():
    spec = load_spec("quickstart", [
        "seeds=[0]", "baseline=null",
        "confirm={seeds: [1, 2], baseline: {enorm.c: 0}, sequential: {looks: [2, 4]}}",
    ])  # fmt: skip
    assert spec.confirm.seeds == [1, 2, 3, 4] and spec.confirm.sequential.looks == [2, 4]
    with pytest.raises(SpecError) as err:
        load_spec("quickstart", [SEQ, "confirm={seeds: [1, 2]}"])
    assert ("sequential", ) == tuple(p for p, m in err.value.problems if "confirm.sequential" in m)


# ---------------------------------------------------------------------------
# Decisions from a synthetic study run the way the runner runs it

BASE = [0.90, 0.92, 0.88, 0.91, 0.89, 0.93, 0.90, 0.91]
# Arm 1.0: +5 pp with tiny noise (efficacy at look 1); 1.2: worse (futility at look 1);
# 0.5: +1.5 pp with 1 pp noise (continues at looks 1 and 2, efficacy at look 3).
NOISE = [0.004, -0.012, 0.009, -0.003, 0.011, -0.008, 0.002, -0.006]
DIFF = {
    1.0: [0.05 + 1e-4 * ((-1) ** i) for i in range(8)],
    1.2: [-0.03 + n for n in NOISE],
    0.5: [0.015 + n for n in NOISE],
}


@pytest.fixture
def spec(tmp_path):
    return load_spec("quickstart", [
        "name=seq", f"storage={tmp_path}", "train.epochs=2", SEQ,
        "sweep={enorm.c: {grid: [0, 1.0, 1.2, 0.5]}}",
    ])  # fmt: skip


def write_look(spec, folder, look, cs, seeds):
    """Trials of one look as Ray Tune leaves them: look-<k>/trial_<id>/params.json + result.json."""
    for index, (c, seed) in enumerate((c, s) for c in cs for s in seeds):
        trial_id = f"l{look}xyz_{index:05d}"
        value = BASE[seed - 1] + (DIFF[c][seed - 1] if c else 0.0)
        config = {**with_values(spec.trial_config(), {"enorm.c": c}), "seed": seed}
        trial = look_dir(folder, look) / f"trial_{trial_id}"
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps(config))
        rows = [{"epoch": e, "val_acc": value - 0.01 * (2 - e), "trial_id": trial_id}
                for e in (1, 2)]  # fmt: skip
        (trial / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def judge(spec, folder, looks_done):
    return analyze(compare(trials_from_results(folder, spec), spec), looks_done)


def test_decisions_per_look_from_results(spec):
    folder = spec_folder(spec)
    design = SequentialDesign(tuple(LOOKS), 0.05 / 3, "pocock", 0.01, "conditional_power")
    first = judge(spec, folder, 0)
    assert first.pending() == ["enorm.c=1.0", "enorm.c=1.2", "enorm.c=0.5"]
    stage = look_spec(spec, first, 1)
    assert stage.seeds == [1, 2, 3] and stage.sweep == {}
    assert stage.arms == [{"enorm.c": 0}, {"enorm.c": 1.0}, {"enorm.c": 1.2}, {"enorm.c": 0.5}]

    write_look(spec, folder, 1, [0, 1.0, 1.2, 0.5], [1, 2, 3])
    result = judge(spec, folder, 1)
    expected = {c: design.decide(DIFF[c][:3], 0) for c in DIFF}
    assert [expected[c].action for c in (1.0, 1.2, 0.5)] == ["efficacy", "futility", "continue"]
    for c, arm in zip((1.0, 1.2, 0.5), result.arms, strict=True):
        assert (arm.action, arm.look, arm.n) == (expected[c].action, 1, 3)
        assert arm.history[0].statistic == pytest.approx(expected[c].statistic)
        assert arm.history[0].boundary == pytest.approx(design.bounds.t[0])
    assert result.pending() == ["enorm.c=0.5"]
    assert result.arms[0].pvalue == pytest.approx(expected[1.0].pvalue)
    assert result.arms[1].pvalue == 1.0 and result.arms[0].fixed_seeds >= 1

    stage = look_spec(spec, result, 2)  # the baseline and the one undecided arm, seeds 4 and 5
    assert stage.arms == [{"enorm.c": 0}, {"enorm.c": 0.5}] and stage.seeds == [4, 5]
    write_look(spec, folder, 2, [0, 0.5], [4, 5])
    result = judge(spec, folder, 2)
    assert design.decide(DIFF[0.5][:5], 1).action == "continue"
    assert (result.arms[2].action, result.arms[2].look, result.arms[2].n) == ("continue", 2, 5)
    assert result.arms[0].look == 1 and result.arms[1].look == 1  # stopped arms stay stopped
    assert not result.done and result.arms[0].significant is None  # Holm waits for every arm
    write_look(spec, folder, 3, [0, 0.5], [6, 7, 8])
    result = judge(spec, folder, 3)
    last = design.decide(DIFF[0.5], 2)
    assert last.action == "efficacy"
    assert (result.arms[2].action, result.arms[2].look, result.arms[2].n) == ("efficacy", 3, 8)
    assert result.arms[2].pvalue == pytest.approx(last.pvalue)
    assert result.done
    assert [a.significant for a in result.arms] == [True, False, True]
    assert result.seeds_run() == 3 + 3 + 8 + 8  # two arms stopped at 3, one and the baseline 8
    assert result.seeds_fixed() == 4 * 8


def test_a_failed_look_marks_the_arm_incomplete(spec):
    folder = spec_folder(spec)
    write_look(spec, folder, 1, [0, 1.0, 1.2, 0.5], [1, 2, 3])
    for trial in look_dir(folder, 1).glob("trial_*"):
        config = json.loads((trial / "params.json").read_text())
        if config["enorm"]["c"] == 0.5 and config["seed"] == 2:
            (trial / "result.json").write_text("")  # errored before its first epoch
    result = judge(spec, folder, 1)
    assert (result.arms[2].action, result.arms[2].look) == ("incomplete", 1)
    assert judge(spec, folder, None).arms[2].action == "continue"  # compare: nothing judged


def spec_folder(spec):
    folder = Path(spec.storage) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    write_study_spec(spec, folder)
    return folder


def test_state_file_is_replaced_whole(spec):
    folder = spec_folder(spec)
    write_state(folder, {"completed_looks": 1})
    write_state(folder, {"completed_looks": 2, "arms": []})
    assert read_state(folder) == {"completed_looks": 2, "arms": []}
    assert [p.name for p in folder.iterdir() if "sequential" in p.name] == [SEQUENTIAL_FILE]


def test_report_says_where_and_why_each_arm_stopped(spec, capsys):
    folder = spec_folder(spec)
    write_look(spec, folder, 1, [0, 1.0, 1.2, 0.5], [1, 2, 3])
    write_look(spec, folder, 2, [0, 0.5], [4, 5])
    write_look(spec, folder, 3, [0, 0.5], [6, 7, 8])
    write_state(folder, {"completed_looks": 3})
    result = run_comparison(folder, log=False)
    report = (folder / "comparison" / "report.md").read_text()
    assert "## Sequential confirmation" in report
    assert "efficacy at look 1 (3 seeds)" in report and "futility at look 1 (3 seeds)" in report
    assert "efficacy at look 3 (8 seeds)" in report
    verdicts = {row.arm: row.verdict for row in result.comparison.rows}
    assert verdicts["enorm.c=1.0"] == "significant"
    assert verdicts["enorm.c=1.2"] == "not significant"
    assert not any("lacks seed" in w for w in result.comparison.warnings)
    assert main(["compare", str(folder), "--no-log"]) == 0
    out = capsys.readouterr().out
    assert "sequential confirmation: looks [3, 5, 8]" in out
    assert "enorm.c=1.2: futility at look 1 (3 seeds)" in out
