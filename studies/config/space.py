"""Sweeps: dotted paths into the trial config, arms, seeds and the baseline.

A *path* such as ``enorm.c`` or ``model.steps`` names one value of the trial
config; a path may also name a whole section (``optimizer``) whose grid
values are mappings, which is how a study compares different optimizers.
Explicit ``arms`` (a list of assignments, each possibly touching several
sections, e.g. ALI-G with a constant schedule vs SGD with a step schedule)
are crossed with the sweep. An *arm* is one assignment of every swept path
(the seed excluded); trials of the same arm differ only by seed, and the
comparison stage pairs them by seed with the baseline arm. A *setting* is one
assignment of every ``across`` path (blocking factors such as the dataset): every
arm runs in every setting, and arms are paired with the baseline within a setting.

In a Ray Tune config, the explicit arm rides under the key ``arm`` until
:func:`resolve_arm` applies it.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

from studies.config.spec import (
    ChoiceDomain,
    GridDomain,
    StudySpec,
    SweepDomain,
)
from studies.config.trial import TrialConfig

FINITE = (GridDomain, ChoiceDomain)
CONFIRM_BASE = "confirm.baseline"
CONFIRM_SUFFIX = "-confirm"


def get_path(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(path)
        node = node[key]
    return node


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def with_values(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with each ``path: value`` applied."""
    config = copy.deepcopy(config)
    for path, value in values.items():
        set_path(config, path, copy.deepcopy(value))
    return config


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def domain_values(domain: SweepDomain) -> list[Any]:
    """The values of a finite domain (grid or choice)."""
    if isinstance(domain, GridDomain):
        return list(domain.grid)
    if isinstance(domain, ChoiceDomain):
        return list(domain.choice)
    raise TypeError(f"domain_values: {type(domain).__name__} has no finite list of values")


def domain_endpoints(domain: SweepDomain) -> list[Any]:
    """Values that must each be valid: all of a finite domain, the ends of a range."""
    if isinstance(domain, FINITE):
        return domain_values(domain)
    low, high = next(iter(domain.model_dump().values()))
    return [low, high]


def is_finite(spec: StudySpec) -> bool:
    return all(isinstance(domain, FINITE) for domain in spec.sweep.values())


def explicit_arms(spec: StudySpec) -> list[dict[str, Any]]:
    """The spec's explicit arms as ``path: value`` assignments."""
    return [flatten_assignment(arm) for arm in spec.arms]


def has_arms(spec: StudySpec) -> bool:
    """Whether trials differ by more than their seed."""
    return bool(spec.arms or spec.sweep)


def swept_paths(spec: StudySpec) -> list[str]:
    """Every path an arm may set: the explicit arms' paths, then the sweep's."""
    paths = [path for arm in explicit_arms(spec) for path in arm]
    return list(dict.fromkeys([*paths, *spec.sweep]))


def arms(spec: StudySpec) -> list[dict[str, Any]]:
    """Every assignment: explicit arms x the finite sweep (cartesian product, spec order)."""
    if not is_finite(spec):
        raise ValueError("arms can be enumerated only for grid/choice sweeps")
    paths = list(spec.sweep)
    grids = [domain_values(spec.sweep[path]) for path in paths]
    combos = [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*grids)]
    return [{**arm, **combo} for arm in explicit_arms(spec) or [{}] for combo in combos]


def settings(spec: StudySpec) -> list[dict[str, Any]]:
    """Every setting: one assignment of each ``across`` path (cartesian product, spec order);
    ``[{}]``, the one unnamed setting, for a study without ``across``."""
    paths = list(spec.across)
    combos = itertools.product(*(spec.across[path] for path in paths))
    return [dict(zip(paths, combo, strict=True)) for combo in combos]


def configurations(spec: StudySpec) -> list[dict[str, Any]]:
    """Every arm in every setting (a finite study's distinct trial configs, seeds aside)."""
    return [{**arm, **setting} for arm in arms(spec) for setting in settings(spec)]


def setting_of(trial_config: dict[str, Any], spec: StudySpec) -> dict[str, Any]:
    """The setting of a resolved trial config: its values at the ``across`` paths."""
    return {path: get_path(trial_config, path) for path in spec.across}


def setting_label(values: dict[str, Any]) -> str:
    """Short name of a setting, e.g. ``dataset.name=digits model.width=32``; empty for the
    one setting of a study without ``across``."""
    return arm_label(values) if values else ""


def resolve_arm(config: dict[str, Any]) -> dict[str, Any]:
    """A Ray Tune config with its explicit arm (key ``arm``) applied to the sections."""
    if "arm" not in config:
        return config
    rest = {key: value for key, value in config.items() if key != "arm"}
    return with_values(rest, config["arm"])


