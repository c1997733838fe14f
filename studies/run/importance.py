"""Hyperparameter importances of a search, by Optuna's own fANOVA evaluator.

The finished trials of a search (every epoch run; ASHA-stopped trials stopped at an earlier
epoch and their values are not comparable) become the trials of an in-memory Optuna study,
each with its swept values and the metric at its last epoch. Their distributions come from
the spec: a loguniform domain is a log-scaled float, uniform a float, randint an integer,
a grid or choice of numbers a float range over its values (log-scaled when the values are
log-spaced), any other grid, choice or explicit arm a categorical. Optuna's
``FanovaImportanceEvaluator`` (a random forest fitted to the trials, scikit-learn; seeded)
then gives each parameter its share of the variance of the metric, summing to 1.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from studies.analysis.search import FINISHED, SearchAnswer, format_param
from studies.analysis.search_plots import log_axis, plotted_paths
from studies.config.spec import LogUniformDomain, RandIntDomain, UniformDomain

MIN_PARAMS, MIN_TRIALS = 2, 4
SEED = 0


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def distributions(answer: SearchAnswer, paths: list[str]) -> dict[str, Any]:
    """The Optuna distribution of each swept path (see the module docstring)."""
    import optuna  # lazily, as Ray: an answer without importances never loads it

    found: dict[str, Any] = {}
    for path in paths:
        domain = answer.spec.sweep.get(path)
        values: list[Any] = [c.values.get(path) for c in answer.ranking]
        if isinstance(domain, LogUniformDomain | UniformDomain):
            low, high = next(iter(domain.model_dump().values()))
            log = isinstance(domain, LogUniformDomain)
            found[path] = optuna.distributions.FloatDistribution(low, high, log=log)
        elif isinstance(domain, RandIntDomain):
            found[path] = optuna.distributions.IntDistribution(*domain.randint)
        elif _numeric(values):
            numbers = [float(v) for v in values]
            log = min(numbers) > 0 and log_axis(answer.spec, path, numbers)
            found[path] = optuna.distributions.FloatDistribution(min(numbers), max(numbers),
                                                                 log=log)  # fmt: skip
        else:
            labels = sorted({format_param(v) for v in values})
            found[path] = optuna.distributions.CategoricalDistribution(labels)
    return found


def _param(value: Any, distribution: Any) -> Any:
    import optuna

    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return format_param(value)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return int(value)
    return float(value)


def param_importances(answer: SearchAnswer) -> tuple[dict[str, float] | None, str]:
    """(path -> importance, note): the fANOVA importances of the swept parameters over the
    finished trials, or None and the reason there are none."""
    paths = plotted_paths(answer)
    if len(paths) < MIN_PARAMS:
        return None, ""  # one parameter: its slice plot says it all
    finished = [(config, t) for config in answer.ranking for t in config.trials
                if t.state == FINISHED and math.isfinite(t.value)]  # fmt: skip
    if len(finished) < MIN_TRIALS:
        return None, (f"not computed: fANOVA needs at least {MIN_TRIALS} finished trials, "
                      f"the search has {len(finished)}")  # fmt: skip
    if len({t.value for _, t in finished}) < 2:
        return None, f"not computed: every finished trial has the same {answer.metric}"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = distributions(answer, paths)
    direction: Literal["maximize", "minimize"] = "maximize" if answer.mode == "max" else "minimize"
    study = optuna.create_study(direction=direction)
    study.add_trials([
        optuna.trial.create_trial(
            value=t.value, distributions=space,
            params={p: _param(config.values.get(p), space[p]) for p in paths},
        )
        for config, t in finished
    ])  # fmt: skip
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=SEED)
    found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {path: float(found.get(path, 0.0)) for path in paths}, ""
