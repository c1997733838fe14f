"""Two-stage studies: a search stage picks arms, a confirm stage tests them on paired seeds.

A spec with a ``confirm`` section is the *search* stage (Optuna, random or grid;
usually one seed, selecting on the validation metric, ASHA allowed). When it ends,
its arms are ranked by the study metric at the last epoch (mean over seeds; trials
that ran every epoch rank before trials ASHA stopped early, the longer-running first;
diverged and errored trials do not rank; ties go to the arm proposed first: the ranking
of the search's answer, :mod:`studies.analysis.search`) and the ``top_k`` best, plus the
baseline arm, become the explicit ``arms`` of the *confirm* stage: a grid study named
``<name>-confirm`` next to the search study, run on ``confirm.seeds`` and judged on
``confirm.metric`` (the test split by default). The comparison runs on the confirm
stage. Both stages log to the same MLflow experiment, tagged ``normstudy.stage``.
With ``confirm.sequential`` the confirm stage runs look by look (:mod:`studies.run.sequential`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studies.analysis.search import summarize
from studies.analysis.trials import trials_from_results
from studies.config.load import parse_config
from studies.config.space import assigns, confirm_baseline, confirm_name, resolved_config
from studies.config.spec import StudySpec
from studies.store.results import trial_numbers, trial_statuses


def rank_arms(search: StudySpec, folder: Path) -> list[tuple[dict[str, Any], float]]:
    """The search stage's arms, best first, with their mean metric at the last epoch: the
    ranking of the search's answer (:func:`studies.analysis.search.summarize`)."""
    answer = summarize(trials_from_results(folder, search), search, trial_statuses(folder),
                       trial_numbers(folder))  # fmt: skip
    return [(config.values, config.mean) for config in answer.ranking]


def confirm_spec(search: StudySpec, folder: Path) -> tuple[StudySpec, list[float]]:
    """The confirm stage of a finished search stage, and the search scores of its arms.

    Raises ``ValueError`` when no non-baseline arm of the search finished.
    """
    assert search.confirm is not None
    confirm = search.confirm
    baseline = confirm_baseline(search)
    chosen, scores = [], []
    for arm, score in rank_arms(search, folder):
        if assigns(resolved_config(search, arm), baseline):
            continue  # the baseline comes along anyway
        chosen.append(arm)
        scores.append(score)
        if len(chosen) == confirm.top_k:
            break
    if not chosen:
        raise ValueError(f"no arm of the search stage {search.name!r} finished with a "
                         f"{search.metric.name} value; nothing to confirm")  # fmt: skip
    data = search.model_dump(mode="json", exclude_none=True, exclude={"confirm", "sweep"})
    data.update(
        name=confirm_name(search),
        description=(
            f"Confirm stage of {search.name!r}: its {len(chosen)} best arm(s) by "
            f"{search.metric.name} and the baseline, on seeds {confirm.seeds}, judged on "
            f"{confirm.metric.name}. {search.description}"
        ).strip(),
        arms=[baseline, *chosen],
        baseline=baseline,
        seeds=list(confirm.seeds),
        metric=confirm.metric.model_dump(),
        search={"name": "grid", "num_samples": 1},
        scheduler={"name": "fifo"},
        tracking={**data.get("tracking", {}), "experiment": search.experiment_name},
        confirm_of=search.name,
        sequential=confirm.sequential.model_dump() if confirm.sequential else None,
    )
    return parse_config(data), scores  # the search stage's spec was validated in full
