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
    matches,
    resolved_config,
    setting_label,
    settings,
    swept_paths,
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
    problems.extend(check_across(spec, base))
    if problems:
        return problems

    if spec.baseline is not None:
        for path in flatten_assignment(spec.baseline):
            if not _path_exists(base, path):
                problems.append((f"baseline.{path}", "no such path in the trial config"))
        if not problems and is_finite(spec):
            problems.extend(_check_baseline_arm(spec))
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


def _check_baseline_arm(spec: StudySpec) -> list[tuple[str, str]]:
    """The baseline picks exactly one arm, in every setting."""
    for setting in settings(spec):
        where = f" in setting {setting_label(setting)}" if setting else ""
        hits = [v for v in arms(spec)
                if is_baseline(resolved_config(spec, {**v, **setting}), spec)]  # fmt: skip
        if not hits:
            labels = "; ".join(arm_label(v) for v in arms(spec))
            return [("baseline", f"matches no arm{where}; arms: {labels}")]
        if len(hits) > 1:
            labels = "; ".join(arm_label(v) for v in hits)
            differ = [path for path in spec.sweep if len({repr(v.get(path)) for v in hits}) > 1]
            hint = ""
            if differ:
                hint = (f"; or, to compare the arms within each value of {differ[0]}, move it "
                        f"from sweep to across (across: {{{differ[0]}: [...]}})")  # fmt: skip
            return [("baseline", f"matches {len(hits)} arms ({labels}){where}; it must pick "
                     f"one{hint}")]  # fmt: skip
    return []


def _overlap(first: str, second: str) -> bool:
    """Whether two paths set the same value (equal, or one a section of the other)."""
    return first == second or first.startswith(f"{second}.") or second.startswith(f"{first}.")


ACROSS_ONLY_GRID = ("needs search 'grid': every arm runs in every setting on the same seeds, "
                    "which a random or Optuna search does not do")  # fmt: skip


def check_across(spec: StudySpec, base: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems of the settings (``across``): each path exists and is no arm's, each value and
    each setting validates, no value twice; and the features settings do not combine with."""
    if not spec.across:
        return []
    problems: list[tuple[str, str]] = []
    arm_paths = swept_paths(spec)
    for path, values in spec.across.items():
        where = f"across.{path}"
        if path == "seed" or path.split(".")[0] not in base:
            problems.append((where, f"no such path in the trial config; sections: "
                             f"{', '.join(base)}"))  # fmt: skip
            continue
        if not _path_exists(base, path):
            problems.append((where, f"no such path in the trial config (section "
                             f"{path.split('.')[0]!r})"))  # fmt: skip
            continue
        swept = [other for other in arm_paths if _overlap(other, path)]
        if swept:
            problems.append((where, f"{swept[0]} is also set by the arms (sweep or arms); a path "
                             "is either an arm (compared) or a setting (across), not both"))
            continue
        seen: list[Any] = []
        for value in values:
            if any(matches(value, other) and matches(other, value) for other in seen):
                problems.append((where, f"value {value!r} is listed twice"))
            seen.append(value)
    for path in flatten_assignment(spec.baseline or {}):
        if any(_overlap(path, other) for other in spec.across):
            problems.append((f"baseline.{path}", "is a setting (across); the baseline is the "
                             "same arm in every setting, so leave the settings out of it"))
    if problems:
        return problems
    problems += _setting_problems(spec)
    if problems:
        return problems
    for setting in settings(spec):
        for arm in arms(spec) if is_finite(spec) else [{}]:
            found = _invalid(spec, "", {**arm, **setting})
            if found:
                who = f"arm {arm_label(arm)} in " if arm else ""
                return [("across", f"{who}setting {setting_label(setting)} is invalid: "
                         f"{found[0][1]}")]  # fmt: skip
    if spec.search.name != "grid":
        problems.append(("across", ACROSS_ONLY_GRID + f" ({spec.search.name!r})"))
    if spec.confirm is not None:
        problems.append(("across", "a two-stage study (confirm) cannot run across settings: "
                         "search in one setting, then run the arms it chose as a grid study "
                         "with across"))  # fmt: skip
    if spec.sequential is not None:
        problems.append(("across", "a sequential study cannot run across settings (its looks "
                         "stop arms by one comparison each); give the study a fixed list of "
                         "seeds, or run one sequential study per setting and pool them with "
                         "`normstudy compare A B`"))  # fmt: skip
    if spec.baseline is None:
        problems.append(("baseline", "a study across settings compares every arm with a "
                         "baseline arm within each setting: set baseline (paths -> values)"))
    return problems


def _setting_problems(spec: StudySpec) -> list[tuple[str, str]]:
    """The ``across`` values the trial config refuses, each once, named by its path; the
    setting is named too when a value fails only beside some values of the other paths."""
    every = settings(spec)
    failed: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for setting in every:
        try:
            resolved_config(spec, setting)
        except ValidationError as err:
            for sub, message in format_pydantic_errors(err):
                path = next((p for p in setting if _overlap(p, sub)), "")
                shown = repr(setting[path]) if path else ""
                failed.setdefault((path, shown, f"{sub}: {message}"), []).append(setting)
    problems = []
    for (path, shown, detail), where in failed.items():
        if not path:
            problems.append(("across", f"setting {setting_label(where[0])} is invalid: {detail}"))
            continue
        holding = [s for s in every if repr(s[path]) == shown]
        within = "" if len(where) == len(holding) else f" (setting {setting_label(where[0])})"
        problems.append((f"across.{path}", f"value {shown}{within} is invalid: {detail}"))
    return problems


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
