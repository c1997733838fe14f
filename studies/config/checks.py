"""The checks of a study that need no torch: sweep, arms, baseline, sequential design.

Each check returns problems as (field path, message) pairs, so the CLI can name the field;
an empty list means the study is consistent. The trial config's own checks (pydantic) and
the ones that build the model (``studies.trial.validation``) run elsewhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from studies.config.components import is_user_name
from studies.config.space import (
    CONFIRM_BASE,
    FINITE,
    arm_label,
    arms,
    assigns,
    domain_endpoints,
    domain_values,
    explicit_arms,
    flatten_assignment,
    get_path,
    is_baseline,
    is_finite,
    resolved_config,
)
from studies.config.spec import (
    GridDomain,
    LogUniformDomain,
    RandIntDomain,
    StudySpec,
    UniformDomain,
    format_pydantic_errors,
)
from studies.config.trial import TrialConfig


def _path_exists(config: dict[str, Any], path: str) -> bool:
    try:
        get_path(config, path)
        return True
    except KeyError:
        pass
    parts = path.split(".")
    # A model argument the spec leaves at its default: the model registry decides
    # (studies.trial.validation checks it against the constructor's signature); so for
    # the arguments of a user's optimizer, dataset loader or method.
    if len(parts) != 2:
        return False
    section = config.get(parts[0])
    return parts[0] == "model" or (
        parts[0] in ("dataset", "optimizer", "method") and isinstance(section, dict)
        and is_user_name(parts[0], section.get("name"))
    )


def check_study(spec: StudySpec) -> list[tuple[str, str]]:
    """Every problem of the study's sweep, arms and baseline that needs no torch."""
    problems: list[tuple[str, str]] = []
    base = TrialConfig.model_validate(spec.trial_config()).model_dump(mode="json")
    for path, domain in spec.sweep.items():
        where = f"sweep.{path}"
        if path == "seed" or path.split(".")[0] not in base:
            problems.append(
                (where, f"no such path in the trial config; sections: {', '.join(base)}")
            )
            continue
        if not _path_exists(base, path):
            problems.append(
                (where, f"no such path in the trial config (section {path.split('.')[0]!r})")
            )
            continue
        if spec.search.name == "grid" and not isinstance(domain, FINITE):
            kind = next(iter(domain.model_dump()))
            problems.append(
                (where, f"'{kind}' needs search 'random' or 'optuna' (grid takes grid/choice)")
            )
        if isinstance(domain, (UniformDomain, LogUniformDomain, RandIntDomain)):
            low, high = domain_endpoints(domain)
            if not low < high:
                problems.append((where, f"range [{low}, {high}] must have low < high"))
                continue
        for value in domain_endpoints(domain):
            try:
                resolved_config(spec, {path: value})
            except ValidationError as err:
                for sub, message in format_pydantic_errors(err):
                    detail = f"{sub}: {message}" if sub else message
                    problems.append((where, f"value {value!r} is invalid: {detail}"))
    problems.extend(_check_assignments(spec, base))
    problems.extend(check_search(spec))
    if problems:
        return problems

    if spec.baseline is not None:
        for path in flatten_assignment(spec.baseline):
            if not _path_exists(base, path):
                problems.append((f"baseline.{path}", "no such path in the trial config"))
        if not problems and is_finite(spec):
            hits = [v for v in arms(spec) if is_baseline(resolved_config(spec, v), spec)]
            if not hits:
                labels = "; ".join(arm_label(v) for v in arms(spec))
                problems.append(("baseline", f"matches no arm; arms: {labels}"))
            elif len(hits) > 1:
                labels = "; ".join(arm_label(v) for v in hits)
                problems.append(
                    ("baseline", f"matches {len(hits)} arms ({labels}); it must pick one")
                )
    if not problems:
        problems.extend(check_sequential(spec))
    return problems


def check_search(spec: StudySpec) -> list[tuple[str, str]]:
    """Problems of a random or Optuna search that cannot work: nothing to sample, a grid
    Optuna cannot enumerate, more samples than a finite space has configurations."""
    search = spec.search
    if search.name == "grid":
        return []
    if not spec.sweep and not spec.arms:
        return [("sweep", f"search {search.name!r} samples the swept paths and nothing is "
                 "swept; sweep a path (e.g. optimizer.lr: {loguniform: [0.001, 1.0]}) or "
                 "leave search out")]  # fmt: skip
    grids = [path for path, domain in spec.sweep.items() if isinstance(domain, GridDomain)]
    if search.name == "optuna" and grids and len(grids) == len(spec.sweep):
        return [("search.name", f"'optuna' samples ranges and choices, and every sweep path is "
                 f"a grid ({', '.join(grids)}); run the grid with search 'grid', or sweep a "
                 "range (uniform, loguniform, randint) or a choice for Optuna to pick from")]
    if not is_finite(spec) or search.num_samples == 1:
        return []
    combos = max(1, len(spec.arms))
    for domain in spec.sweep.values():
        combos *= len(domain_values(domain))
    if search.name == "optuna" and search.num_samples > combos:
        return [("search.num_samples", f"{search.num_samples} Optuna proposals from {combos} "
                 "possible configurations (every sweep path is a grid or choice) would repeat "
                 f"configurations; ask for at most {combos}, or run them all with search "
                 "'grid'")]  # fmt: skip
    if search.name == "random" and len(grids) == len(spec.sweep):
        return [("search.num_samples", f"every sweep path is a grid, so each of the "
                 f"{search.num_samples} samples would run the same {combos} configuration(s) "
                 "on the same seeds again; use search 'grid' (more seeds for repeats), or "
                 "sweep a range or a choice to sample from")]  # fmt: skip
    return []


