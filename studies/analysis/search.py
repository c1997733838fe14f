"""The answer of a search: the best configuration, the ranking, how the trials ended.

A *configuration* is one arm (the swept values, the seed excluded): an Optuna or random
proposal, or a grid point. Its score is the study metric at each trial's last epoch, the
mean over its seeds when it ran on several. The ranking is the one a two-stage study's
confirm stage takes its ``top_k`` arms from (:func:`studies.run.stages.rank_arms`):
configurations whose trials all ran every epoch rank before those ASHA stopped early (their
last epoch is earlier, the values not comparable; the longer-running first), diverged and
errored trials never rank; ties go to the configuration proposed first. Text here, plots in
:mod:`studies.analysis.search_plots`, files and MLflow in :mod:`studies.analysis.search_outputs`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies.analysis.trials import TrialHistory
from studies.config.space import expected_trials, has_arms, swept_paths
from studies.config.spec import StudySpec

TOP = 10  # rows of the printed table
FINISHED, STOPPED, DIVERGED, ERRORED, UNFINISHED = (
    "finished", "stopped early", "diverged", "errored", "unfinished",
)  # fmt: skip
STATES = (FINISHED, STOPPED, DIVERGED, ERRORED, UNFINISHED)
RANKED = (FINISHED, STOPPED)


@dataclass
class TrialScore:
    """One trial's part in a configuration's score."""

    trial_id: str
    number: int | None  # the order the searcher proposed it (1, 2, ...); None if unknown
    seed: int | None
    value: float
    epoch: int
    state: str  # finished or stopped early


@dataclass
class RankedConfig:
    """One configuration, its score (mean over its ranked trials) and its trials."""

    rank: int
    arm: str
    values: dict[str, Any]
    trials: list[TrialScore]
    failed: list[tuple[str, str]]  # (trial id, diverged / errored) of its other trials
    mean: float
    sd: float  # nan with one trial

    @property
    def complete(self) -> bool:
        """Every ranked trial of it ran all epochs."""
        return all(t.state == FINISHED for t in self.trials)

    @property
    def best_trial(self) -> TrialScore:
        return self.trials[0]


@dataclass
class SearchAnswer:
    """What a search found; ``importances`` come from :mod:`studies.run.importance`."""

    spec: StudySpec
    metric: str
    mode: str
    ranking: list[RankedConfig]
    counts: dict[str, int]  # state -> trials, every state of STATES present
    trials: list[TrialHistory]
    states: dict[str, str]  # trial id -> its state
    numbers: dict[str, int]
    importances: dict[str, float] | None = None
    importance_note: str = ""
    folder: Path | None = None
    files: list[Path] = field(default_factory=list)
    run_id: str | None = None
    log_warning: str = ""  # why the answer is not in MLflow, when it is not

    @property
    def best(self) -> RankedConfig | None:
        return self.ranking[0] if self.ranking else None

    @property
    def expected(self) -> int:
        return expected_trials(self.spec)

    @property
    def one_trial_each(self) -> bool:
        """Every configuration ran once (an Optuna search, or one seed)."""
        return all(len(c.trials) + len(c.failed) <= 1 for c in self.ranking)


def is_search(spec: StudySpec) -> bool:
    """Whether a study ends with a search's answer: the search stage of a two-stage study,
    a study that samples configurations (random, Optuna), or one that sweeps arms with no
    baseline to compare them with."""
    return has_arms(spec) and (spec.confirm is not None or spec.search.name != "grid"
                               or spec.baseline is None)  # fmt: skip


def trial_state(trial: TrialHistory, status: str | None) -> str:
    """How a trial ended, from its reports and Ray Tune's status (None: no experiment state,
    the trial is taken as ended where its reports end)."""
    if trial.status == "diverged":
        return DIVERGED
    if trial.status == "finished":
        return FINISHED
    if status == "ERROR":
        return ERRORED
    return STOPPED if status in ("TERMINATED", None) else UNFINISHED


def summarize(trials: list[TrialHistory], spec: StudySpec, statuses: dict[str, str],
              numbers: dict[str, int], metric: str | None = None) -> SearchAnswer:  # fmt: skip
    """Rank the configurations of a study's trials and count how the trials ended.

    ``statuses``: Ray Tune's status per trial id (:func:`studies.store.results.trial_statuses`);
    ``numbers``: the order the trials were proposed (:func:`studies.store.results.trial_numbers`).
    """
    metric = metric or spec.metric.name
    if statuses:  # a trial folder the saved experiment state does not know (a driver killed
        # before saving it) is not one of the study's trials: resume proposes it again
        trials = [t for t in trials if t.trial_id in statuses]
    mode = spec.metric.mode if metric == spec.metric.name else (
        "min" if metric.endswith("_loss") else "max")  # fmt: skip
    states = {t.trial_id: trial_state(t, statuses.get(t.trial_id) if statuses else None)
              for t in trials}  # fmt: skip
    counts = {state: 0 for state in STATES}
    for state in states.values():
        counts[state] += 1
    scored: dict[str, list[TrialScore]] = {}
    failed: dict[str, list[tuple[str, str]]] = {}
    values: dict[str, dict[str, Any]] = {}
    order = sorted(trials, key=lambda t: (numbers.get(t.trial_id, math.inf), t.trial_id))
    for trial in order:
        values.setdefault(trial.arm, trial.arm_values)
        state = states[trial.trial_id]
        history = trial.history.get(metric, {})
        if state in (DIVERGED, ERRORED):
            failed.setdefault(trial.arm, []).append((trial.trial_id, state))
        if state not in RANKED or not history or max(history) != trial.last_epoch:
            continue  # diverged, errored, still running, or no value at its last epoch
        epoch = max(history)
        scored.setdefault(trial.arm, []).append(TrialScore(
            trial.trial_id, numbers.get(trial.trial_id), trial.seed, history[epoch], epoch,
            state))  # fmt: skip
    sign = 1.0 if mode == "max" else -1.0
    configs = []
    for arm, scores in scored.items():
        mean = statistics.fmean(s.value for s in scores)
        sd = statistics.stdev(s.value for s in scores) if len(scores) > 1 else math.nan
        scores.sort(key=lambda s: (-sign * s.value, s.number or math.inf))
        configs.append(RankedConfig(0, arm, values[arm], scores, failed.get(arm, []), mean, sd))
    position = {arm: i for i, arm in enumerate(scored)}  # first proposed first
    # ASHA stopped the incomplete ones at different epochs: the longer-running first
    configs.sort(key=lambda c: (not c.complete, -min(t.epoch for t in c.trials),
                                -sign * c.mean, position[c.arm]))  # fmt: skip
    for rank, config in enumerate(configs, 1):
        config.rank = rank
    return SearchAnswer(spec, metric, mode, configs, counts, trials, states, numbers)


# ---------------------------------------------------------------------------
# Text


def display_scale(metric: str) -> float:
    """Display units of a metric, as the comparison's reports: accuracies in %, losses as
    they are (this module leaves the comparison, and its torch, unloaded)."""
    return 100.0 if metric.endswith("_acc") else 1.0


def format_value(value: float, metric: str) -> str:
    """A metric value as the reports show it: accuracies in %, losses as they are."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * 100:.2f}%" if display_scale(metric) != 1.0 else f"{value:.4f}"


