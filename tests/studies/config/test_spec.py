"""Spec validation: every malformed spec is rejected naming the field, before any work."""

import pytest
import yaml

from studies.cli import main
from studies.config.load import apply_overrides, read_yaml, resolve_spec_path
from studies.config.space import arms, trial_configs
from studies.config.spec import SpecError
from studies.trial.validation import load_spec, parse_spec

BASE = read_yaml(resolve_spec_path("quickstart"))


def spec_with(**changes):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in changes.items():
        data = apply_overrides(data, [f"{path.replace('__', '.')}={yaml.safe_dump(value).strip()}"])
    return data


MALFORMED = [
    ({"bogus": 1}, "bogus", "unknown field"),
    ({"optimizer__lr": -0.1}, "optimizer.lr", "greater than 0"),
    ({"optimizer__name": "rmsprop"}, "optimizer", "sgd, sgdg, adamg, alig"),
    ({"optimizer__lrg": 0.1}, "optimizer.lrg", "unknown field"),
    ({"dataset__name": "imagenet"}, "dataset.name", "unknown dataset"),
    ({"model__name": "vgg"}, "model.name", "unknown model"),
    ({"model__depth": 3}, "model.depth", "unknown argument of model 'fully_connected'"),
    ({"sweep": {"model.depth": {"grid": [2, 3]}}, "baseline": None}, "sweep.model.depth",
     "unknown argument of model 'fully_connected'"),
    ({"model": {"name": "resnet18", "input_norm": "bn"}}, "model.input_norm",
     "one switch, bn.input_norm"),
    ({"sweep": {"enorm.c": {"grid": []}}}, "sweep.enorm.c.grid", "needs at least one value"),
    ({"train__epochs": 0}, "train.epochs", "greater than or equal to 1"),
    ({"enorm__c": -1}, "enorm.c", "greater than or equal to 0"),
    ({"enorm__sweep": "random"}, "enorm.sweep", "'jacobi' or 'sequential'"),
    ({"schedule__name": "exp"}, "schedule.name", "'constant', 'linear', 'cosine' or 'step'"),
    ({"schedule__name": "step"}, "schedule", "needs milestones"),
    ({"search__name": "hyperband"}, "search.name", "'grid', 'random' or 'optuna'"),
    ({"scheduler__name": "pbt"}, "scheduler.name", "'fifo' or 'asha'"),
    ({"seeds": []}, "seeds", "at least 1 item"),
    ({"seeds": [1, 1]}, "seeds", "distinct"),
    ({"metric__name": "accuracy"}, "metric.name", "val_acc"),
    ({"resources__gpu": -1}, "resources.gpu", "greater than or equal to 0"),
    ({"sweep": {"enorm.q": {"grid": [1, 2]}}}, "sweep.enorm.q", "no such path"),
    ({"sweep": {"enorm.c": {"grid": [0, -2]}}}, "sweep.enorm.c", "value -2 is invalid"),
    (
        {"sweep": {"enorm.c": {"uniform": [0, 2]}}},
        "sweep.enorm.c",
        "needs search 'random' or 'optuna'",
    ),
    (
        {"sweep": {"optimizer.lr": {"loguniform": [0.1, 0.01]}}, "search": {"name": "random"}},
        "sweep.optimizer.lr",
        "low < high",
    ),
    ({"sweep": {"enorm.c": {"linspace": [0, 1]}}}, "sweep", "enorm.c: give exactly one of grid"),
    ({"baseline": {"enorm.c": 3}}, "baseline", "matches no arm"),
    ({"baseline": {"enorm.x": 0}}, "baseline.enorm.x", "no such path"),
    ({"name": "has space"}, "name", "pattern"),
    (
        {"optimizer": {"name": "adamg", "lr": 0.01, "lrg": 0.1}},
        "sweep.enorm.c",
        "value 1.0 is invalid: enorm needs optimizer 'sgd'",
    ),
    (
        {
            "bn": {"c": 100},
            "optimizer": {"name": "alig"},
            "enorm": None,
            "sweep": {},
            "baseline": None,
        },
        "",
        "bn.c (BN-scale lr divisor) needs optimizer 'sgd'",
    ),
    (
        {"dataset": {"name": "cifar10", "root": "/nonexistent/data"}},
        "dataset.root",
        "does not exist",
    ),
    ({"storage": "s3://bars/studies"}, "storage", "'s3://bars/studies' is a URI"),
]


@pytest.mark.parametrize(
    ("changes", "path", "message"), MALFORMED, ids=[m[1] or m[2] for m in MALFORMED]
)
def test_malformed_spec_names_the_field(changes, path, message):
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(**changes))
    problems = info.value.problems
    assert any(p == path and message in m for p, m in problems), problems


def test_quickstart_arms_seeds_and_baseline():
    spec = load_spec("quickstart")
    assert [a["enorm.c"] for a in arms(spec)] == [0, 1.0, 1.2]
    configs = trial_configs(spec)
    assert len(configs) == 15
    assert sorted({c["seed"] for c in configs}) == [1, 2, 3, 4, 5]


def test_overrides_parse_yaml_values():
    spec = load_spec(
        "quickstart", ["train.epochs=3", "seeds=[7, 8]", "sweep.enorm.c={grid: [0, 2]}"]
    )
    assert spec.train.epochs == 3 and spec.seeds == [7, 8]
    assert spec.sweep["enorm.c"].grid == [0, 2]


def test_section_sweep_over_optimizers():
    spec = load_spec(
        "quickstart",
        [
            "enorm.c=0",
            "sweep={}",
            "sweep.optimizer={grid: [{name: sgd, lr: 0.1}, {name: sgdg, lr: 0.01, lrg: 0.2}]}",
            "baseline={optimizer: {name: sgd}}",
        ],
    )
    labels = [a["optimizer"]["name"] for a in arms(spec)]
    assert labels == ["sgd", "sgdg"]


def test_cli_validate_exit_codes(capsys, tmp_path):
    assert main(["validate", "quickstart"]) == 0
    assert "15 trials" in capsys.readouterr().out
    assert main(["validate", "quickstart", "--set", "optimizer.lr=0"]) == 2
    err = capsys.readouterr().err
    assert "optimizer.lr" in err
    assert main(["run", "quickstart", "--set", "train.epochs=0", "--storage", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert main(["validate", "no-such-study"]) == 2
    assert "catalog" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run quickstart", "resume q", "list", "compare q", "sync q"])
def test_a_uri_storage_is_refused_before_any_work(command, capsys, tmp_path, monkeypatch):
    """Taken for a path, ``s3://b/x`` was a local folder named ``s3:`` (issue 26)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--storage", "gs://bars/studies"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --storage: 'gs://bars/studies' is a URI" in err
    assert "object storage (s3://, gs://) is not supported yet" in err
    assert list(tmp_path.iterdir()) == []


def test_smoke_shrinks_and_keeps_baseline():
    spec = load_spec("quickstart", ["sweep.enorm.c={grid: [1.0, 1.2, 0]}"], smoke=True)
    assert spec.name == "quickstart-smoke"
    assert spec.train.epochs <= 2 and len(spec.seeds) == 2
    assert 0 in spec.sweep["enorm.c"].grid and len(spec.sweep["enorm.c"].grid) == 2
    assert spec.model.kwargs()["width"] <= 32
