"""The study catalog: every study validates, carries its paper's numbers, and runs with --smoke."""

import time
from pathlib import Path

import pytest

from studies.costs import COSTS, epoch_seconds, gpu_hours, model_key
from studies.runner import expected_trials
from studies.space import arms, get_path, is_baseline, is_finite, resolved_config
from studies.spec import catalog_names, load_spec, read_yaml, resolve_spec_path

CATALOG = catalog_names()
PAPER_STUDIES = [
    "enorm-fc-cifar10",
    "enorm-conv-cifar10",
    "rbn-wrn-cifar10",
    "rbn-wrn-cifar100",
    "rbn-wrn-cifar10-search",
    "bninit-resnet18-cifar10",
    "alig-wrn-cifar10",
    "alig-svhn",
    "odenet4-norms-cifar10",
    "odenet10-norms-cifar10",
]


def config_of(name: str) -> dict:
    return resolved_config(load_spec(name), {})


def arm_values(name: str, path: str) -> list:
    """Every value ``path`` takes over the study's arms (in arm order, repeats dropped)."""
    spec = load_spec(name)
    values = []
    for arm in arms(spec):
        value = get_path(resolved_config(spec, arm), path)
        if value not in values:
            values.append(value)
    return values


def optimizer_arms(name: str) -> list[dict]:
    return arm_values(name, "optimizer")


# ---------------------------------------------------------------------------
# Every catalog file


def test_catalog_lists_every_paper_study_and_quickstart():
    assert set(PAPER_STUDIES) | {"quickstart"} == set(CATALOG)


@pytest.mark.parametrize("name", CATALOG)
def test_study_validates_full_and_smoke(name):
    spec = load_spec(name)
    assert spec.name == name == resolve_spec_path(name).stem
    assert len(" ".join(spec.description.split())) >= 100, "describe the paper and the study"
    smoke = load_spec(name, smoke=True)
    assert smoke.name == f"{name}-smoke"
    assert smoke.dataset.name in ("digits", "fake")
    assert smoke.train.epochs <= 2 and smoke.resources.gpu == 0
    assert 1 <= expected_trials(smoke) <= 32
    assert expected_trials(smoke) <= expected_trials(spec)


@pytest.mark.parametrize("name", CATALOG)
def test_baseline_is_exactly_one_arm(name):
    spec = load_spec(name)
    if not is_finite(spec):
        assert spec.search.name in ("optuna", "random") and spec.baseline is None
        return
    hits = [values for values in arms(spec) if is_baseline(resolved_config(spec, values), spec)]
    assert len(hits) == 1, hits
    smoke = load_spec(name, smoke=True)  # --smoke keeps the baseline's arm
    assert sum(is_baseline(resolved_config(smoke, v), smoke) for v in arms(smoke)) == 1


@pytest.mark.parametrize("name", PAPER_STUDIES)
def test_paper_studies_read_real_data_and_can_fetch_it(name):
    dataset = load_spec(name).dataset
    assert dataset.name in ("cifar10", "cifar100", "svhn")
    assert dataset.download and dataset.root and dataset.split_seed == 0


@pytest.mark.parametrize("name", PAPER_STUDIES)
def test_description_opens_with_a_summary_that_fits_the_listing(name):
    text = " ".join(read_yaml(resolve_spec_path(name))["description"].split())
    summary = text.split(". ")[0]
    assert len(summary) < 80 and "(" in summary  # what it sweeps, then (authors, venue)
    assert "Reproduces" in text or "Search stage" in text


# ---------------------------------------------------------------------------
# The papers' numbers


