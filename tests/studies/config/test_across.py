"""Settings in the spec (``across``): the product of values, every arm in every setting on
every seed, the checks that name each conflict's field, and --smoke's offline settings."""

from __future__ import annotations

import hashlib
import json

import pytest

from studies.config import smoke as smoke_module
from studies.config.load import parse_config, read_spec
from studies.config.space import (
    arms,
    configurations,
    expected_trials,
    get_path,
    is_baseline,
    resolved_config,
    setting_label,
    setting_of,
    settings,
    trial_configs,
)
from studies.config.spec import SpecError

BASE = {
    "name": "across-test",
    "dataset": {"name": "digits"},
    "model": {"name": "fully_connected", "n_layers": 3, "width": 16},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "enorm": {"c": 0},
    "train": {"epochs": 1, "batch_size": 32},
    "sweep": {"enorm.c": {"grid": [0, 1.2]}},
    "across": {"dataset.name": ["digits", "fake"], "model.width": [16, 32, 64]},
    "seeds": [1, 2, 3],
    "baseline": {"enorm.c": 0},
}


def spec_of(**changes):
    return parse_config({**BASE, **changes})


def problems_of(**changes) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as error:
        spec_of(**changes)
    return error.value.problems


def test_settings_are_the_product_and_every_arm_runs_in_each_on_every_seed():
    spec = spec_of()
    assert settings(spec) == [{"dataset.name": d, "model.width": w}
                              for d in ("digits", "fake") for w in (16, 32, 64)]  # fmt: skip
    assert len(arms(spec)) == 2 and len(configurations(spec)) == 12
    assert expected_trials(spec) == 2 * 6 * 3
    configs = trial_configs(spec)
    assert len(configs) == 36
    cells = {(c["enorm"]["c"], c["dataset"]["name"], c["model"]["width"], c["seed"])
             for c in configs}  # fmt: skip
    assert len(cells) == 36  # no trial twice
    for config in configs:  # the baseline is the same arm in every setting
        assert is_baseline(config, spec) == (config["enorm"]["c"] == 0)
    assert setting_of(configs[0], spec) == {"dataset.name": "digits", "model.width": 16}
    assert setting_label({"dataset.name": "fake", "model.width": 32}) == (
        "dataset.name=fake model.width=32")
    assert setting_label({}) == "" and settings(spec_of(across={})) == [{}]


def test_a_study_without_across_keeps_its_fingerprint():
    spec = spec_of(across={})
    data = spec.model_dump(mode="json", exclude={"description", "storage", "tracking", "code"})
    data.pop("method", None)
    data.pop("across")  # what studies started before `across` existed hashed
    expected = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    assert spec.fingerprint() == expected != spec_of().fingerprint()


def test_the_issues_refused_sweep_now_says_how_to_run_it():
    problems = problems_of(across={}, sweep={"enorm.c": {"grid": [0, 1.2]},
                                             "model.width": {"grid": [16, 32]}})  # fmt: skip
    assert problems[0][0] == "baseline"
    assert "matches 2 arms" in problems[0][1] and "it must pick one" in problems[0][1]
    assert "move it from sweep to across (across: {model.width: [...]})" in problems[0][1]


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"across": {"enorm.c": [0, 1]}}, "across.enorm.c", "also set by the arms"),
        ({"across": {"enorm": [{"c": 0}]}}, "across.enorm", "enorm.c is also set by the arms"),
        ({"across": {"model.nope": [1], "bogus.x": [1]}}, "across.bogus.x", "no such path"),
        ({"across": {"dataset.name": ["digits", "digits"]}}, "across.dataset.name",
         "value 'digits' is listed twice"),
        ({"across": {"dataset.name": ["digits", "imagenet"]}}, "across.dataset.name",
         "value 'imagenet' is invalid: dataset.name: unknown dataset 'imagenet'"),
        ({"across": {"optimizer.lr": [0.1, -1]}}, "across.optimizer.lr",
         "value -1 is invalid: optimizer.lr: Input should be greater than 0"),
        ({"across": {"dataset.name": []}}, "across.dataset.name", "needs at least one value"),
        ({"baseline": {"enorm.c": 0, "dataset.name": "digits"}}, "baseline.dataset.name",
         "the baseline is the same arm in every setting"),
        ({"search": {"name": "random", "num_samples": 2},
          "sweep": {"enorm.c": {"choice": [0, 1.2]}}}, "across", "needs search 'grid'"),
        ({"confirm": {"top_k": 1, "seeds": [1, 2]}}, "across", "two-stage study"),
        ({"sequential": {"looks": [2, 3]}}, "across", "sequential study cannot run across"),
        ({"baseline": None}, "baseline", "a study across settings compares every arm"),
    ],
)
def test_every_conflict_names_its_field(changes, field, words):
    problems = problems_of(**changes)
    assert any(path == field and words in message for path, message in problems), problems


