"""The cross-setting comparison end to end: find the studies, compare, write the report,
CSVs and plots, and log the pooled figures to the study's MLflow parent run.

* one study with ``across`` (``normstudy compare NAME``, and after ``run``): its settings;
  files in ``<study>/comparison/``, logged to its parent run (artifacts under
  ``comparison/``, the pooled figures as metrics ``across.<arm>.*``, the verdicts as tags
  ``normstudy.across.<arm>``);
* several studies (``normstudy compare A B C``): each study is a setting (each setting of a
  study with ``across``); they must share the metric and the arms. Files in
  ``<results>/across/<A>+<B>+<C>/``; nothing is logged (no study's run owns the pooling).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from studies.analysis.comparison import check_options
from studies.analysis.settings import (
    SettingGroup,
    SettingsComparison,
    compare_settings,
    split_by_setting,
)
from studies.analysis.settings_plots import cd_diagram, forest_plot, improvement_plot, slug
from studies.analysis.settings_report import (
    format_settings,
    pooled_csv,
    settings_csv,
    to_markdown,
    verdict_line,
)
from studies.analysis.trials import SOURCES, load_trials
from studies.config.space import confirm_name
from studies.config.spec import SpecError, StudySpec
from studies.store.layout import find_study, load_study_spec, tracking_uri
from studies.store.queries import parent_run_id

OUTPUT_DIR = ARTIFACT_DIR = "comparison"
POOLED_DIR = "across"  # <results>/across/<A>+<B>/ for studies pooled by `compare A B`
REPORT_FILE, SETTINGS_CSV, POOLED_CSV = "report.md", "settings.csv", "pooled.csv"
IMPROVEMENT_PLOT, CD_PLOT = "improvement.png", "critical_difference.png"
METRIC_PREFIX, TAG_PREFIX = "across.", "normstudy.across."
MAX_FOLDER_NAME = 100


@dataclass
class SettingsRun:
    comparison: SettingsComparison
    folder: Path
    files: list[Path]
    run_id: str | None

    @property
    def report(self) -> Path:
        return self.files[0]


def write_settings_outputs(comparison: SettingsComparison, out: Path) -> list[Path]:
    """report.md, settings.csv, pooled.csv and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for index, summary in enumerate(comparison.arms, 1):
        if summary.across is not None:
            name = f"forest-{slug(summary.arm, index)}.png"
            forest_plot(comparison, summary, out / name)
            plots.append(name)
    if improvement_plot(comparison, out / IMPROVEMENT_PLOT) is not None:
        plots.append(IMPROVEMENT_PLOT)
    if cd_diagram(comparison, out / CD_PLOT) is not None:
        plots.append(CD_PLOT)
    (out / SETTINGS_CSV).write_text(settings_csv(comparison))
    (out / POOLED_CSV).write_text(pooled_csv(comparison))
    (out / REPORT_FILE).write_text(to_markdown(comparison, plots))
    return [out / REPORT_FILE, out / SETTINGS_CSV, out / POOLED_CSV, *(out / p for p in plots)]


def mlflow_key(label: str) -> str:
    """An arm label as MLflow accepts in a metric or tag key (``enorm.c=1.2`` ->
    ``enorm.c_1.2``)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]+", "_", label)[:200]


def pooled_metrics(comparison: SettingsComparison) -> dict[str, float]:
    """The pooled figures of every arm, in the metric's own units (accuracies as fractions)."""
    found: dict[str, float] = {}
    for summary in comparison.arms:
        key = f"{METRIC_PREFIX}{mlflow_key(summary.arm)}."
        found[f"{key}helps"] = float(summary.helps)
        found[f"{key}settings"] = float(summary.n_settings)
        across = summary.across
        if across is None:
            continue
        values: dict[str, float] = {
            "p_improvement": across.improvement.probability,
            "p_improvement_low": across.improvement.ci_low,
            "p_improvement_high": across.improvement.ci_high,
        }
        if across.pooled is not None:
            values.update(pooled_diff=across.pooled.mean_diff, pooled_p=across.pooled.pvalue,
                          pooled_p_holm=summary.pooled_p_holm,
                          pooled_bound=across.pooled.ci_low if comparison.mode == "max"
                          else across.pooled.ci_high)  # fmt: skip
        if across.meta is not None:
            values.update(random_effect=across.meta.random, hksj_p=across.meta.pvalue,
                          tau2=across.meta.tau2, i2=across.meta.i2)  # fmt: skip
        found.update({f"{key}{name}": float(value) for name, value in values.items()})
    return found


def log_settings(paths: list[Path], comparison: SettingsComparison, spec: StudySpec,
                 uri: str) -> str | None:  # fmt: skip
    """Files under ``comparison/``, pooled figures as metrics, verdicts as tags, on the
    study's parent run (its status is left alone); None when it has none."""
    from mlflow import MlflowClient  # MLflow loads only when a comparison is logged

    run_id = parent_run_id(spec, uri)
    if run_id is None:
        return None
    client = MlflowClient(tracking_uri=uri)
    for path in paths:
        client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    for name, value in pooled_metrics(comparison).items():
        client.log_metric(run_id, name, value)
    for summary in comparison.arms:
        client.set_tag(run_id, f"{TAG_PREFIX}{mlflow_key(summary.arm)}",
                       verdict_line(summary, comparison)[:5000])  # fmt: skip
    return run_id