def test_enorm_fc_has_the_papers_settings():
    spec = load_spec("enorm-fc-cifar10")
    config = config_of("enorm-fc-cifar10")
    assert config["model"] == {"name": "fully_connected", "n_layers": 15, "width": 500,
                               "batchnorm": True}  # fmt: skip
    assert config["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.0,
                                   "weight_decay": 1e-3, "nesterov": False}  # fmt: skip
    assert config["schedule"]["name"] == "linear"
    assert config["train"]["epochs"] == 60 and config["train"]["batch_size"] == 256
    assert config["dataset"]["augment"] is False
    assert round(50_000 * config["dataset"]["val_fraction"]) == 9_040  # reference: 40,960 train
    assert {0, 1.2} <= set(arm_values("enorm-fc-cifar10", "enorm.c")) <= {0, 1.0, 1.1, 1.2, 1.3}
    assert spec.baseline == {"enorm.c": 0} and len(spec.seeds) == 5
    assert spec.resources.gpu == 0.25


def test_enorm_conv_has_the_papers_settings():
    spec = load_spec("enorm-conv-cifar10")
    config = config_of("enorm-conv-cifar10")
    assert config["model"]["name"] == "fully_convolutional"
    assert config["optimizer"] == {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                                   "weight_decay": 1e-3, "nesterov": False}  # fmt: skip
    assert config["schedule"]["name"] == "linear" and config["train"]["epochs"] == 128
    assert arm_values("enorm-conv-cifar10", "enorm.c") == [0, 1.1]
    assert spec.baseline == {"enorm.c": 0} and len(spec.seeds) == 5
    assert 0 < spec.resources.gpu < 1


@pytest.mark.parametrize("name,dataset", [("rbn-wrn-cifar10", "cifar10"),
                                          ("rbn-wrn-cifar100", "cifar100")])  # fmt: skip
