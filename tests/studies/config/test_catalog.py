"""The study catalog: every study validates, carries its paper's numbers, and runs with --smoke."""

import time

import pytest

from studies.analysis.costs import COSTS, epoch_seconds, gpu_hours, model_key
from studies.config import smoke as smoke_module
from studies.config.load import catalog_names, read_yaml, resolve_spec_path
from studies.config.space import (
    FINITE,
    arms,
    assigns,
    domain_values,
    expected_trials,
    flatten_assignment,
    get_path,
    is_baseline,
    is_finite,
    resolved_config,
    total_trials,
)
from studies.trial.validation import load_spec

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
    "enorm-fc-across",  # cross-setting studies (across): the papers' own sets of settings
    "rbn-wrn-across",
    "bninit-resnet-across",
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


def by_name(optimizers: list[dict]) -> dict[str, dict]:
    named = {o["name"]: o for o in optimizers}
    assert len(named) == len(optimizers), "one arm per optimizer"
    return named


def baseline_of(spec) -> dict:
    """The assignment that picks the baseline arm (the confirm stage's, for two-stage studies)."""
    wanted = spec.confirm.baseline if spec.confirm and spec.confirm.baseline else spec.baseline
    return flatten_assignment(wanted or {})


def arm_configs(spec) -> list[dict]:
    return [resolved_config(spec, values) for values in arms(spec)]


SIZES = ("depth", "width", "n_layers", "inplanes")


def recipe(config: dict) -> dict:
    """What an arm compares: everything but data, sizes, training length and schedule timing."""
    model = {k: v for k, v in config["model"].items() if k not in SIZES}
    return {"model": model, "optimizer": config["optimizer"], "enorm": config.get("enorm"),
            "bn": config.get("bn"), "schedule": config["schedule"]["name"]}  # fmt: skip


# ---------------------------------------------------------------------------
# Every catalog file


def test_catalog_lists_every_paper_study_and_quickstart():
    assert set(PAPER_STUDIES) | {"quickstart", "quickstart-across"} == set(CATALOG)


@pytest.mark.parametrize("name", CATALOG)
def test_study_validates_full_and_smoke(name):
    spec = load_spec(name)
    assert spec.name == name == resolve_spec_path(name).stem
    assert len(" ".join(spec.description.split())) >= 100, "describe the paper and the study"
    smoke = load_spec(name, smoke=True)
    assert smoke.name == f"{name}-smoke"
    assert smoke.dataset.name in ("digits", "fake")
    assert smoke.train.epochs <= 2 and smoke.resources.gpu == 0
    assert 1 <= sum(total_trials(smoke)) <= smoke_module.MAX_TRIALS
    assert sum(total_trials(smoke)) <= sum(total_trials(spec))


@pytest.mark.parametrize("name", CATALOG)
def test_smoke_is_tiny_offline_and_short(name):
    spec, smoke = load_spec(name), load_spec(name, smoke=True)
    data = smoke.dataset
    assert not data.download and not data.extra and data.root is None
    assert data.train_size == 256 and data.test_size <= 32
    n_train = 2000 if data.name == "fake" else 1437  # before the validation split
    assert round(n_train * data.val_fraction) <= 36
    train = smoke.train
    assert train.epochs <= 2 and train.steps_per_epoch <= 2 and train.batch_size <= 32
    assert not train.compile and smoke.resources.cpu == 1
    model = smoke.model.kwargs()
    if smoke.model.name == "wide_resnet":
        assert model["depth"] == 10 and model["width"] <= 2
    if smoke.model.name == "fully_connected":
        assert model["n_layers"] <= 3 and model["width"] <= 32
    if smoke.model.name.startswith("odenet"):
        assert model["inplanes"] <= 8
    for config in arm_configs(smoke) if is_finite(smoke) else [resolved_config(smoke, {})]:
        assert all(m <= 2 for m in config["schedule"]["milestones"])
    assert smoke.seeds == spec.seeds[:2]
    for path, domain in smoke.sweep.items():
        if isinstance(domain, FINITE):
            assert 1 <= len(domain_values(domain)) <= 2, path
    assert len(smoke.arms) <= 3
    if spec.confirm is not None:
        assert smoke.confirm.top_k == 1 and smoke.confirm.seeds == spec.confirm.seeds[:2]
        assert smoke.confirm.baseline == spec.confirm.baseline


