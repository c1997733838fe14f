"""The comparison stage: does each arm of a study beat the baseline, seed for seed?

Pipeline::

    trials_from_results(folder, spec)  |  trials_from_mlflow(spec, uri)   -> list[Trial]
    compare(trials, spec, metric, select, alpha)                          -> Comparison
    write_outputs(comparison, folder) / log_outputs(...)                  -> comparison/ files
    format_table(comparison)                                              -> terminal text

Both loaders give the same table: one :class:`Trial` per trial with its arm (the swept
values, the seed excluded), seed, baseline flag, status and per-epoch metric history.

Every non-baseline arm is paired with the baseline arm by seed (only seeds where both
trials finished count) and tested with the one-sided paired t-test of
``normlib.stats.paired_ttest``: alternative "greater" (arm > baseline) for a metric to
maximize, "less" for one to minimize. The p-values of all arms are Holm-adjusted together;
the verdict is "significant" when the adjusted p-value is <= alpha. A Wilcoxon signed-rank
p-value, the effect size d_z and the number of seeds a paired t-test needs for 80% power at
the observed d_z come with every row. Diverged and incomplete trials are failures: they are
listed in ``Comparison.excluded`` and the test runs on the remaining pairs with a warning.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from normlib import stats
from studies.space import (
    arm_label,
    arm_of,
    arms,
    has_arms,
    is_baseline,
    is_finite,
    matches,
    resolve_arm,
    swept_paths,
    with_values,
)
from studies.spec import METRICS, TRIAL_SECTIONS, SpecError, StudySpec, dump_spec

SELECTIONS = ("final", "best_val")
SOURCES = ("results", "mlflow")
HISTORY_KEYS = (*METRICS, "diverged")
OUTPUT_DIR = "comparison"
ARTIFACT_DIR = "comparison"
CSV_FILE, REPORT_FILE = "comparison.csv", "report.md"
PAIRED_PLOT, CURVES_PLOT = "paired.png", "learning_curves.png"
TARGET_POWER = 0.8
NOT_ENOUGH = "not enough pairs"


# ---------------------------------------------------------------------------
# The trials table


@dataclass
class Trial:
    """One trial of a study: which arm and seed, how it ended, what it measured per epoch.

    ``history`` maps a metric name (``val_acc``, ``diverged``, ...) to ``{epoch: value}``;
    only finite values are kept (MLflow does not store NaN, so neither does the results
    loader). ``status`` is ``diverged`` if any epoch reported ``diverged = 1``, ``finished``
    if it reached ``spec.train.epochs``, else ``incomplete`` (errored, stopped early by ASHA,
    or still running).
    """

    trial_id: str
    arm: str
    arm_values: dict[str, Any]
    seed: int | None
    baseline: bool
    status: str
    history: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def last_epoch(self) -> int:
        return max((max(h) for h in self.history.values() if h), default=0)


def _status(history: dict[str, dict[int, float]], epochs: int) -> str:
    if any(value >= 0.5 for value in history.get("diverged", {}).values()):
        return "diverged"
    last = max((max(h) for h in history.values() if h), default=0)
    return "finished" if last >= epochs else "incomplete"


def _make_trial(
    trial_id: str, config: dict[str, Any], history: dict[str, dict[int, float]], spec: StudySpec
) -> Trial:
    config = resolve_arm(config)
    trial_config = {k: config[k] for k in (*TRIAL_SECTIONS, "seed") if k in config}
    try:
        values = arm_of(trial_config, spec)
    except KeyError:
        values = {}
    seed = config.get("seed")
    history = {key: dict(sorted(h.items())) for key, h in sorted(history.items()) if h}
    return Trial(
        trial_id=str(trial_id),
        arm=arm_label(values) if has_arms(spec) else "default",
        arm_values=values,
        seed=int(seed) if seed is not None else None,
        baseline=is_baseline(trial_config, spec),
        status=_status(history, spec.train.epochs),
        history=history,
    )


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def trials_from_results(folder: str | Path, spec: StudySpec) -> list[Trial]:
    """The trials table from a Ray Tune study directory (``trial_*/params.json`` and
    ``result.json``). A repeated epoch (a trial restarted from a checkpoint) keeps the
    last line reported for it."""
    folder = Path(folder)
    trials = []
    for trial_dir in sorted(p for p in folder.glob("trial_*") if p.is_dir()):
        params = trial_dir / "params.json"
        if not params.is_file():
            continue
        config = json.loads(params.read_text())
        history: dict[str, dict[int, float]] = {}
        trial_id = trial_dir.name.removeprefix("trial_")
        result = trial_dir / "result.json"
        lines = result.read_text().splitlines() if result.is_file() else []
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            trial_id = str(row.get("trial_id", trial_id))
            if "epoch" not in row:
                continue
            epoch = int(row["epoch"])
            for key in HISTORY_KEYS:
                value = _finite_number(row.get(key))
                if value is not None:
                    history.setdefault(key, {})[epoch] = value
        trials.append(_make_trial(trial_id, config, history, spec))
    return sorted(trials, key=lambda t: t.trial_id)


def _parse_param(text: str) -> Any:
    """A flattened MLflow param (``str(value)``) back to the Python value."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _unflatten(params: dict[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path, text in params.items():
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = _parse_param(text)
    return config


