"""Across settings through the installed CLI, as README's "Across settings" section uses it:
the offline cross-setting study prints per-setting rows and pooled verdicts, `compare A B`
pools two studies that ran separately, and bad input is one message naming the field."""

from __future__ import annotations

import re

import pytest
from user_shell import WORKDIRS, make_shell, study_runs

pytestmark = pytest.mark.acceptance

# quickstart-across cut to 2 settings x 2 seeds x its 3 arms, 2 epochs: 12 short trials
SMALL = ("--set", "across={model.width: [32], model.n_layers: [4, 8]}", "--set", "seeds=[1, 2]",
         "--set", "train.epochs=2")  # fmt: skip
SETTINGS = ("model.width=32 model.n_layers=4", "model.width=32 model.n_layers=8")


@pytest.fixture(scope="module")
def across_run(tmp_path_factory):
    """``normstudy run quickstart-across`` (cut to 12 trials) once: (shell, what it printed)."""
    user = make_shell(tmp_path_factory.mktemp("user"), WORKDIRS["space"])
    yield user, user.run("run", "quickstart-across", *SMALL)
    user.close()


def test_run_prints_per_setting_rows_and_pooled_verdicts(across_run):
    shell, ran = across_run
    assert ran.code == 0, ran.text[-3000:]
    print(f"normstudy run quickstart-across (12 trials): {ran.seconds:.1f}s")
    assert "study 'quickstart-across': 12 trials" in ran.out
    assert re.search(r"done in \d+s: 12 finished", ran.out), ran.out[-2000:]
    for setting in SETTINGS:
        for arm in ("enorm.c=1.0", "enorm.c=1.2"):
            assert re.search(rf"^{re.escape(setting)} +{re.escape(arm)} +2 ", ran.out, re.M), arm
    verdicts = re.findall(r"^  (enorm\.c=1\.[02]): helps in (\d) of 2 settings; pooled difference "
                          r"[-+]\d+\.\d\d pp \[>= [-+]\d+\.\d\d\], p \(Holm\) \S+: "
                          r"(?:not )?significant; P\(improvement\) \d\.\d\d \[\d\.\d\d, \d\.\d\d\];"
                          r" heterogeneity", ran.out, re.M)  # fmt: skip
    assert [arm for arm, _ in verdicts] == ["enorm.c=1.0", "enorm.c=1.2"], ran.out[-3000:]
    folder = shell.results / "quickstart-across" / "comparison"
    assert {p.name for p in folder.iterdir()} >= {"report.md", "settings.csv", "pooled.csv",
                                                  "improvement.png", "forest-1-enorm.c-1.0.png"}
    _, _, parents, children = study_runs(shell, "quickstart-across")
    assert len(children) == 12
    assert {run.data.tags["setting"] for run in children} == set(SETTINGS)
    metrics = parents[0].data.metrics
    assert metrics["across.enorm.c_1.0.settings"] == 2
    assert 0 <= metrics["across.enorm.c_1.2.p_improvement"] <= 1
    assert parents[0].data.tags["normstudy.across.enorm.c_1.0"].startswith("enorm.c=1.0: helps in")


def test_compare_pools_two_studies_run_separately(across_run):
    shell, _ = across_run  # its 2 settings, and a plain quickstart run beside it
    ran = shell.run("run", "quickstart", "--set", "name=plain", "--set", "seeds=[1, 2]",
                    "--set", "train.epochs=1")  # fmt: skip
    assert ran.code == 0, ran.text[-2000:]
    ran = shell.run("compare", "quickstart-across", "plain")
    assert ran.code == 0, ran.text
    for setting in (*(f"quickstart-across {s}" for s in SETTINGS), "plain"):
        assert re.search(rf"^{re.escape(setting)} +enorm\.c=1\.2 +2 ", ran.out, re.M), setting
    assert re.search(r"^  enorm\.c=1\.2: helps in \d of 3 settings; pooled difference ",
                     ran.out, re.M), ran.out  # fmt: skip
    report = shell.results / "across" / "quickstart-across+plain" / "report.md"
    assert f"report: {report}" in ran.out and "## Settings x arms" in report.read_text()
    ran = shell.run("compare", "quickstart-across", "plain", "--metric", "bogus")
    assert ran.code == 2 and ran.err.splitlines()[1].startswith("  --metric: unknown metric")


@pytest.mark.parametrize(
    "sets, line",
    [
        (["across={model.width: [32], dataset: [{name: digits}]}", "sweep.dataset.val_fraction="
          "{grid: [0.1, 0.2]}"],
         "  across.dataset: dataset.val_fraction is also set by the arms (sweep or arms); a path "
         "is either an arm (compared) or a setting (across), not both"),
        (["across.dataset.name=[digits, imagenet]"],
         "  across.dataset.name: value 'imagenet' is invalid: dataset.name: unknown dataset "
         "'imagenet'; valid: digits, fake, cifar10, cifar100, svhn, mnist, fashion_mnist; or an "
         "import path 'package.module:attribute', or an entry point name of normstudy.datasets "
         "(normstudy list --components)"),
        (["baseline={enorm.c: 0, model.width: 32}"],
         "  baseline.model.width: is a setting (across); the baseline is the same arm in every "
         "setting, so leave the settings out of it"),
    ],
)
def test_bad_across_input_exits_2_naming_the_field(shell, sets, line):
    args = [arg for s in sets for arg in ("--set", s)]
    ran = shell.run("run", "quickstart-across", *args)
    assert ran.code == 2 and "Traceback" not in ran.text, ran.text
    assert ran.err.splitlines() == ["normstudy: invalid study spec:", line]
    assert not shell.results.exists()  # nothing written


def test_the_refused_sweep_of_the_issue_points_to_across(shell):
    ran = shell.run("validate", "quickstart", "--set", "sweep.model.width={grid: [16, 32]}")
    assert ran.code == 2
    assert ran.err.splitlines()[1] == (
        "  baseline: matches 2 arms (enorm.c=0 model.width=16; enorm.c=0 model.width=32); it "
        "must pick one; or, to compare the arms within each value of model.width, move it from "
        "sweep to across (across: {model.width: [...]})")
