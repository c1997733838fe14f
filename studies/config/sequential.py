"""The ``sequential:`` section: confirm on paired seeds look by look, stop when decided.

``looks`` are cumulative seeds per arm (e.g. [3, 5, 8]): after the first 3 seeds of every arm
and the baseline, each arm is tested (group-sequential one-sided paired t-test,
:mod:`normlib.stats.design`); an arm that crossed its efficacy boundary, or whose conditional
power under ``min_effect`` fell below ``futility_threshold``, stops; the others and the
baseline run the next seeds up to the next look. A one-stage grid study takes the section at
the top level; a two-stage study takes it as ``confirm.sequential`` (its confirm stage runs
the looks).

Seeds. The looks consume the study's ``seeds`` in order: look k runs seeds[n_{k-1}:n_k]. When
``seeds`` is not given, the seeds are 1..looks[-1]; when it lists fewer than looks[-1], it is
extended with the next integers after its largest seed (quickstart's [1..5] with looks
[3, 5, 8] becomes [1..8]); ``study.yaml`` records the full list. More seeds than looks[-1]
is an error (they would never run).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SequentialSpec(BaseModel):
    """A group-sequential design over seeds (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    looks: list[int] = Field(description="cumulative seeds per arm at each look, e.g. [3, 5, 8]")
    spending: Literal["obrien_fleming", "pocock"] = Field(
        "obrien_fleming", description="Lan-DeMets alpha spending function"
    )
    futility: Literal["conditional_power", "none"] = Field(
        "conditional_power",
        description="conditional_power: stop an arm when its conditional power under "
        "min_effect is below futility_threshold (non-binding); none: efficacy stops only",
    )
    min_effect: float = Field(
        0.01, gt=0, description="smallest difference worth detecting, in the metric's units "
        "(accuracies are fractions: 0.01 = 1 percentage point)",
    )
    futility_threshold: float = Field(0.2, gt=0, lt=1)
    alpha: float = Field(
        0.05, gt=0, lt=1, description="family-wise one-sided level over all arms; each arm's "
        "design spends alpha / (number of arms), then Holm across arms",
    )

    @field_validator("futility", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return "none" if value is None or value is False else value

    @field_validator("looks")
    @classmethod
    def _looks(cls, looks: list[int]) -> list[int]:
        if len(looks) < 2:
            raise ValueError(f"give at least 2 looks, e.g. [3, 5, 8] (got {looks})")
        if looks[0] < 2:
            raise ValueError(f"the first look needs at least 2 seeds (a paired t-test "
                             f"needs 2 pairs; got {looks})")  # fmt: skip
        if any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
            raise ValueError(f"looks must be strictly increasing (got {looks})")
        return looks


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def fill_seeds(data: Any) -> Any:
    """Spec data (a mapping with ``sequential`` and ``seeds``) with the seeds the looks use:
    1..looks[-1] when ``seeds`` is not given, else ``seeds`` extended after its largest seed
    up to looks[-1]. Anything malformed is left for validation to report."""
    if not isinstance(data, dict):
        return data
    section = data.get("sequential")
    looks = section.get("looks") if isinstance(section, dict) else getattr(section, "looks", None)
    if not _int_list(looks) or not looks or looks[-1] > 10_000:
        return data
    need = looks[-1]
    seeds = data.get("seeds")
    if seeds is None:
        return {**data, "seeds": list(range(1, need + 1))}
    if _int_list(seeds) and seeds and len(set(seeds)) == len(seeds) and len(seeds) < need:
        start = max(seeds) + 1
        return {**data, "seeds": [*seeds, *range(start, start + need - len(seeds))]}
    return data