def _search_all(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiment(client, spec: StudySpec, uri: str):
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        raise SpecError(
            [("--source", f"no MLflow experiment {spec.experiment_name!r} at {uri}")]
        )
    return experiment


def trials_from_mlflow(spec: StudySpec, uri: str) -> list[Trial]:
    """The trials table from the study's MLflow trial runs (params = flattened trial config,
    metrics per epoch with step = epoch)."""
    from mlflow import MlflowClient

    from studies.tracking import ROLE, STUDY, TRIAL_ID

    client = MlflowClient(tracking_uri=uri)
    experiment = _experiment(client, spec, uri)
    query = f"tags.`{ROLE}` = 'trial' and tags.`{STUDY}` = '{spec.name}'"
    trials = []
    for run in _search_all(client, experiment.experiment_id, query):
        config = _unflatten(run.data.params)
        history: dict[str, dict[int, float]] = {}
        for key in HISTORY_KEYS:
            if key not in run.data.metrics:
                continue
            points = sorted(client.get_metric_history(run.info.run_id, key),
                            key=lambda m: (m.step, m.timestamp))  # fmt: skip
            for point in points:
                value = _finite_number(point.value)
                if value is not None:
                    history.setdefault(key, {})[int(point.step)] = value
        trials.append(_make_trial(run.data.tags[TRIAL_ID], config, history, spec))
    return sorted(trials, key=lambda t: t.trial_id)


# ---------------------------------------------------------------------------
# The comparison


@dataclass
class Score:
    """The number a trial contributes: ``value`` of ``metric`` at ``epoch``."""

    trial_id: str
    arm: str
    seed: int
    value: float
    epoch: int


@dataclass
class Excluded:
    trial_id: str
    arm: str
    seed: int | None
    reason: str


@dataclass
class ArmRow:
    """One arm against the baseline. Statistics are NaN (and ``seeds_needed`` None) when
    fewer than 2 pairs exist; then ``verdict`` is "not enough pairs"."""

    arm: str
    params: dict[str, Any]
    n_pairs: int
    paired_seeds: list[int]
    missing_arm: list[int]
    missing_baseline: list[int]
    arm_mean: float
    arm_sd: float
    baseline_mean: float
    baseline_sd: float
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    t: float
    p: float
    p_holm: float
    d_z: float
    wilcoxon_p: float
    seeds_needed: int | None
    verdict: str
    note: str = ""

    @property
    def enough(self) -> bool:
        return self.n_pairs >= 2


@dataclass
class Comparison:
    """Everything the comparison found; ``rows`` has one :class:`ArmRow` per non-baseline
    arm, ``scores`` the value of every usable trial, ``excluded`` the failures."""

    spec: StudySpec
    metric: str
    scored_metric: str
    select: str
    alpha: float
    mode: str
    alternative: str
    baseline: str
    baseline_params: dict[str, Any]
    rows: list[ArmRow]
    scores: list[Score]
    excluded: list[Excluded]
    warnings: list[str]
    trials: list[Trial]

    @property
    def n_tests(self) -> int:
        return sum(row.enough for row in self.rows)


def metric_mode(metric: str, spec: StudySpec) -> str:
    """The study's mode for its own metric; otherwise min for a loss, max for an accuracy."""
    if metric == spec.metric.name:
        return spec.metric.mode
    return "min" if metric.endswith("_loss") else "max"


def check_options(metric: str, select: str, alpha: float) -> None:
    """SpecError naming each bad option (CLI exit code 2)."""
    problems = []
    if metric not in METRICS:
        problems.append(("--metric", f"unknown metric {metric!r}; valid: {', '.join(METRICS)}"))
    if select not in SELECTIONS:
        problems.append(("--select", f"unknown selection {select!r}; valid: final, best_val"))
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        problems.append(("--alpha", f"must lie strictly between 0 and 1 (got {alpha!r})"))
    if problems:
        raise SpecError(problems)


def _score(trial: Trial, metric: str, select: str) -> tuple[float, int] | str:
    """(value, epoch) of a trial, or the reason it has none."""
    kind = "loss" if metric.endswith("_loss") else "acc"
    if select == "final":
        history = trial.history.get(metric, {})
        if not history or max(history) != trial.last_epoch:
            return f"no {metric} at its last epoch {trial.last_epoch}"
        epoch = max(history)
        return history[epoch], epoch
    selector, scored = f"val_{kind}", f"test_{kind}"
    history = trial.history.get(selector, {})
    if not history:
        return f"no {selector} values"
    sign = 1.0 if kind == "acc" else -1.0
    epoch = max(history, key=lambda e: (sign * history[e], -e))  # earliest best epoch
    value = trial.history.get(scored, {}).get(epoch)
    if value is None:
        return f"no {scored} at its best-{selector} epoch {epoch}"
    return value, epoch


def _failure(trial: Trial, epochs: int) -> str | None:
    if trial.status == "diverged":
        flags = trial.history.get("diverged", {})
        epoch = min(e for e, value in flags.items() if value >= 0.5)
        return f"diverged at epoch {epoch}"
    if trial.status == "incomplete":
        return (f"incomplete: {trial.last_epoch} of {epochs} epochs "
                "(errored, stopped early or still running)")  # fmt: skip
    if trial.seed is None:
        return "no seed recorded"
    return None


def _same_arm(values: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return values.keys() == wanted.keys() and all(
        matches(values[path], wanted[path]) and matches(wanted[path], values[path])
        for path in wanted
    )


def _arm_order(spec: StudySpec, trials: list[Trial]) -> tuple[list[str], dict[str, dict]]:
    """Arm labels in spec order for grid sweeps (then any others by first trial id), and the
    values of arms the spec lists but no trial has yet. Spec arms are matched by value, so
    a grid value 0 finds trials that recorded 0.0."""
    order: list[str] = []
    without_trials: dict[str, dict[str, Any]] = {}
    if is_finite(spec) and has_arms(spec):
        for wanted in arms(spec):
            found = [t.arm for t in trials if _same_arm(t.arm_values, wanted)]
            label = found[0] if found else arm_label(wanted)
            if not found:
                without_trials[label] = wanted
            if label not in order:
                order.append(label)
    for trial in trials:
        if trial.arm not in order:
            order.append(trial.arm)
    return order, without_trials


def _spec_baseline_label(spec: StudySpec) -> str:
    """The baseline arm's label from the spec alone (when no baseline trial exists yet)."""
    if is_finite(spec) and has_arms(spec):
        for values in arms(spec):
            if is_baseline(with_values(spec.trial_config(), values), spec):
                return arm_label(values)
    return "baseline"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) >= 2 else math.nan
    return mean, sd


def compare(
    trials: list[Trial],
    spec: StudySpec,
    metric: str | None = None,
    select: str = "final",
    alpha: float = 0.05,
) -> Comparison:
    """Pair every arm with the baseline by seed and test it; see the module docstring."""
    metric = metric or spec.metric.name
    check_options(metric, select, alpha)
    if spec.baseline is None:
        raise SpecError([("baseline", "the study has no baseline, so there is nothing to "
                                      "compare against; add `baseline:` to the spec")])  # fmt: skip
    mode = metric_mode(metric, spec)
    alternative = "greater" if mode == "max" else "less"
    kind = "loss" if metric.endswith("_loss") else "acc"
    scored_metric = metric if select == "final" else f"test_{kind}"
    needed = metric if select == "final" else f"val_{kind}"
    if trials and not any(needed in t.history for t in trials):
        raise SpecError([("--metric", f"no trial of study {spec.name!r} reports {needed!r}")])

    baseline_labels = sorted({t.arm for t in trials if t.baseline})
    if len(baseline_labels) > 1:
        labels = "; ".join(baseline_labels)
        raise SpecError([("baseline", f"matches {len(baseline_labels)} arms ({labels}); "
                                      "it must pick one")])  # fmt: skip
    baseline = baseline_labels[0] if baseline_labels else _spec_baseline_label(spec)

    warnings: list[str] = []
    excluded: list[Excluded] = []
    usable: dict[str, dict[int, Score]] = {}
    params: dict[str, dict[str, Any]] = {}
    seen_seeds: dict[str, set[int]] = {}
    for trial in trials:
        params.setdefault(trial.arm, trial.arm_values)
        if trial.seed is not None:
            seen_seeds.setdefault(trial.arm, set()).add(trial.seed)
        reason = _failure(trial, spec.train.epochs)
        if reason is None:
            scored = _score(trial, metric, select)
            if isinstance(scored, str):
                reason = scored
            elif trial.seed in usable.get(trial.arm, {}):
                first = usable[trial.arm][trial.seed].trial_id
                reason = f"duplicate of trial {first} (same arm and seed)"
            else:
                value, epoch = scored
                score = Score(trial.trial_id, trial.arm, trial.seed, value, epoch)
                usable.setdefault(trial.arm, {})[trial.seed] = score
        if reason is not None:
            excluded.append(Excluded(trial.trial_id, trial.arm, trial.seed, reason))
    if excluded:
        warnings.append(f"{len(excluded)} trial(s) excluded as failures (listed in the report); "
                        "the tests use the remaining pairs")  # fmt: skip
    if not baseline_labels:
        warnings.append("no trial of the baseline arm was found; nothing can be paired")

    base_scores = usable.get(baseline, {})
    rows = []
    order, without_trials = _arm_order(spec, trials)
    params.update(without_trials)
    if without_trials and trials:
        warnings.append(f"no trials yet for arm(s) {'; '.join(without_trials)}")
    for arm in order:
        if arm == baseline:
            continue
        arm_scores = usable.get(arm, {})
        expected = set(spec.seeds) | seen_seeds.get(arm, set()) | seen_seeds.get(baseline, set())
        seeds = sorted(set(arm_scores) & set(base_scores))
        row = _row(arm, params.get(arm, {}), seeds, arm_scores, base_scores, expected,
                   alternative, alpha)  # fmt: skip
        if row.missing_arm or row.missing_baseline:
            warnings.append(f"{arm}: {len(seeds)} pair(s); {_missing_text(row)}")
        rows.append(row)

    tested = [row for row in rows if row.enough]
    for row, adjusted in zip(tested, stats.holm([row.p for row in tested]), strict=True):
        row.p_holm = float(adjusted)
        row.verdict = "significant" if row.p_holm <= alpha else "not significant"

    return Comparison(
        spec=spec, metric=metric, scored_metric=scored_metric, select=select, alpha=alpha,
        mode=mode, alternative=alternative, baseline=baseline,
        baseline_params=params.get(baseline, {}), rows=rows,
        scores=[s for arm in usable.values() for s in arm.values()],
        excluded=excluded, warnings=warnings, trials=trials,
    )  # fmt: skip


def _missing_text(row: ArmRow) -> str:
    parts = []
    if row.missing_arm:
        parts.append(f"arm lacks seed(s) {', '.join(map(str, row.missing_arm))}")
    if row.missing_baseline:
        parts.append(f"baseline lacks seed(s) {', '.join(map(str, row.missing_baseline))}")
    return "; ".join(parts)


def _row(
    arm: str,
    params: dict[str, Any],
    seeds: list[int],
    arm_scores: dict[int, Score],
    base_scores: dict[int, Score],
    expected: set[int],
    alternative: str,
    alpha: float,
) -> ArmRow:
    method = [arm_scores[s].value for s in seeds]
    base = [base_scores[s].value for s in seeds]
    arm_mean, arm_sd = _mean_sd(method)
    base_mean, base_sd = _mean_sd(base)
    nan = math.nan
    row = ArmRow(
        arm=arm, params=params, n_pairs=len(seeds), paired_seeds=seeds,
        missing_arm=sorted(expected - set(arm_scores)),
        missing_baseline=sorted(expected - set(base_scores)),
        arm_mean=arm_mean, arm_sd=arm_sd, baseline_mean=base_mean, baseline_sd=base_sd,
        mean_diff=nan, sd_diff=nan, ci_low=nan, ci_high=nan, t=nan, p=nan, p_holm=nan,
        d_z=nan, wilcoxon_p=nan, seeds_needed=None, verdict=NOT_ENOUGH,
    )  # fmt: skip
    if len(seeds) < 2:
        row.note = f"{len(seeds)} pair(s): a paired test needs at least 2"
        if seeds:
            row.mean_diff = method[0] - base[0]
        return row
    test = stats.paired_ttest(method, base, alternative=alternative)
    row.mean_diff, row.sd_diff = test.mean_diff, test.sd_diff
    row.ci_low, row.ci_high = test.ci_low, test.ci_high
    row.t, row.p, row.d_z = test.statistic, test.pvalue, test.effect_size
    row.wilcoxon_p = stats.wilcoxon(method, base, alternative=alternative).pvalue
    toward = row.d_z > 0 if alternative == "greater" else row.d_z < 0
    if not math.isfinite(row.d_z):
        row.note = "all differences are equal (sd 0): d_z is infinite"
    elif not toward:
        row.note = "the effect points away from the alternative: more seeds would not help"
    else:
        row.seeds_needed = stats.seeds_needed(row.d_z, alpha, TARGET_POWER, alternative)
        if row.seeds_needed is None:
            row.note = "the effect is too small for 10000 seeds"
    return row


# ---------------------------------------------------------------------------
# Text: numbers, terminal table, CSV, report


@dataclass(frozen=True)
class Units:
    scale: float
    value: str  # suffix of a value ("%")
    diff: str  # suffix of a difference ("pp")
    name: str  # axis label name


def units(metric: str) -> Units:
    split, kind = metric.split("_", 1)
    split = {"val": "validation", "test": "test", "train": "training"}.get(split, split)
    if kind == "acc":
        return Units(100.0, "%", " pp", f"{split} accuracy (%)")
    return Units(1.0, "", "", f"{split} loss (cross-entropy)")


def _num(value: float, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def format_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _digits(metric: str) -> int:
    return 2 if metric.endswith("_acc") else 4


def format_mean_sd(mean: float, sd: float, metric: str) -> str:
    u = units(metric)
    if math.isnan(mean):
        return "-"
    d = _digits(metric)
    return f"{_num(mean * u.scale, d)} ± {_num(sd * u.scale, d)}"


def format_diff(row: ArmRow, metric: str) -> str:
    u = units(metric)
    d = _digits(metric)
    diff = _num(row.mean_diff * u.scale, d, sign=True) if not math.isnan(row.mean_diff) else "-"
    if not row.enough:
        return diff
    if math.isinf(row.ci_high):
        bound = f">= {_num(row.ci_low * u.scale, d, sign=True)}"
    elif math.isinf(row.ci_low):
        bound = f"<= {_num(row.ci_high * u.scale, d, sign=True)}"
    else:
        low = _num(row.ci_low * u.scale, d, sign=True)
        bound = f"{low}, {_num(row.ci_high * u.scale, d, sign=True)}"
    return f"{diff} [{bound}]"


def _header(comparison: Comparison) -> list[str]:
    metric = comparison.scored_metric
    return ["arm", "n", f"arm {metric}", f"baseline {metric}", "diff [95% CI]", "t", "p",
            "p (Holm)", "d_z", "Wilcoxon p", f"seeds for {TARGET_POWER:.0%} power",
            "verdict"]  # fmt: skip


def _cells(row: ArmRow, comparison: Comparison) -> list[str]:
    metric = comparison.scored_metric
    if row.seeds_needed is not None:
        needed = str(row.seeds_needed)
    elif row.enough and row.note.startswith("the effect is too small"):
        needed = "> 10000"
    else:
        needed = "-"
    return [row.arm, str(row.n_pairs), format_mean_sd(row.arm_mean, row.arm_sd, metric),
            format_mean_sd(row.baseline_mean, row.baseline_sd, metric),
            format_diff(row, metric), _num(row.t), format_p(row.p), format_p(row.p_holm),
            _num(row.d_z), format_p(row.wilcoxon_p), needed, row.verdict]  # fmt: skip


def describe(comparison: Comparison) -> str:
    """One sentence saying what was tested."""
    c = comparison
    direction = "higher" if c.mode == "max" else "lower"
    what = (f"{c.metric} at the final epoch" if c.select == "final" else
            f"{c.scored_metric} at each trial's best-{c.scored_metric.replace('test', 'val')} "
            "epoch")  # fmt: skip
    u = units(c.scored_metric)
    shown = f"; values in {u.value.strip()}, differences in{u.diff}" if u.value else ""
    return (f"{c.spec.name}: {what} ({direction} is better{shown}), each arm vs baseline "
            f"{c.baseline} paired by seed; one-sided paired t-test (alternative "
            f"'{c.alternative}'), Holm-adjusted over {c.n_tests} arm(s), alpha {c.alpha:g}")


def format_table(comparison: Comparison) -> str:
    """Plain-text table for the terminal, columns aligned."""
    header = _header(comparison)
    body = [_cells(row, comparison) for row in comparison.rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    numeric = set(range(1, len(header) - 1)) - {2, 3, 4}

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if i in numeric else c.ljust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]  # fmt: skip
        return "  ".join(parts).rstrip()

    out = [describe(comparison), "", line(header), line(["-" * w for w in widths])]
    out += [line(cells) for cells in body]
    if not body:
        out.append("(no arm besides the baseline)")
    for warning in comparison.warnings:
        out.append(f"warning: {warning}")
    return "\n".join(out)


CSV_COLUMNS = (
    "arm", "n_pairs", "arm_mean", "arm_sd", "baseline_mean", "baseline_sd", "mean_diff",
    "sd_diff", "ci_low", "ci_high", "t", "p", "p_holm", "d_z", "wilcoxon_p", "seeds_needed",
    "verdict", "paired_seeds", "missing_arm_seeds", "missing_baseline_seeds", "note",
)  # fmt: skip


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def to_csv(comparison: Comparison) -> str:
    """One row per arm: the parameters (one column per swept path), every statistic in the
    metric's own units (accuracies as fractions), and the settings of the comparison."""
    paths = swept_paths(comparison.spec)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["arm", *paths, *CSV_COLUMNS[1:], "metric", "select", "alternative",
                     "alpha", "baseline"])  # fmt: skip
    for row in comparison.rows:
        values = {name: getattr(row, name, None) for name in CSV_COLUMNS}
        values.update(paired_seeds=row.paired_seeds, missing_arm_seeds=row.missing_arm,
                      missing_baseline_seeds=row.missing_baseline)  # fmt: skip
        writer.writerow(
            [row.arm, *(_csv_value(row.params.get(p)) for p in paths),
             *(_csv_value(values[name]) for name in CSV_COLUMNS[1:]),
             comparison.scored_metric, comparison.select, comparison.alternative,
             repr(comparison.alpha), comparison.baseline]
        )  # fmt: skip
    return buffer.getvalue()


def _md_table(header: list[str], rows: Iterable[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return "\n".join(lines)


def _paired_values_table(comparison: Comparison) -> str:
    u = units(comparison.scored_metric)
    d = _digits(comparison.scored_metric)
    by_arm: dict[str, dict[int, Score]] = {}
    for score in comparison.scores:
        by_arm.setdefault(score.arm, {})[score.seed] = score
    arms = [comparison.baseline, *(row.arm for row in comparison.rows)]
    seeds = sorted({s.seed for s in comparison.scores})
    show_epoch = comparison.select == "best_val"
    rows = []
    for seed in seeds:
        cells = [str(seed)]
        for arm in arms:
            score = by_arm.get(arm, {}).get(seed)
            if score is None:
                cells.append("-")
            else:
                text = _num(score.value * u.scale, d)
                cells.append(f"{text} (epoch {score.epoch})" if show_epoch else text)
        rows.append(cells)
    header = ["seed", f"{comparison.baseline} (baseline)", *arms[1:]]
    return _md_table(header, rows)


HOW_TO_READ = """\
- Each row tests one arm against the baseline on the **same seeds** (same initialization
  and data order): d = arm - baseline per seed. **n** is the number of seeds where both
  trials finished; seeds missing on either side are listed and do not count. The arm and
  baseline columns give mean ± sd over those n paired seeds.
- **diff [95% CI]** is the mean of d with a one-sided 95% confidence bound (`>= x` when
  higher is better, `<= x` when lower is better). Accuracies are shown in percent and their
  differences in percentage points (pp); `comparison.csv` holds the raw values (fractions).
- **p** is the one-sided paired t-test (`scipy.stats.ttest_rel`), the test of the BN-init
  paper. With several arms, one of them can look good by luck, so the verdict uses
  **p (Holm)**, the Holm-Bonferroni adjusted p-value over all arms: **significant** means
  p (Holm) <= alpha. "Not significant" is not evidence of no effect: it may only mean too
  few seeds.
- **d_z** = mean(d) / sd(d) is the effect size of the paired design (0.2 small, 0.5 medium,
  0.8 large). **Wilcoxon p** is the signed-rank test on the same pairs, a check that does not
  assume normal differences; with n pairs its one-sided p cannot go below 1/2^n (0.031 for
  5 pairs), so with few seeds it is rarely below alpha.
- Diverged or unfinished trials are failures: they are listed below and left out. If a method
  diverges more often than the baseline, that is a result too, even when its finished
  trials look good."""


def _seeds_note(comparison: Comparison) -> str:
    n_seeds = len(comparison.spec.seeds)
    lines = [f"**Seeds needed** is the number of paired seeds a one-sided paired t-test needs "
             f"to detect the observed d_z with {TARGET_POWER:.0%} power at alpha "
             f"{comparison.alpha:g} (noncentral t; before any Holm correction). "
             f"This study ran {n_seeds} seed(s).", ""]  # fmt: skip
    for row in comparison.rows:
        if row.seeds_needed is None:
            reason = row.note or "not enough pairs"
            lines.append(f"- {row.arm}: - ({reason})")
        elif row.seeds_needed > row.n_pairs:
            lines.append(f"- {row.arm}: {row.seeds_needed} seeds; the study has {row.n_pairs} "
                         "pairs, so a real effect of this size would often be missed "
                         "(underpowered).")  # fmt: skip
        else:
            lines.append(f"- {row.arm}: {row.seeds_needed} seeds; the study's {row.n_pairs} "
                         "pairs are enough for this effect size.")  # fmt: skip
    lines += ["", "The observed d_z from few seeds is itself noisy; treat this as a rough guide."]
    return "\n".join(lines)


def to_markdown(comparison: Comparison, plots: Iterable[str] = ()) -> str:
    c = comparison
    out = [f"# Comparison: {c.spec.name}", "", describe(c) + ".", ""]
    significant = [row.arm for row in c.rows if row.verdict == "significant"]
    if significant:
        out.append(f"**Significant after Holm correction:** {', '.join(significant)}.")
    else:
        out.append("**No arm beats the baseline significantly after Holm correction.**")
    out += ["", "## Results", "",
            _md_table(_header(c), [_cells(row, c) for row in c.rows]) if c.rows
            else "No arm besides the baseline.", ""]  # fmt: skip
    if c.warnings:
        out += ["**Warnings**", ""] + [f"- {w}" for w in c.warnings] + [""]
    for name in plots:
        out += [f"![{name}]({name})", ""]
    out += ["## How to read this", "", HOW_TO_READ, "", _seeds_note(c), ""]
    out += ["## Values per seed", "", _paired_values_table(c), ""]
    out += ["## Excluded trials", ""]
    if c.excluded:
        rows = [[e.trial_id, e.arm, str(e.seed), e.reason] for e in c.excluded]
        out.append(_md_table(["trial", "arm", "seed", "reason"], rows))
    else:
        out.append("None: every trial finished.")
    missing = [f"- {row.arm}: {_missing_text(row)}" for row in c.rows
               if row.missing_arm or row.missing_baseline]  # fmt: skip
    if missing:
        out += ["", "Seeds without a pair (not counted):", "", *missing]
    out += ["", "## Study spec", "", "```yaml", dump_spec(c.spec).rstrip(), "```", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Outputs and the one-call entry point


def write_outputs(comparison: Comparison, folder: str | Path) -> list[Path]:
    """``comparison.csv``, ``report.md`` and the PNG plots into ``folder/comparison/``."""
    from studies.plots import curves_plot, paired_plot

    out = Path(folder) / OUTPUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if comparison.rows:
        paired_plot(comparison, out / PAIRED_PLOT)
        plots.append(PAIRED_PLOT)
    if comparison.scores:
        curves_plot(comparison, out / CURVES_PLOT)
        plots.append(CURVES_PLOT)
    (out / CSV_FILE).write_text(to_csv(comparison))
    (out / REPORT_FILE).write_text(to_markdown(comparison, plots))
    return [out / CSV_FILE, out / REPORT_FILE, *(out / name for name in plots)]


def parent_run_id(spec: StudySpec, uri: str) -> str | None:
    """The study's MLflow parent run, found by its tags (None if there is none)."""
    from mlflow import MlflowClient

    from studies.tracking import ROLE, STUDY

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        return None
    query = f"tags.`{ROLE}` = 'study' and tags.`{STUDY}` = '{spec.name}'"
    runs = _search_all(client, experiment.experiment_id, query)
    return runs[0].info.run_id if runs else None


def log_outputs(paths: list[Path], spec: StudySpec, uri: str) -> str | None:
    """Log the files to the parent run under ``comparison/``; its status is left alone."""
    from mlflow import MlflowClient

    run_id = parent_run_id(spec, uri)
    if run_id is None:
        return None
    client = MlflowClient(tracking_uri=uri)
    for path in paths:
        client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    return run_id


def study_tracking_uri(spec: StudySpec, folder: Path) -> str:
    """The study's MLflow URI; the default store lies next to the study directory."""
    from studies.tracking import tracking_uri

    return tracking_uri(spec.model_copy(update={"storage": str(folder.parent)}))


def load_trials(folder: Path, spec: StudySpec, source: str = "results") -> list[Trial]:
    if source == "results":
        return trials_from_results(folder, spec)
    if source == "mlflow":
        return trials_from_mlflow(spec, study_tracking_uri(spec, folder))
    raise SpecError([("--source", f"unknown source {source!r}; valid: results, mlflow")])


@dataclass
class ComparisonRun:
    comparison: Comparison
    folder: Path
    files: list[Path]
    run_id: str | None


def run_comparison(
    study: str | Path,
    metric: str | None = None,
    select: str = "final",
    alpha: float = 0.05,
    source: str = "results",
    storage: str | None = None,
    log: bool = True,
) -> ComparisonRun:
    """Find the study, compare, write ``<study>/comparison/`` and log it to MLflow."""
    from studies.runner import find_study, load_study_spec

    if source not in SOURCES:
        raise SpecError([("--source", f"unknown source {source!r}; valid: results, mlflow")])
    check_options(metric or "val_acc", select, alpha)  # fail before reading anything
    try:
        folder = find_study(str(study), storage)
    except SpecError as err:
        raise SpecError([("study", message) for _, message in err.problems]) from None
    spec = load_study_spec(folder)
    if spec.confirm is not None:  # a two-stage study is judged on its confirm stage
        from studies.stages import confirm_name

        confirm = folder.parent / confirm_name(spec)
        if not confirm.is_dir():
            raise SpecError([("study", f"{spec.name!r} is the search stage of a two-stage "
                              f"study and its confirm stage has not started; finish it with "
                              f"`normstudy resume {spec.name}`")])  # fmt: skip
        folder, spec = confirm, load_study_spec(confirm)
    comparison = compare(load_trials(folder, spec, source), spec, metric, select, alpha)
    files = write_outputs(comparison, folder)
    run_id = log_outputs(files, spec, study_tracking_uri(spec, folder)) if log else None
    if log and run_id is None:
        comparison.warnings.append("no MLflow parent run found: outputs not logged to MLflow")
    return ComparisonRun(comparison, folder, files, run_id)


def print_comparison(result: ComparisonRun) -> None:
    print(format_table(result.comparison))
    print(f"[normstudy] report: {result.folder / OUTPUT_DIR / REPORT_FILE}")
    if result.run_id:
        print(f"[normstudy] logged to MLflow run {result.run_id} (artifacts/{ARTIFACT_DIR})")


def compare_after_run(outcome) -> None:
    """Called by ``normstudy run`` when a study ends: compare and print, never raise."""
    import sys

    if outcome.spec.baseline is None:
        return
    try:
        print()
        print_comparison(run_comparison(outcome.folder))
    except Exception as err:  # the study itself is safe; only its comparison failed
        print(f"[normstudy] warning: the comparison failed ({type(err).__name__}: {err}); "
              f"the study is saved, retry with `normstudy compare {outcome.folder}`",
              file=sys.stderr)  # fmt: skip
