"""A random or Optuna search that cannot work is refused before anything runs, naming the
field (the CLI exits 2: tests/acceptance/test_search.py)."""

from __future__ import annotations

import pytest

from studies.config.checks import check_search
from studies.config.spec import SpecError
from studies.trial.validation import load_spec

SEARCH = ["enorm.c=0", "baseline=null", "seeds=[1]"]


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (["search={name: optuna, num_samples: 0}"], "search.num_samples",
         "greater than or equal to 1"),
        (["search={name: optuna, num_samples: 4}", "sweep={}"], "sweep", "nothing is swept"),
        (["search={name: random, num_samples: 4}", "sweep={}"], "sweep", "nothing is swept"),
        (["search={name: optuna, num_samples: 4}",
          "sweep={optimizer.lr: {grid: [0.01, 0.1]}, enorm.c: {grid: [0, 1]}}"],
         "search.name", "every sweep path is a grid (optimizer.lr, enorm.c)"),
        (["search={name: optuna, num_samples: 5}",
          "sweep={optimizer.lr: {choice: [0.01, 0.1]}, enorm.c: {choice: [0, 1]}}"],
         "search.num_samples", "5 Optuna proposals from 4 possible configurations"),
        (["search={name: random, num_samples: 3}", "sweep={optimizer.lr: {grid: [0.01, 0.1]}}"],
         "search.num_samples", "each of the 3 samples would run the same 2 configuration(s)"),
        (["metric.name=nfe"], "metric.name", "'val_acc', 'val_loss'"),
    ],
)  # fmt: skip
def test_a_search_that_cannot_work_names_the_field(overrides, field, words):
    with pytest.raises(SpecError) as err:
        load_spec("quickstart", [*SEARCH, *overrides])
    assert any(path == field and words in message for path, message in err.value.problems), (
        err.value.problems)


@pytest.mark.parametrize(
    "overrides",
    [
        ["search={name: optuna, num_samples: 12}",
         "sweep={optimizer.lr: {loguniform: [0.001, 1.0]}, enorm.c: {grid: [0, 1]}}"],
        ["search={name: optuna, num_samples: 4}",
         "sweep={optimizer.lr: {choice: [0.01, 0.1]}, enorm.c: {choice: [0, 1]}}"],
        ["search={name: random, num_samples: 3}",
         "sweep={optimizer.lr: {choice: [0.01, 0.1]}, enorm.c: {grid: [0, 1]}}"],
        ["search={name: random, num_samples: 1}", "sweep={optimizer.lr: {grid: [0.01, 0.1]}}"],
        ["sweep={optimizer.lr: {grid: [0.01, 0.1]}}"],  # a grid search
    ],
)  # fmt: skip
def test_searches_that_can_work_pass(overrides):
    spec = load_spec("quickstart", [*SEARCH, *overrides])
    assert check_search(spec) == []
