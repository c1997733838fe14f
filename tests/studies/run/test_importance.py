"""fANOVA importances of a search's parameters (Optuna's evaluator) on known responses."""

from __future__ import annotations

import math
import random

import optuna
import pytest

from studies.analysis.search import summarize
from studies.analysis.trials import TrialHistory
from studies.config.space import arm_label
from studies.run.importance import distributions, param_importances
from studies.trial.validation import load_spec

SEARCH = [
    "enorm.c=0",
    "baseline=null",
    "seeds=[1]",
    "train.epochs=2",
    "sweep={optimizer.lr: {loguniform: [0.001, 1.0]}, optimizer.momentum: {uniform: [0, 0.95]},"
    " model.width: {choice: [16, 32]}, optimizer.nesterov: {choice: [false, true]}}",
    "search={name: optuna, num_samples: 40}",
]


@pytest.fixture(scope="module")
def spec():
    return load_spec("quickstart", SEARCH)


def answer_of(spec, response, n: int = 40, epochs: int = 2):
    """``n`` random configurations whose val_acc at the last epoch is ``response(values)``."""
    rng = random.Random(0)
    trials = []
    for i in range(n):
        values = {"optimizer.lr": math.exp(rng.uniform(math.log(1e-3), 0.0)),
                  "optimizer.momentum": rng.uniform(0, 0.95),
                  "model.width": rng.choice([16, 32]),
                  "optimizer.nesterov": rng.choice([False, True])}  # fmt: skip
        history = {"val_acc": {e: response(values) for e in range(1, epochs + 1)}}
        trials.append(TrialHistory(f"t{i:02d}", arm_label(values), values, 1, False, "finished",
                                   history))  # fmt: skip
    return summarize(trials, spec, {}, {t.trial_id: i for i, t in enumerate(trials, 1)})


def test_the_parameter_that_decides_the_metric_is_the_important_one(spec):
    answer = answer_of(spec, lambda v: 1 - abs(math.log10(v["optimizer.lr"]) + 1) / 3)
    found, note = param_importances(answer)
    assert note == "" and set(found) == set(spec.sweep)
    assert sum(found.values()) == pytest.approx(1.0)
    others = [value for path, value in found.items() if path != "optimizer.lr"]
    assert found["optimizer.lr"] > 0.8 and found["optimizer.lr"] > 8 * max(others), found


def test_a_categorical_parameter_can_matter(spec):
    answer = answer_of(spec, lambda v: 0.9 if v["optimizer.nesterov"] else 0.5)
    found, _ = param_importances(answer)
    assert max(found, key=found.get) == "optimizer.nesterov" and found["optimizer.nesterov"] > 0.9


def test_the_spec_gives_each_parameter_its_distribution(spec):
    answer = answer_of(spec, lambda v: v["optimizer.momentum"])
    space = distributions(answer, list(spec.sweep))
    lr, momentum = space["optimizer.lr"], space["optimizer.momentum"]
    assert isinstance(lr, optuna.distributions.FloatDistribution) and lr.log
    assert (lr.low, lr.high) == (0.001, 1.0)
    assert not momentum.log and (momentum.low, momentum.high) == (0.0, 0.95)
    assert space["model.width"] == optuna.distributions.FloatDistribution(16.0, 32.0)
    assert space["optimizer.nesterov"].choices == ("False", "True")


def test_too_few_finished_trials_say_so(spec):
    answer = answer_of(spec, lambda v: v["optimizer.momentum"], n=3)
    assert param_importances(answer) == (
        None, "not computed: fANOVA needs at least 4 finished trials, the search has 3")


def test_one_parameter_has_no_importances():
    one = load_spec("quickstart", [*SEARCH[:4], "sweep={optimizer.lr: {loguniform: [0.001, 1]}}",
                                   SEARCH[-1]])  # fmt: skip
    trials = [TrialHistory(f"t{i}", f"lr={i}", {"optimizer.lr": 10.0 ** -i}, 1, False,
                           "finished", {"val_acc": {2: 0.1 * i}}) for i in range(1, 4)]
    assert param_importances(summarize(trials, one, {}, {})) == (None, "")
