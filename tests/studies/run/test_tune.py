"""A study's param space for Ray Tune: a random search draws its configurations in the driver
and runs each on every seed (paired), the way a grid's arms are."""

from __future__ import annotations

from collections import defaultdict

import pytest
from ray.tune.search.variant_generator import generate_variants

from studies.config.space import arm_of, expected_trials, resolve_arm
from studies.run.tune import param_space, random_samples
from studies.trial.validation import load_spec

RANDOM = [
    "search={name: random, num_samples: 4}", "baseline=null", "seeds=[1, 2, 3]",
    "sweep={optimizer.lr: {loguniform: [0.001, 1.0]}, optimizer.momentum: {uniform: [0.5, 0.9]},"
    " enorm.c: {choice: [0, 1.0, 1.2]}, model.width: {grid: [16, 32]}}",
]  # fmt: skip


def trials_of(spec) -> list[dict]:
    """The trial configs Ray Tune's own variant generator makes of the param space."""
    return [resolve_arm(config) for _, config in generate_variants(param_space(spec))]


def test_each_random_configuration_runs_on_every_seed_and_every_grid_value():
    spec = load_spec("quickstart", RANDOM)
    trials = trials_of(spec)
    assert len(trials) == expected_trials(spec) == 4 * 2 * 3
    seeds_of = defaultdict(list)
    for config in trials:
        seeds_of[repr(sorted(arm_of(config, spec).items()))].append(config["seed"])
    assert len(seeds_of) == 4 * 2  # 4 samples x 2 widths, each an arm ...
    assert all(sorted(seeds) == [1, 2, 3] for seeds in seeds_of.values())  # ... on every seed
    for config in trials:
        assert 0.001 <= config["optimizer"]["lr"] <= 1.0
        assert 0.5 <= config["optimizer"]["momentum"] <= 0.9
        assert config["enorm"]["c"] in (0, 1.0, 1.2) and config["model"]["width"] in (16, 32)


def test_samples_are_the_same_for_the_same_spec_and_follow_the_first_seed():
    first = random_samples(load_spec("quickstart", RANDOM))
    assert first == random_samples(load_spec("quickstart", RANDOM))
    other = random_samples(load_spec("quickstart", [*RANDOM, "seeds=[7, 2, 3]"]))
    assert other != first and len(other) == len(first) == 4
    assert all(set(sample) == {"optimizer.lr", "optimizer.momentum", "enorm.c"}
               for sample in first)  # fmt: skip


def test_log_uniform_and_randint_cover_their_range():
    spec = load_spec("quickstart", [*RANDOM[:-1], "search={name: random, num_samples: 400}",
                                    "sweep={optimizer.lr: {loguniform: [0.001, 1.0]},"
                                    " train.epochs: {randint: [1, 3]}}"])  # fmt: skip
    samples = random_samples(spec)
    lrs = sorted(sample["optimizer.lr"] for sample in samples)
    assert 0.001 <= lrs[0] and lrs[-1] <= 1.0
    assert 0.01 < lrs[len(lrs) // 2] < 0.1  # the median of a log-uniform: near 10^-1.5
    assert {sample["train.epochs"] for sample in samples} == {1, 2, 3}


def test_explicit_arms_are_crossed_with_the_samples():
    spec = load_spec("quickstart", [
        "search={name: random, num_samples: 3}", "baseline=null", "seeds=[1, 2]",
        "sweep={optimizer.lr: {loguniform: [0.01, 0.3]}}",
        "arms=[{enorm: {c: 0}}, {enorm: {c: 1.2}}]",
    ])  # fmt: skip
    trials = trials_of(spec)
    assert len(trials) == expected_trials(spec) == 3 * 2 * 2
    pairs = {(config["enorm"]["c"], config["optimizer"]["lr"]) for config in trials}
    assert len(pairs) == 6 and {c for c, _ in pairs} == {0, 1.2}


@pytest.mark.parametrize("search", ["grid", "optuna"])
def test_other_searches_draw_nothing_in_the_driver(search):
    overrides = ["sweep={optimizer.lr: {choice: [0.01, 0.1]}}", "baseline=null",
                 f"search={{name: {search}, num_samples: 2}}"]  # fmt: skip
    spec = load_spec("quickstart", overrides)
    assert random_samples(spec) == [] and "arm" not in param_space(spec)