def _invalid(spec: StudySpec, where: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems of the base config with ``values`` applied (empty when it validates)."""
    try:
        resolved_config(spec, values)
    except ValidationError as err:
        return [(where, f"{sub}: {message}" if sub else message)
                for sub, message in format_pydantic_errors(err)]  # fmt: skip
    return []


def _check_assignments(spec: StudySpec, base: dict[str, Any]) -> list[tuple[str, str]]:
    """Explicit arms and the confirm stage's baseline: paths exist, values validate,
    arms are told apart."""
    problems: list[tuple[str, str]] = []
    assignments = [(f"arms[{i}]", arm) for i, arm in enumerate(explicit_arms(spec))]
    if spec.confirm is not None and spec.confirm.baseline is not None:
        assignments.append((CONFIRM_BASE, flatten_assignment(spec.confirm.baseline)))
    for where, assignment in assignments:
        bad = [path for path in assignment if not _path_exists(base, path)]
        problems += [(f"{where}.{path}", "no such path in the trial config") for path in bad]
        overlap = [path for path in assignment if path in spec.sweep and where != CONFIRM_BASE]
        problems += [(f"{where}.{path}", "also swept under sweep; set it in one place")
                     for path in overlap]  # fmt: skip
        if not bad and not overlap:
            problems += _invalid(spec, where, assignment)
    if spec.arms and spec.search.name == "optuna":
        problems.append(("arms", "explicit arms need search 'grid' or 'random' (Optuna "
                         "proposes one configuration at a time); sweep their differences instead"))
    if problems:
        return problems
    explicit = explicit_arms(spec)
    for i, arm in enumerate(explicit):
        config = resolved_config(spec, arm)
        first = next(j for j, other in enumerate(explicit) if assigns(config, other))
        if first != i:
            message = f"is indistinguishable from arms[{first}] (all its values hold here)"
            problems.append((f"arms[{i}]", f"{message}; make the arms differ"))
    if spec.confirm is not None and spec.confirm.baseline is None and spec.baseline is None:
        problems.append((CONFIRM_BASE, "a two-stage study needs a baseline arm: set "
                         "confirm.baseline (paths -> values) or baseline"))  # fmt: skip
    return problems


def check_sequential(spec: StudySpec) -> list[tuple[str, str]]:
    """Problems of a sequential design in a study (field path, message); none without one."""
    problems: list[tuple[str, str]] = []
    if spec.confirm is not None and spec.confirm.sequential is not None:
        looks = spec.confirm.sequential.looks
        if len(spec.confirm.seeds) > looks[-1]:
            problems.append(("confirm.sequential.looks", _too_many(len(spec.confirm.seeds),
                                                                   looks, "confirm.seeds")))
    design = spec.sequential
    if design is None:
        return problems
    where = "sequential"
    if spec.confirm is not None:
        return [*problems, (where, "a two-stage study runs its looks in the confirm stage: move "
                            "the section to confirm.sequential")]  # fmt: skip
    if spec.search.name != "grid":
        problems.append((where, f"needs search 'grid' (every arm on the same seeds), not "
                         f"{spec.search.name!r}"))  # fmt: skip
    if spec.scheduler.name != "fifo":
        problems.append((where, "needs scheduler 'fifo': ASHA would stop trials before their "
                         "last epoch, and a look compares finished trials"))  # fmt: skip
    if spec.baseline is None:
        problems.append(("baseline", "a sequential study compares every arm with a baseline "
                         "arm seed for seed: set baseline (paths -> values)"))  # fmt: skip
    elif is_finite(spec):
        others = [v for v in arms(spec) if not is_baseline(resolved_config(spec, v), spec)]
        if not others:
            problems.append((where, "needs at least one arm besides the baseline"))
    if len(spec.seeds) > design.looks[-1]:
        problems.append((f"{where}.looks", _too_many(len(spec.seeds), design.looks, "seeds")))
    return problems


def _too_many(n_seeds: int, looks: list[int], field: str) -> str:
    return (f"the last look is at {looks[-1]} seeds but {field} lists {n_seeds}; the looks use "
            f"the seeds in order, so give at most {looks[-1]} seeds (or leave {field} out: "
            f"1..{looks[-1]}), or add a look")