def arm_label(values: dict[str, Any]) -> str:
    """Short human-readable name of an arm, e.g. ``enorm.c=1.2 optimizer=sgdg``."""
    if not values:
        return "default"
    parts = []
    for path, value in values.items():
        if isinstance(value, dict):
            shown = value.get("name", json.dumps(value, sort_keys=True))
            extras = {k: v for k, v in value.items() if k != "name"}
            shown = f"{shown}({','.join(f'{k}={v}' for k, v in extras.items())})"
        else:
            shown = value
        parts.append(f"{path}={shown}")
    return " ".join(parts)


def arm_of(trial_config: dict[str, Any], spec: StudySpec) -> dict[str, Any]:
    """The arm of a resolved trial config: the explicit arm it matches (first in spec
    order), then its values at the swept paths."""
    values: dict[str, Any] = {}
    for arm in explicit_arms(spec):
        if assigns(trial_config, arm):
            values.update(arm)
            break
    values.update({path: get_path(trial_config, path) for path in spec.sweep})
    return values


def assigns(trial_config: dict[str, Any], assignment: dict[str, Any]) -> bool:
    """Every ``path: value`` of the assignment holds in the config."""
    for path, wanted in assignment.items():
        try:
            value = get_path(trial_config, path)
        except KeyError:
            return False
        if not matches(value, wanted):
            return False
    return True


def matches(value: Any, wanted: Any) -> bool:
    """``wanted`` equals ``value``; for mappings, ``wanted`` is a subset of ``value``."""
    if isinstance(wanted, dict) and isinstance(value, dict):
        return all(k in value and matches(value[k], v) for k, v in wanted.items())
    if isinstance(wanted, (int, float)) and isinstance(value, (int, float)):
        return float(wanted) == float(value)
    return wanted == value


def is_baseline(trial_config: dict[str, Any], spec: StudySpec) -> bool:
    if spec.baseline is None:
        return False
    return assigns(trial_config, flatten_assignment(spec.baseline))


def flatten_assignment(assignment: dict[str, Any]) -> dict[str, Any]:
    """Baselines and arms may be nested or dotted; section-valued entries stay mappings."""
    flat: dict[str, Any] = {}
    for key, value in assignment.items():
        if isinstance(value, dict) and key not in ("optimizer", "model", "enorm", "bn", "method"):
            for sub, subvalue in flatten(value).items():
                flat[f"{key}.{sub}"] = subvalue
        else:
            flat[key] = value
    return flat


def resolved_config(spec: StudySpec, values: dict[str, Any]) -> dict[str, Any]:
    """Base trial config with an arm's values applied, re-validated and dumped."""
    config = with_values(spec.trial_config(), values)
    return TrialConfig.model_validate(config).model_dump(mode="json", exclude_none=True)


def trial_configs(spec: StudySpec) -> list[dict[str, Any]]:
    """All trial configs of a finite study: arms x settings x seeds (seed under ``seed``)."""
    configs = []
    for values in configurations(spec):
        config = resolved_config(spec, values)
        for seed in spec.seeds:
            configs.append({**config, "seed": seed})
    return configs


# ---------------------------------------------------------------------------
# Semantic checks: every problem found before any work starts.


# ---------------------------------------------------------------------------
# Trial counts and the stages of a two-stage study


def expected_trials(spec: StudySpec) -> int:
    """Trials the study will run: arms x grid x seeds (grid search), arms x grid x samples x
    seeds (random search), proposals (Optuna); times the settings of ``across``."""
    if spec.search.name == "optuna":
        return spec.search.num_samples
    grid = max(1, len(spec.arms))
    for domain in spec.sweep.values():
        if isinstance(domain, GridDomain) or spec.search.name == "grid":
            grid *= len(domain_values(domain))
    samples = 1 if spec.search.name == "grid" else spec.search.num_samples
    return grid * samples * len(spec.seeds) * len(settings(spec))


def total_trials(spec: StudySpec) -> tuple[int, int]:
    """Trials of the (search) stage and of the confirm stage (0 for one-stage studies)."""
    confirm = 0
    if spec.confirm is not None:
        confirm = (spec.confirm.top_k + 1) * len(spec.confirm.seeds)
    return expected_trials(spec), confirm


def confirm_name(search: StudySpec) -> str:
    """The confirm stage of search stage ``NAME`` is the study ``NAME-confirm``."""
    return f"{search.name}{CONFIRM_SUFFIX}"


def confirm_baseline(search: StudySpec) -> dict[str, Any]:
    """The confirm stage's baseline arm: ``confirm.baseline``, else the study's baseline."""
    assert search.confirm is not None
    return flatten_assignment(search.confirm.baseline or search.baseline or {})