def test_riemannian_bn_has_the_papers_three_optimizers(name, dataset):
    spec = load_spec(name)
    config = config_of(name)
    assert config["dataset"]["name"] == dataset
    assert config["model"] == {"name": "wide_resnet", "depth": 28, "width": 10, "dropout": 0.0}
    assert config["schedule"] == {"name": "step", "milestones": [60, 120, 160], "factor": 0.2}
    assert config["train"]["epochs"] == 200 and config["train"]["batch_size"] == 128
    sgd, sgdg, adamg = optimizer_arms(name)
    assert (sgd["name"], sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == ("sgd", 0.1, 0.9, 5e-4)
    assert (sgdg["name"], sgdg["lr"], sgdg["lrg"]) == ("sgdg", 0.01, 0.2)
    assert (adamg["name"], adamg["lr"], adamg["lrg"]) == ("adamg", 0.01, 0.05)
    for grassmann in (sgdg, adamg):
        assert grassmann["omega"] == 0.1 and grassmann["grad_clip"] == 0.1
        assert grassmann["momentum"] == 0.9 and grassmann["nesterov"] is True
        assert grassmann["weight_decay"] == 5e-4 and grassmann["bn_decay"] == 0.0
    assert spec.baseline == {"optimizer": {"name": "sgd"}}
    assert spec.resources.gpu == 1 and len(spec.seeds) == 5


def test_riemannian_bn_search_stage_tunes_lrg_log_uniformly_with_optuna():
    spec = load_spec("rbn-wrn-cifar10-search")
    assert spec.search.name == "optuna" and spec.search.num_samples >= 16
    ((path, domain),) = spec.sweep.items()
    assert path == "optimizer.lrg" and domain.loguniform[0] < 0.05 < 0.2 < domain.loguniform[1]
    assert spec.optimizer.name == "sgdg" and spec.optimizer.lr == 0.01
    assert spec.schedule.milestones == [60, 120, 160] and spec.schedule.factor == 0.2
    assert spec.scheduler.name == "asha" and spec.metric.name == "val_acc"
    assert spec.model.kwargs() == {"depth": 28, "width": 10, "dropout": 0.0}
    assert spec.resources.gpu == 1


def test_bn_init_has_the_papers_grid_seeds_and_split():
    spec = load_spec("bninit-resnet18-cifar10")
    config = config_of("bninit-resnet18-cifar10")
    assert config["model"] == {"name": "resnet18", "input_norm": "none"}
    assert config["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9,
                                   "weight_decay": 1e-4, "nesterov": False}  # fmt: skip
    assert config["schedule"]["name"] == "cosine"
    assert config["train"]["epochs"] == 180 and config["train"]["batch_size"] == 128
    bn = arm_values("bninit-resnet18-cifar10", "bn")
    method = {(arm["bn_weight"], arm["c"]) for arm in bn if arm["input_norm"] == "bn"}
    assert method == {(w, c) for w in (1.0, 0.5, 0.1) for c in (1, 100)}
    assert len(bn) == 7
    assert spec.baseline == {"bn": {"bn_weight": 1.0, "c": 1, "input_norm": "dataset"}}
    assert spec.seeds == list(range(1, 16)) and spec.dataset.split_seed == 0
    assert spec.resources.gpu == 1


@pytest.mark.parametrize("name", ["alig-wrn-cifar10", "alig-svhn"])
def test_alig_sweeps_max_lr_and_ball_against_sgd_with_a_schedule(name):
    spec = load_spec(name)
    optimizers = optimizer_arms(name)
    alig = [o for o in optimizers if o["name"] == "alig"]
    sgd = [o for o in optimizers if o["name"] == "sgd"]
    assert len(sgd) == 1 and len(alig) == 9
    assert {o["max_lr"] for o in alig} == {0.01, 0.1, 1.0}
    assert len({o["max_norm"] for o in alig}) == 3
    assert {(o["max_lr"], o["max_norm"]) for o in alig} == {
        (lr, r) for lr in (0.01, 0.1, 1.0) for r in {o["max_norm"] for o in alig}
    }
    assert arm_values(name, "schedule.name") == ["step", "constant"]
    assert spec.baseline == {"optimizer": {"name": "sgd"}, "schedule.name": "step"}
    if name == "alig-wrn-cifar10":
        assert spec.model.kwargs() == {"depth": 40, "width": 4, "dropout": 0.0}
        assert {o["momentum"] for o in alig} == {0.9}
        assert (1.0, 100) in {(o["max_lr"], o["max_norm"]) for o in alig}  # the reference's pick
        assert sgd[0]["lr"] == 0.1 and sgd[0]["weight_decay"] == 5e-4
        assert spec.schedule.milestones == [60, 120, 160] and spec.schedule.factor == 0.2
        assert spec.train.epochs == 200
    else:
        assert spec.dataset.name == "svhn" and spec.dataset.augment is False
        assert spec.model.kwargs() == {"depth": 16, "width": 4, "dropout": 0.4}
        assert (0.01, 50) in {(o["max_lr"], o["max_norm"]) for o in alig}  # the reference's pick
        assert spec.train.epochs == 160


def test_odenet4_sweeps_norms_solvers_and_steps():
    spec = load_spec("odenet4-norms-cifar10")
    config = config_of("odenet4-norms-cifar10")
    assert config["model"]["name"] == "odenet4" and config["model"]["inplanes"] == 16
    assert config["model"]["norm_stem"] == "bn"
    assert config["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9,
                                   "weight_decay": 5e-4, "nesterov": False}  # fmt: skip
    assert config["schedule"] == {"name": "step", "milestones": [150, 250], "factor": 0.1}
    assert config["train"]["epochs"] == 350 and config["train"]["batch_size"] == 512
    name = "odenet4-norms-cifar10"
    assert set(arm_values(name, "model.norm_ode")) == {"bn", "ln", "none"}
    assert set(arm_values(name, "model.param_norm_ode")) == {"none", "wn"}
    assert set(arm_values(name, "model.solver")) == {"euler", "rk2", "rk4"}
    assert set(arm_values(name, "model.steps")) == {2, 8, 32}
    assert len(arms(spec)) == 54
    assert spec.resources.gpu <= 0.25


def test_odenet10_is_a_smaller_grid_of_the_same_study():
    small, large = load_spec("odenet10-norms-cifar10"), load_spec("odenet4-norms-cifar10")
    assert small.model.name == "odenet10" and len(arms(small)) < len(arms(large))
    for section in ("optimizer", "schedule", "train"):
        assert getattr(small, section) == getattr(large, section)
    assert set(small.sweep) < set(large.sweep)


# ---------------------------------------------------------------------------
# GPU-hour estimates


def test_cost_table_prices_every_catalog_model_and_documents_it():
    for name in PAPER_STUDIES:
        spec = load_spec(name)
        for values in arms(spec) if spec.search.name == "grid" else [{}]:
            assert model_key(resolved_config(spec, values)["model"]) in COSTS, name
    for cost in COSTS.values():
        assert cost.seconds > 0 and cost.gflops > 0
        assert cost.source.startswith(("estimate", "measured"))


def test_gpu_hours_is_trials_times_epochs_times_cost():
    spec = load_spec("rbn-wrn-cifar10")  # one model, every arm priced alike
    per_epoch = COSTS["wide_resnet-28-10"].seconds
    assert gpu_hours(spec) == pytest.approx(15 * 200 * per_epoch / 3600)
    search = load_spec("rbn-wrn-cifar10-search")
    assert gpu_hours(search) == pytest.approx(24 * 200 * per_epoch / 3600)
    # ODE solvers are priced per function evaluation: RK4 with 32 steps costs most.
    ode = load_spec("odenet4-norms-cifar10")
    base = resolved_config(ode, {})
    rk4 = resolved_config(ode, {"model.solver": "rk4", "model.steps": 32})
    cost = COSTS["odenet4-16"]
    assert epoch_seconds(base) == pytest.approx(cost.seconds + 8 * cost.per_eval)
    assert epoch_seconds(rk4) == pytest.approx(cost.seconds + 128 * cost.per_eval)
    # SVHN epochs are longer than CIFAR's; smoke runs cost next to nothing.
    svhn = resolved_config(load_spec("alig-svhn"), {})
    assert epoch_seconds(svhn) > COSTS["wide_resnet-16-4"].seconds
    assert gpu_hours(load_spec("alig-svhn", smoke=True)) < 0.01


def test_list_shows_trials_and_gpu_hours_for_every_study(capsys, tmp_path):
    from studies.cli import main

    assert main(["list", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "GPU-h" in out
    for name in CATALOG:
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        trials, hours = line.split()[1:3]
        spec = load_spec(name)
        assert int(trials) == expected_trials(spec)
        assert float(hours) == pytest.approx(gpu_hours(spec), abs=0.05)


# ---------------------------------------------------------------------------
# Every study end to end with --smoke: real Ray, real MLflow, a comparison


def trial_runs(storage: Path, experiment: str):
    from mlflow import MlflowClient

    from studies.tracking import default_tracking_uri

    client = MlflowClient(default_tracking_uri(storage))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("normstudy.role") == "study"]
    children = [r for r in runs if r.data.tags.get("normstudy.role") == "trial"]
    return parents, children


@pytest.mark.integration
@pytest.mark.parametrize("name", CATALOG)
def test_study_runs_end_to_end_with_smoke(name, tmp_path, ray_local):
    from studies.compare import run_comparison
    from studies.runner import run_study

    spec = load_spec(name, [f"storage={tmp_path}"], smoke=True)
    started = time.perf_counter()
    outcome = run_study(spec)
    seconds = time.perf_counter() - started
    total = expected_trials(spec)
    print(f"\n[smoke] {name}: {total} trials in {seconds:.1f}s ({outcome.counts})")
    assert "errored" not in outcome.counts
    assert sum(outcome.counts.values()) == total
    parents, children = trial_runs(tmp_path, spec.experiment_name)
    assert len(parents) == 1
    assert len(children) == total
    assert {run.info.status for run in children} == {"FINISHED"}
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parents[0].info.run_id}
    if spec.baseline is not None:
        result = run_comparison(outcome.folder)
        assert len(result.comparison.rows) == len(arms(spec)) - 1
        assert all(path.is_file() for path in result.files)