def _judged_stage(folder: Path) -> tuple[Path, StudySpec]:
    """The study's folder and spec as it is judged: the confirm stage of a two-stage study."""
    spec = load_study_spec(folder, check=False)
    if spec.confirm is None:
        return folder, spec
    confirm = folder.parent / confirm_name(spec)
    if not confirm.is_dir():
        raise SpecError([("study", f"{spec.name!r} is the search stage of a two-stage study "
                          f"and its confirm stage has not started; finish it with "
                          f"`normstudy resume {spec.name}`")])  # fmt: skip
    return confirm, load_study_spec(confirm, check=False)


def settings_of_study(folder: Path, spec: StudySpec, metric: str | None, select: str,
                      alpha: float, source: str, log: bool,
                      require_pairs: bool) -> SettingsRun:  # fmt: skip
    """The cross-setting comparison of one study with ``across``."""
    groups = split_by_setting(load_trials(folder, spec, source), spec)
    comparison = compare_settings(groups, spec.name, "across", metric, select, alpha)
    _require_pairs(comparison, require_pairs, spec.name)
    files = write_settings_outputs(comparison, folder / OUTPUT_DIR)
    run_id = log_settings(files, comparison, spec, tracking_uri(spec)) if log else None
    if log and run_id is None:
        comparison.warnings.append("no MLflow parent run found: outputs not logged to MLflow")
    return SettingsRun(comparison, folder, files, run_id)


def _require_pairs(comparison: SettingsComparison, required: bool, name: str) -> None:
    if required and not any(row.enough for a in comparison.arms for row in a.rows.values()):
        raise SpecError([("study", f"{name!r} has no arm with two finished pairs of trials "
                          "(arm and baseline on the same seed) in any setting; let it finish "
                          f"with `normstudy resume {name}`, then compare again")])  # fmt: skip


def _arm_labels(groups: list[SettingGroup]) -> set[str]:
    return {trial.arm for group in groups for trial in group.trials}


def _check_poolable(studies: list[tuple[StudySpec, list[SettingGroup]]],
                    metric: str | None) -> None:  # fmt: skip
    """SpecError naming what differs when the studies do not share the metric and arms."""
    first, first_groups = studies[0]
    names = [spec.name for spec, _ in studies]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SpecError([("study", f"{twice[0]!r} is named twice; name each study once")])
    for spec, groups in studies[1:]:
        if metric is None and spec.metric.name != first.metric.name:
            raise SpecError([("metric", f"{first.name!r} compares {first.metric.name} but "
                              f"{spec.name!r} compares {spec.metric.name}; pooled studies "
                              "share the metric: pass --metric NAME")])  # fmt: skip
        ours, theirs = _arm_labels(first_groups), _arm_labels(groups)
        if ours != theirs:
            extra, lacking = sorted(theirs - ours), sorted(ours - theirs)
            parts = [f"has arm(s) {', '.join(extra)} that {first.name!r} lacks" if extra else "",
                     f"lacks arm(s) {', '.join(lacking)}" if lacking else ""]  # fmt: skip
            raise SpecError([("study", f"{spec.name!r} {' and '.join(p for p in parts if p)}; "
                              "pooled studies must compare the same arms (the same swept "
                              "values)")])  # fmt: skip


def pooled_folder(storage: Path, names: list[str]) -> Path:
    """``<storage>/across/<A>+<B>+...``, shortened with a hash when long."""
    joined = "+".join(names)
    if len(joined) > MAX_FOLDER_NAME:
        digest = hashlib.sha256(joined.encode()).hexdigest()[:10]
        joined = f"{joined[: MAX_FOLDER_NAME - 12]}-{digest}"
    return storage / POOLED_DIR / joined


def run_pooled_comparison(studies: list[str], metric: str | None = None, select: str = "final",
                          alpha: float = 0.05, source: str = "results",
                          storage: str | None = None) -> SettingsRun:  # fmt: skip
    """``normstudy compare A B ...``: each study one setting (module docstring)."""
    if source not in SOURCES:
        raise SpecError([("--source", f"unknown source {source!r}; valid: results, mlflow")])
    check_options(metric or "val_acc", select, alpha)
    loaded: list[tuple[StudySpec, list[SettingGroup]]] = []
    folders = []
    for name in studies:
        try:
            folder = find_study(name, storage)
        except SpecError as err:
            raise SpecError([("study", message) for _, message in err.problems]) from None
        folder, spec = _judged_stage(folder)
        if spec.sequential is not None:
            raise SpecError([("study", f"{spec.name!r} is a sequential study: its arms stopped "
                              "at different looks, so its seeds are no fixed sample to pool; "
                              "compare it alone")])  # fmt: skip
        trials = load_trials(folder, spec, source)
        if spec.across:
            groups = split_by_setting(trials, spec)
            for group in groups:
                group.label = f"{spec.name} {group.label}"
        else:
            groups = [SettingGroup(spec.name, {}, trials, spec)]
        loaded.append((spec, groups))
        folders.append(folder)
    _check_poolable(loaded, metric)
    groups = [group for _, study_groups in loaded for group in study_groups]
    name = " + ".join(spec.name for spec, _ in loaded)
    comparison = compare_settings(groups, name, "studies", metric, select, alpha)
    _require_pairs(comparison, True, name)
    out = pooled_folder(folders[0].parent, [spec.name for spec, _ in loaded])
    files = write_settings_outputs(comparison, out)
    return SettingsRun(comparison, out, files, None)



def settings_text(run: SettingsRun) -> str:
    """What the CLI prints: the report, where it went, where it was logged."""
    lines = [format_settings(run.comparison), f"[normstudy] report: {run.report}"]
    if run.run_id:
        lines.append(f"[normstudy] logged to MLflow run {run.run_id} (artifacts/{ARTIFACT_DIR}, "
                     "metrics across.*, tags normstudy.across.*)")  # fmt: skip
    return "\n".join(lines)