def format_param(value: Any) -> str:
    """A swept value, short: 4 significant digits for floats, a section by its name."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        extras = ",".join(f"{k}={format_param(v)}" for k, v in value.items() if k != "name")
        return f"{value.get('name', '')}({extras})" if extras else str(value.get("name", value))
    return str(value)


def score_text(config: RankedConfig, metric: str) -> str:
    """``92.36%``, or ``92.10% ± 0.40 (3 seeds)`` for a configuration run on several seeds."""
    text = format_value(config.mean, metric)
    if len(config.trials) > 1:
        digits = 2 if display_scale(metric) != 1.0 else 4
        text += f" ± {config.sd * display_scale(metric):.{digits}f} ({len(config.trials)} seeds)"
    return text


def best_text(config: RankedConfig, metric: str) -> str:
    """``trial 1e85024e (#12), val_acc 92.36% at epoch 2``; over seeds, the mean ± sd and
    the trials (the best seed's first)."""
    trial = config.best_trial
    if len(config.trials) == 1:
        number = f" (#{trial.number})" if trial.number is not None else ""
        return (f"trial {trial.trial_id}{number}, {metric} {score_text(config, metric)} at "
                f"epoch {trial.epoch}")  # fmt: skip
    ids = ", ".join(t.trial_id for t in config.trials)
    return f"{metric} {score_text(config, metric)} at epoch {trial.epoch} (trials {ids})"


def counts_text(answer: SearchAnswer) -> str:
    """``12 of 12 trials: 10 finished, 1 stopped early, 1 diverged, 0 errored``."""
    c = answer.counts
    total = sum(c.values())
    parts = [f"{c[FINISHED]} finished", f"{c[STOPPED]} stopped early", f"{c[DIVERGED]} diverged",
             f"{c[ERRORED]} errored"]  # fmt: skip
    if c[UNFINISHED]:
        parts.append(f"{c[UNFINISHED]} unfinished")
    return f"{total} of {answer.expected} trials: " + ", ".join(parts)


def _paths(answer: SearchAnswer) -> list[str]:
    return swept_paths(answer.spec)


def _direction(answer: SearchAnswer) -> str:
    return "higher" if answer.mode == "max" else "lower"


def table_rows(answer: SearchAnswer, top: int = TOP) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the top configurations (best first)."""
    paths = _paths(answer)
    single = answer.one_trial_each
    header = ["rank", "#" if single else "trials", "trial" if single else "best trial",
              answer.metric, *paths, "epoch", "status"]  # fmt: skip
    rows = []
    for config in answer.ranking[:top]:
        best = config.best_trial
        count = str(best.number or "-") if single else str(len(config.trials))
        status = "finished" if config.complete else STOPPED
        if config.failed:
            status += f"; {len(config.failed)} seed(s) " + "/".join(
                sorted({state for _, state in config.failed}))  # fmt: skip
        rows.append([str(config.rank), count, best.trial_id, score_text(config, answer.metric),
                     *(format_param(config.values.get(p)) for p in paths), str(best.epoch),
                     status])  # fmt: skip
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned, numbers and text left-aligned alike (values are short)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in [header, ["-" * w for w in widths], *rows]]  # fmt: skip
    return "\n".join(lines)


def importance_text(answer: SearchAnswer) -> str:
    """``optimizer.lr 0.83, optimizer.momentum 0.17``, or why there are none."""
    if answer.importances:
        ranked = sorted(answer.importances.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{path} {value:.2f}" for path, value in ranked)
    return answer.importance_note or "-"


def format_answer(answer: SearchAnswer, top: int = TOP) -> str:
    """The terminal answer: the best configuration, the top table, counts, importances."""
    spec, best = answer.spec, answer.best
    what = (f"{answer.metric} at each trial's last epoch, {_direction(answer)} is better")
    out = [f"Search {spec.name!r}: {counts_text(answer)}."]
    if best is None:
        out.append(f"No trial has a {answer.metric} value at its last epoch yet: no answer.")
        return "\n".join(out)
    out.append(f"Best configuration ({what}): {best_text(best, answer.metric)}")
    for path in _paths(answer):
        out.append(f"  {path} = {format_param(best.values.get(path))}")
    if not best.complete:
        out.append("  (no configuration ran every epoch: this one was stopped early)")
    header, rows = table_rows(answer, top)
    shown = min(top, len(answer.ranking))
    out += ["", f"Top {shown} of {len(answer.ranking)} configurations:",
            format_table(header, rows)]  # fmt: skip
    if answer.importances is not None or answer.importance_note:
        out += ["", f"What mattered (fANOVA importance): {importance_text(answer)}"]
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(esc, row)) + " |" for row in rows])


def to_markdown(answer: SearchAnswer, plots: list[str], top: int = TOP) -> str:
    """``search/report.md``: the answer, every configuration ranked, the failures, the plots."""
    spec = answer.spec
    out = [f"# Search: {spec.name}", "", spec.description or "", "",
           f"Ranked by {answer.metric} at each trial's last epoch ({_direction(answer)} is "
           "better); configurations that ran every epoch rank before those stopped early "
           "(the longer-running first); diverged and errored trials do not rank.", "",
           f"**How the trials ended:** {counts_text(answer)}.", ""]  # fmt: skip
    best = answer.best
    if best is not None:
        out += [f"**Best configuration:** {best_text(best, answer.metric)}.", ""]
        out += [f"- `{path}` = {format_param(best.values.get(path))}" for path in _paths(answer)]
        out.append("")
    if answer.importances is not None or answer.importance_note:
        out += ["## What mattered", "", f"fANOVA importance (Optuna's evaluator; the shares of "
                f"the variance of {answer.metric} each parameter explains): "
                f"{importance_text(answer)}.", ""]  # fmt: skip
    header, rows = table_rows(answer, len(answer.ranking))
    out += ["## Ranking", "", _md_table(header, rows) if rows else "No ranked configuration.",
            ""]  # fmt: skip
    for name in plots:
        out += [f"![{name}]({name})", ""]
    failed = [(t, s) for t, s in sorted(answer.states.items()) if s not in RANKED]
    out += ["## Trials that do not rank", ""]
    if failed:
        out.append(_md_table(["trial", "state"], [[t, s] for t, s in failed]))
    else:
        out.append("None.")
    return "\n".join(out) + "\n"


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def to_csv(answer: SearchAnswer) -> str:
    """``search/trials.csv``: one row per ranked trial (rank of its configuration, its
    number, seed, value in the metric's own units, epoch, state, swept values)."""
    paths = _paths(answer)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "trial", "number", "seed", answer.metric, "epoch", "state", *paths])
    for config in answer.ranking:
        for t in config.trials:
            cells = [_csv_cell(config.values.get(p)) for p in paths]
            writer.writerow([config.rank, t.trial_id, t.number or "", t.seed, repr(t.value),
                             t.epoch, t.state, *cells])  # fmt: skip
    return buffer.getvalue()