@pytest.mark.parametrize("name", CATALOG)
def test_baseline_is_exactly_one_arm(name):
    spec = load_spec(name)
    if not is_finite(spec):
        assert spec.search.name in ("optuna", "random") and spec.baseline is None
        assert spec.confirm is not None and spec.confirm.baseline, "a confirm stage judges it"
        return
    hits = [values for values in arms(spec) if is_baseline(resolved_config(spec, values), spec)]
    assert len(hits) == 1, hits
    smoke = load_spec(name, smoke=True)  # --smoke keeps the baseline's arm
    assert sum(is_baseline(resolved_config(smoke, v), smoke) for v in arms(smoke)) == 1


@pytest.mark.parametrize("name", CATALOG)
def test_smoke_keeps_the_baseline_and_a_method_arm_of_the_full_study(name):
    spec, smoke = load_spec(name), load_spec(name, smoke=True)
    if not is_finite(spec):  # a search: every proposal is a method arm
        assert smoke.sweep.keys() == spec.sweep.keys() and smoke.search.num_samples == 2
        return
    kept = arm_configs(smoke)
    assert 2 <= len(kept) <= 4
    assert sum(assigns(c, baseline_of(smoke)) for c in kept) == 1
    full = [recipe(config) for config in arm_configs(spec)]
    for config in kept:  # every smoke arm is an arm of the study, at smoke size
        assert recipe(config) in full, config


def test_smoke_runs_cover_every_method_of_the_catalog():
    optimizers, enorm_c, bn, ode = set(), set(), set(), set()
    for name in CATALOG:
        smoke = load_spec(name, smoke=True)
        configs = arm_configs(smoke) if is_finite(smoke) else [resolved_config(smoke, {})]
        for config in configs:
            optimizers.add(config["optimizer"]["name"])
            enorm_c.add(config.get("enorm", {}).get("c", 0) > 0)
            if "bn" in config:
                bn.add((config["bn"]["bn_weight"] < 1, config["bn"]["input_norm"]))
            if config["model"]["name"].startswith("odenet"):
                ode.add((config["model"]["norm_ode"], config["model"]["param_norm_ode"]))
    assert optimizers == {"sgd", "sgdg", "adamg", "alig"}
    assert enorm_c == {False, True}
    assert (True, "bn") in bn and (False, "dataset") in bn
    assert {"bn", "ln"} <= {norm for norm, _ in ode} and {"none", "wn"} <= {w for _, w in ode}


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
# --smoke on made-up studies: what it keeps


def smoke_of(**changes):
    from studies.config.smoke import shrink
    from studies.trial.validation import parse_spec

    data = read_yaml(resolve_spec_path("quickstart"))
    data.update(changes)
    return parse_spec(shrink(data))


def test_smoke_finds_the_baseline_value_on_resolved_configs():
    sgd = {"name": "sgd", "momentum": 0.9}
    smoke = smoke_of(
        enorm={"c": 0},
        sweep={"optimizer": {"grid": [{**sgd, "lr": lr} for lr in (0.5, 0.05, 0.1, 0.2)]}},
        baseline={"optimizer.lr": 0.1},  # a dotted path into a section-valued grid
    )
    assert [o["lr"] for o in smoke.sweep["optimizer"].grid] == [0.5, 0.1]
    smoke = smoke_of(sweep={"enorm.c": {"grid": [1.2, 1.0, 1.1, 0]}}, baseline={"enorm": {"c": 0}})
    assert smoke.sweep["enorm.c"].grid == [1.2, 0]


def test_smoke_cuts_the_last_sweep_paths_to_the_baseline_to_stay_within_eight_trials():
    smoke = smoke_of(
        sweep={
            "enorm.c": {"grid": [0, 1.0, 1.2]},
            "optimizer.lr": {"grid": [0.1, 0.05, 0.2]},
            "optimizer.momentum": {"grid": [0.5, 0.9, 0.0]},
            "optimizer.weight_decay": {"grid": [0.0005, 0.0, 0.001]},
        },
        baseline={
            "enorm.c": 0,
            "optimizer.lr": 0.2,
            "optimizer.momentum": 0.9,
            "optimizer.weight_decay": 0.0,
        },
        seeds=[1, 2, 3],
    )
    assert {path: domain.grid for path, domain in smoke.sweep.items()} == {
        "enorm.c": [0, 1.0],
        "optimizer.lr": [0.1, 0.2],
        "optimizer.momentum": [0.9],
        "optimizer.weight_decay": [0.0],
    }
    assert smoke.seeds == [1, 2] and expected_trials(smoke) == 8