def test_a_value_valid_only_with_another_settings_value_names_the_setting():
    problems = problems_of(across={"dataset.name": ["digits", "svhn"], "dataset.extra": [True]})
    assert problems == [("across.dataset.extra", "value True (setting dataset.name=digits "
                         "dataset.extra=True) is invalid: dataset.extra: dataset.extra: true is "
                         "valid only for svhn, not 'digits'")]  # fmt: skip
    spec_of(across={"dataset.name": ["svhn"], "dataset.extra": [True]})  # valid together


def test_torch_level_checks_build_every_arm_in_every_setting():
    from studies.trial.validation import check_spec, parse_spec

    data = {**BASE, "across": {"model.n_layers": [2, 3]}, "model": {"name": "fully_connected",
            "n_layers": 3, "width": 16}}  # fmt: skip
    assert check_spec(parse_spec(data)) == []
    bad = {**data, "across": {"model.depth": [2, 3]}}
    with pytest.raises(SpecError) as error:
        parse_spec(bad)
    assert error.value.problems[0][0] == "across.model.depth"
    assert "unknown argument of model 'fully_connected'" in error.value.problems[0][1]
    huge = {**data, "across": {"model.width": [16, 10**8]}}
    with pytest.raises(SpecError) as error:
        parse_spec(huge)
    (where, message), = error.value.problems
    assert where == "across.model.width" and message.startswith("value 100000000: model.")
    assert "the model is too big" in message


def smoke_of(**changes):
    data = {**BASE, **changes}
    return parse_config(smoke_module.shrink(data))


def test_smoke_keeps_two_offline_settings_and_eight_trials():
    spec = smoke_of(across={"dataset.name": ["cifar10", "cifar100", "svhn"]},
                    dataset={"name": "cifar10", "root": "~/data", "download": True})
    assert spec.dataset.name == "fake"
    # three real datasets all became `fake`: two split seeds keep two different settings
    assert spec.across == {"dataset.name": ["fake"], "dataset.split_seed": [0, 1]}
    assert len(settings(spec)) == 2 <= expected_trials(spec) <= smoke_module.MAX_TRIALS
    for values in configurations(spec):
        config = resolved_config(spec, values)
        assert config["dataset"]["name"] == "fake" and config["dataset"]["train_size"] == 256


def test_smoke_caps_sizes_in_settings_without_merging_them():
    spec = smoke_of(across={"model.width": [500, 1000], "model.n_layers": [15, 30]},
                    model={"name": "fully_connected", "n_layers": 15, "width": 500})
    assert spec.across == {"model.width": [31, 32], "model.n_layers": [2]}
    widths = {get_path(resolved_config(spec, v), "model.width") for v in configurations(spec)}
    assert widths == {31, 32}
    assert expected_trials(spec) <= smoke_module.MAX_TRIALS


def test_catalog_across_studies_read_as_data():
    data = read_spec("quickstart-across")
    assert data["across"] == {"model.width": [32, 64], "model.n_layers": [4, 8, 12]}