def test_smoke_keeps_the_baseline_arm_and_two_others_then_cuts_the_sweep():
    recipe = [{"optimizer": {"name": "sgd", "lr": lr}, "schedule": {"name": "step",
               "milestones": [4, 8]}} for lr in (0.3, 0.2, 0.1)]  # fmt: skip
    alig = [{"optimizer": {"name": "alig", "max_lr": m}, "schedule.name": "constant"}
            for m in (0.1, 1.0)]  # fmt: skip
    smoke = smoke_of(
        enorm={"c": 0},
        arms=[*recipe, *alig],
        sweep={"train.batch_size": {"grid": [8, 16]}},
        baseline={"optimizer": {"name": "alig", "max_lr": 1.0}, "train.batch_size": 16},
    )
    assert [arm.get("optimizer", {}).get("lr", "alig") for arm in smoke.arms] == [0.3, 0.2, "alig"]
    assert smoke.arms[-1]["optimizer"]["max_lr"] == 1.0
    assert smoke.arms[0]["schedule"]["milestones"] == [1]  # within the smoke's 2 epochs
    assert smoke.sweep["train.batch_size"].grid == [16]  # 3 arms x 2 x 2 seeds > 8 trials
    assert expected_trials(smoke) == 6


def test_smoke_confirms_the_best_arm_on_two_seeds():
    smoke = smoke_of(
        sweep={"optimizer.lr": {"loguniform": [0.01, 1.0]}},
        search={"name": "optuna", "num_samples": 20},
        seeds=[7],
        baseline=None,
        confirm={"top_k": 3, "seeds": [1, 2, 3, 4, 5], "baseline": {"enorm.c": 0}},
    )
    assert smoke.search.num_samples == 2 and smoke.seeds == [7]
    assert smoke.confirm.top_k == 1 and smoke.confirm.seeds == [1, 2]
    assert total_trials(smoke) == (2, 4)


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
    optimizers = by_name(optimizer_arms(name))
    assert optimizers.keys() == {"sgd", "sgdg", "adamg"}
    sgd, sgdg, adamg = optimizers["sgd"], optimizers["sgdg"], optimizers["adamg"]
    assert (sgd["name"], sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == ("sgd", 0.1, 0.9, 5e-4)
    assert sgd["nesterov"] is False
    assert (sgdg["name"], sgdg["lr"], sgdg["lrg"]) == ("sgdg", 0.01, 0.2)
    assert (adamg["name"], adamg["lr"], adamg["lrg"]) == ("adamg", 0.01, 0.05)
    for grassmann in (sgdg, adamg):
        assert grassmann["omega"] == 0.1 and grassmann["grad_clip"] == 0.1
        assert grassmann["momentum"] == 0.9 and grassmann["nesterov"] is True
        assert grassmann["weight_decay"] == 5e-4 and grassmann["bn_decay"] == 0.0
    assert spec.baseline == {"optimizer": {"name": "sgd"}}
    assert spec.resources.gpu == 1 and len(spec.seeds) == 5


def test_riemannian_bn_search_stage_tunes_lrg_then_confirms_against_sgd():
    spec = load_spec("rbn-wrn-cifar10-search")
    assert spec.search.name == "optuna" and spec.search.num_samples == 24 and spec.seeds == [1]
    ((path, domain),) = spec.sweep.items()
    assert path == "optimizer.lrg" and domain.loguniform == (0.01, 1.0)  # 0.05 and 0.2 inside
    assert spec.optimizer.name == "sgdg" and spec.optimizer.lr == 0.01
    assert (spec.optimizer.omega, spec.optimizer.grad_clip) == (0.1, 0.1)
    assert spec.schedule.milestones == [60, 120, 160] and spec.schedule.factor == 0.2
    assert spec.train.epochs == 200 and spec.train.batch_size == 128
    assert spec.scheduler.name == "asha" and spec.metric.name == "val_acc"
    assert spec.scheduler.grace_period == 20 and spec.scheduler.reduction_factor == 3
    assert spec.model.kwargs() == {"depth": 28, "width": 10, "dropout": 0.0}
    assert spec.resources.gpu == 1
    # Confirm stage: the 2 best lrg and the paper's SGD on 5 paired seeds, on the test split.
    confirm = spec.confirm
    assert confirm.top_k == 2 and confirm.seeds == [1, 2, 3, 4, 5]
    assert (confirm.metric.name, confirm.metric.mode) == ("test_acc", "max")
    sgd = resolved_config(spec, baseline_of(spec))
    assert sgd["optimizer"] == by_name(optimizer_arms("rbn-wrn-cifar10"))["sgd"]
    assert sgd["schedule"] == config_of("rbn-wrn-cifar10")["schedule"]
    assert total_trials(spec) == (24, 3 * 5)


def test_bn_init_has_the_papers_grid_seeds_and_split():
    spec = load_spec("bninit-resnet18-cifar10")
    config = config_of("bninit-resnet18-cifar10")
    assert config["model"] == {"name": "resnet18"}
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
def test_alig_with_constant_max_lr_against_sgd_with_its_step_schedule(name):
    spec = load_spec(name)
    assert not spec.sweep and len(spec.arms) == 10 and len(spec.seeds) == 3
    configs = arm_configs(spec)
    recipes = [(c["optimizer"]["name"], c["schedule"]["name"]) for c in configs]
    assert recipes == [("sgd", "step")] + [("alig", "constant")] * 9  # whole recipes
    sgd, alig = configs[0]["optimizer"], [c["optimizer"] for c in configs[1:]]
    assert [is_baseline(c, spec) for c in configs] == [True] + [False] * 9
    assert {o["max_lr"] for o in alig} == {0.01, 0.1, 1.0}
    norms = {o["max_norm"] for o in alig}
    assert len(norms) == 3
    assert {(o["max_lr"], o["max_norm"]) for o in alig} == {
        (lr, r) for lr in (0.01, 0.1, 1.0) for r in norms
    }
    assert all(c["schedule"]["milestones"] == [] for c in configs[1:])
    assert all(o["eps"] == 1e-5 and not o["adjusted_momentum"] for o in alig)
    assert spec.baseline == {"optimizer": {"name": "sgd"}, "schedule.name": "step"}
    step = configs[0]["schedule"]
    if name == "alig-wrn-cifar10":
        assert spec.model.kwargs() == {"depth": 40, "width": 4, "dropout": 0.0}
        assert {o["momentum"] for o in alig} == {0.9} and norms == {50, 100, 200}
        assert (alig[0]["max_lr"], alig[0]["max_norm"]) == (1.0, 100)  # the reference's pick
        assert (sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == (0.1, 0.9, 5e-4)
        assert step == {"name": "step", "milestones": [60, 120, 160], "factor": 0.2}
        assert spec.train.epochs == 200 and spec.train.batch_size == 128
        assert spec.dataset.augment is True
    else:
        assert spec.dataset.name == "svhn" and spec.dataset.augment is False
        assert spec.dataset.extra is True  # the paper trains on train + extra
        assert spec.model.kwargs() == {"depth": 16, "width": 4, "dropout": 0.4}
        assert {o["momentum"] for o in alig} == {0.0} and norms == {25, 50, 100}
        assert (alig[0]["max_lr"], alig[0]["max_norm"]) == (0.01, 50)  # the reference's pick
        assert (sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == (0.01, 0.9, 5e-4)
        assert step == {"name": "step", "milestones": [80, 120], "factor": 0.1}
        assert spec.train.epochs == 160 and spec.train.batch_size == 128


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
    # A two-stage study: 24 search proposals + (2 best + SGD) x 5 seeds, all WRN-28-10.
    search = load_spec("rbn-wrn-cifar10-search")
    assert gpu_hours(search) == pytest.approx((24 + 15) * 200 * per_epoch / 3600)
    # Explicit arms are priced like grid arms: 10 recipes x 3 seeds of WRN-40-4.
    alig = load_spec("alig-wrn-cifar10")
    assert gpu_hours(alig) == pytest.approx(30 * 200 * COSTS["wide_resnet-40-4"].seconds / 3600)
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
    # With `extra`, an epoch trains on 604,388 images (less 1% validation), not 45,000.
    train = round(604_388 * 0.99)
    work = 3 * train + (604_388 - train) + 26_032
    assert epoch_seconds(svhn) == pytest.approx(COSTS["wide_resnet-16-4"].seconds * work / 150_000)
    assert gpu_hours(load_spec("alig-svhn", smoke=True)) < 0.01


def test_list_shows_trials_and_gpu_hours_for_every_study(capsys, tmp_path):
    from studies.cli import main

    assert main(["list", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "GPU-h" in out
    shown = {}
    for name in CATALOG:
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        trials, hours = line.split()[1:3]
        shown[name] = trials
        spec = load_spec(name)
        assert float(hours) == pytest.approx(gpu_hours(spec), abs=0.05)
    # arms x seeds; explicit arms count as arms; a two-stage study shows search+confirm.
    assert shown == {
        "quickstart": "15",
        "enorm-fc-cifar10": "25",
        "enorm-conv-cifar10": "10",
        "rbn-wrn-cifar10": "15",
        "rbn-wrn-cifar100": "15",
        "rbn-wrn-cifar10-search": "24+15",
        "bninit-resnet18-cifar10": "105",
        "alig-wrn-cifar10": "30",
        "alig-svhn": "30",
        "odenet4-norms-cifar10": "162",
        "odenet10-norms-cifar10": "36",
        "quickstart-across": "72",  # arms x settings x seeds
        "enorm-fc-across": "20",
        "rbn-wrn-across": "30",
        "bninit-resnet-across": "90",
    }


# ---------------------------------------------------------------------------
# Every study end to end with --smoke: real Ray, real MLflow, a comparison


SMOKE_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="module")
def smoke_storage(tmp_path_factory):
    """One results directory (and MLflow database) for every smoke run; prints their wall
    times at the end (pytest -s shows them)."""
    yield tmp_path_factory.mktemp("smoke")
    if SMOKE_SECONDS:
        print("\n[smoke] wall time per study:")
        for name, seconds in SMOKE_SECONDS.items():
            print(f"[smoke]   {name:<28} {seconds:6.1f}s")
        print(f"[smoke]   {'total':<28} {sum(SMOKE_SECONDS.values()):6.1f}s")


# One study per paper runs through the installed CLI instead (tests/acceptance/test_catalog.py).
CLI_SMOKED = ("enorm-fc-cifar10", "rbn-wrn-cifar10", "bninit-resnet18-cifar10",
              "alig-wrn-cifar10", "odenet4-norms-cifar10")  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize("name", [name for name in CATALOG if name not in CLI_SMOKED])
def test_study_runs_end_to_end_with_smoke(
    name, smoke_storage, ray_local, record_property, study_runs
):
    from studies.analysis.outputs import run_comparison
    from studies.run.runner import run_study

    spec = load_spec(name, [f"storage={smoke_storage}"], smoke=True)
    search, confirm = total_trials(spec)
    started = time.perf_counter()
    outcome = run_study(spec)
    result = run_comparison(outcome.folder)
    seconds = time.perf_counter() - started
    SMOKE_SECONDS[name] = seconds
    record_property("smoke_seconds", round(seconds, 1))
    print(f"\n[smoke] {name}: {search}+{confirm} trials in {seconds:.1f}s ({outcome.counts})")
    # The outcome is the last stage's: the confirm stage of a two-stage study.
    stage = outcome.spec
    assert stage.name == (f"{spec.name}-confirm" if confirm else spec.name)
    assert outcome.counts == {"finished": confirm or search}
    _, parents, children = study_runs(smoke_storage, spec.experiment_name)
    assert len(parents) == (2 if confirm else 1)  # one MLflow parent run per stage
    assert len(children) == search + confirm
    assert {run.info.status for run in children} == {"FINISHED"}
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {
        parent.info.run_id for parent in parents
    }
    # Every arm but the baseline is compared with the baseline, paired by seed.
    assert stage.baseline is not None and len(stage.seeds) == 2
    if stage.across:  # every arm against the baseline in each setting, then pooled
        assert len(result.comparison.arms) == len(arms(stage)) - 1 >= 1
        assert {row.n_pairs for a in result.comparison.arms for row in a.rows.values()} == {2}
    else:
        assert len(result.comparison.rows) == len(arms(stage)) - 1 >= 1
    assert all(path.is_file() for path in result.files)
