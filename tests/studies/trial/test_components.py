"""The user's own model, dataset, optimizer and method (issue 17): names resolve, bad input is
refused before any work with a message naming the field, and a trial trains with them."""

from __future__ import annotations

import textwrap
import uuid

import pytest
import torch

from studies.cli import main
from studies.config.space import resolved_config
from studies.config.spec import SpecError
from studies.trial.trainable import run_trial
from studies.trial.validation import parse_spec

NETS = '''
from torch import nn

class TinyNet(nn.Module):
    def __init__(self, in_features, num_classes, depth=1, width=16):
        super().__init__()
        layers, size = [nn.Flatten()], in_features
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        self.net = nn.Sequential(*layers, nn.Linear(size, num_classes))

    def forward(self, x):
        return self.net(x)

def needs_depth(in_features, num_classes, depth):
    return TinyNet(in_features, num_classes, depth)

def broken(in_features, num_classes):
    raise RuntimeError("model bug")

NOT_CALLABLE = 3
'''

OPTIM = '''
import torch

class PlainSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1, scale=1.0):
        super().__init__(params, dict(lr=lr, scale=scale))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"] * group["scale"])

def no_params(*, lr=0.1):
    return None
'''

HOOKS = '''
import torch

class Counter:
    calls = 0

    def __init__(self, model, optimizer, factor=1.0):
        self.params = list(model.parameters())
        self.factor = factor

    @torch.no_grad()
    def step(self):
        type(self).calls += 1
        for p in self.params:
            p.mul_(self.factor)

class Raises:
    def __init__(self, model, optimizer):
        pass

    def step(self):
        raise ValueError("hook bug in user code")
'''

DATA = '''
import torch

def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = (y.view(-1, 1, 1, 1).float() / 3 + 0.1 * torch.rand(n, 1, 4, 4, generator=g)).clamp(0, 1)
    return x, y

def load(n=60):
    return {"train": _images(n, 0), "test": _images(20, 1)}

def as_dataset(n=40):
    x, y = _images(n, 0)
    return {"train": torch.utils.data.TensorDataset(x, y), "test": _images(10, 1)}

def a_list():
    return [1, 2]

def no_test():
    return {"train": _images(10, 0)}

def flat():
    x, y = _images(10, 0)
    return {"train": (x.flatten(1), y), "test": (x.flatten(1), y)}

def bad_labels():
    x, y = _images(10, 0)
    return {"train": (x, y), "test": (x, y + 5), "num_classes": 3}

def other_shape():
    x, y = _images(10, 0)
    return {"train": (x, y), "test": (x[:, :, :2], y)}

def raises():
    raise OSError("data not found")
'''


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A fresh user package (unique name) with nets, optim, hooks and data modules."""
    name = f"userpkg_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "code" / name
    folder.mkdir(parents=True)
    for module, text in {"nets": NETS, "optim": OPTIM, "hooks": HOOKS, "data": DATA}.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    return name


def spec_data(pkg: str, **sections) -> dict:
    data = {
        "name": "own",
        "dataset": {"name": f"{pkg}.data:load"},
        "model": {"name": f"{pkg}.nets:TinyNet", "depth": 1},
        "optimizer": {"name": f"{pkg}.optim:PlainSGD", "lr": 0.1},
        "method": {"name": f"{pkg}.hooks:Counter", "every": 2},
        "train": {"epochs": 2, "batch_size": 16},
        "seeds": [1],
    }
    data.update(sections)
    return data


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return dict(err.value.problems)


def test_user_components_validate_and_sweep(pkg):
    spec = parse_spec(spec_data(pkg, sweep={"model.depth": {"grid": [1, 2]},
                                            "optimizer.scale": {"grid": [1.0, 0.5]}}))
    assert spec.model.name == f"{pkg}.nets:TinyNet"
    assert spec.optimizer.kwargs() == {"lr": 0.1}
    assert spec.method.every == 2


class Recorder:
    def __init__(self):
        self.metrics = []

    def restore(self):
        return None

    def report(self, metrics, state):
        self.metrics.append(metrics)
        if state is not None:
            assert state()["method"] is None  # a hook without state_dict


def trial(spec, **values):
    return {**resolved_config(spec, values), "seed": 1}


def test_a_trial_trains_with_user_code_and_calls_the_hook_every_n_steps(pkg):
    import importlib

    spec = parse_spec(spec_data(pkg))
    hooks = importlib.import_module(f"{pkg}.hooks")
    recorder = Recorder()
    run_trial(trial(spec), recorder)
    # 60 images, val 6 -> 54 train, batches of 16: 4 steps per epoch (last of 6), 2 epochs
    assert hooks.Counter.calls == 8 // 2
    assert [m["epoch"] for m in recorder.metrics] == [1, 2]
    assert recorder.metrics[-1]["diverged"] == 0


def test_a_dataset_loader_may_return_a_torch_dataset(pkg):
    spec = parse_spec(spec_data(pkg, dataset={"name": f"{pkg}.data:as_dataset", "n": 30}))
    recorder = Recorder()
    run_trial(trial(spec), recorder)
    assert len(recorder.metrics) == 2


def test_a_hook_that_makes_the_loss_non_finite_diverges(pkg):
    method = {"name": f"{pkg}.hooks:Counter", "factor": 1e30}
    spec = parse_spec(spec_data(pkg, method=method))
    recorder = Recorder()
    run_trial(trial(spec), recorder)
    assert recorder.metrics[-1]["diverged"] == 1


def test_an_exception_in_a_hook_is_the_users_traceback(pkg):
    spec = parse_spec(spec_data(pkg, method={"name": f"{pkg}.hooks:Raises"}))
    with pytest.raises(ValueError, match="hook bug in user code") as err:
        run_trial(trial(spec), Recorder())
    assert any(f"{pkg}/hooks.py" in str(entry.path) for entry in err.traceback)


def test_import_paths_that_do_not_resolve(pkg):
    found = problems(spec_data(pkg, model={"name": "nosuchpkg.nets:TinyNet"}))
    assert "no module named 'nosuchpkg'" in found["model.name"]
    assert "--code DIR" in found["model.name"]
    found = problems(spec_data(pkg, model={"name": f"{pkg}.nets:TinyNett"}))
    assert "has no attribute 'TinyNett'" in found["model.name"] and "TinyNet" in found["model.name"]


def test_objects_that_are_not_callables(pkg):
    found = problems(spec_data(pkg, model={"name": f"{pkg}.nets:NOT_CALLABLE"}))
    assert found["model.name"].startswith(f"'{pkg}.nets:NOT_CALLABLE' is a int, not a callable")


def test_unknown_arguments_are_named_with_the_accepted_ones(pkg):
    data = spec_data(pkg, model={"name": f"{pkg}.nets:TinyNet", "dept": 2},
                     optimizer={"name": f"{pkg}.optim:PlainSGD", "lr": 0.1, "momentum": 0.9},
                     method={"name": f"{pkg}.hooks:Counter", "factr": 2})
    found = problems(data)
    assert found["model.dept"] == (f"unknown argument of model '{pkg}.nets:TinyNet'; it accepts: "
                                   "in_features, num_classes, depth, width")
    assert found["optimizer.momentum"].endswith("it accepts: lr, scale")
    assert found["method.factr"].endswith("it accepts: factor")
    found = problems(spec_data(pkg, sweep={"model.widht": {"grid": [8, 16]}}))
    assert found["sweep.model.widht"].endswith("in_features, num_classes, depth, width")


def test_missing_arguments_and_impossible_signatures(pkg):
    found = problems(spec_data(pkg, model={"name": f"{pkg}.nets:needs_depth"}))
    assert "needs the argument(s) depth" in found["model"]
    found = problems(spec_data(pkg, optimizer={"name": f"{pkg}.optim:no_params"}))
    assert "cannot be called as Optimizer(params, **arguments)" in found["optimizer.name"]


def test_a_model_that_raises_while_built_is_refused(pkg):
    found = problems(spec_data(pkg, model={"name": f"{pkg}.nets:broken"}))
    assert "RuntimeError: model bug" in found["model"]


@pytest.mark.parametrize(("loader", "message"), [
    ("a_list", "returned a list; it must return a mapping with 'train' and 'test'"),
    ("no_test", "returned no 'test' split"),
    ("flat", "'train' images have shape (10, 16); they must be N x C x H x W"),
    ("bad_labels", "'test' labels run from 5 to 7; they must lie in [0, 3)"),
    ("other_shape", "'test' images are 1 x 2 x 4, 'train' images 1 x 4 x 4"),
    ("raises", "raised OSError: data not found"),
])  # fmt: skip
def test_loaders_that_break_the_contract(pkg, loader, message):
    found = problems(spec_data(pkg, dataset={"name": f"{pkg}.data:{loader}"}))
    assert message in found["dataset.name"]


def test_unknown_loader_argument(pkg):
    found = problems(spec_data(pkg, dataset={"name": f"{pkg}.data:load", "size": 3}))
    assert found["dataset.size"].endswith("it accepts: n")


def test_the_cli_exits_2_naming_the_field(pkg, tmp_path, capsys):
    import yaml

    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(spec_data(pkg, model={"name": f"{pkg}.nets:TinyNet",
                                                         "dept": 2})))
    assert main(["validate", str(path)]) == 2
    assert f"model.dept: unknown argument of model '{pkg}.nets:TinyNet'" in capsys.readouterr().err


def test_the_code_folder_is_put_on_the_import_path(tmp_path, capsys):
    import yaml

    name = f"codepkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / "code" / name).mkdir(parents=True)
    (tmp_path / "code" / name / "nets.py").write_text(textwrap.dedent(NETS))
    data = {"name": "own", "model": {"name": f"{name}.nets:TinyNet"},
            "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 1}, "code": "code"}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(data))  # code: relative to the spec file
    assert main(["validate", str(tmp_path / "own.yaml")]) == 0
    assert f"model {name}.nets:TinyNet: import path ({tmp_path / 'code'}" in capsys.readouterr().out
    missing = {**data, "code": str(tmp_path / "nowhere")}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(missing))
    assert main(["validate", str(tmp_path / "bad.yaml")]) == 2
    assert "code: " in capsys.readouterr().err


def entry_point_dist(root, name: str, value: str, group: str = "normstudy.models"):
    """A fake installed distribution registering one entry point."""
    info = root / f"{name}_dist-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-dist\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")


def test_entry_point_names(pkg, tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    entry_point_dist(site, "tinynet", f"{pkg}.nets:TinyNet")
    entry_point_dist(site, "brokennet", "nosuchpkg_ep.nets:Net")
    entry_point_dist(site, "lion", f"{pkg}.optim:PlainSGD", "normstudy.optimizers")
    monkeypatch.syspath_prepend(str(site))
    spec = parse_spec(spec_data(pkg, model={"name": "tinynet", "depth": 2},
                                optimizer={"name": "lion", "lr": 0.05}))
    assert spec.model.name == "tinynet" and spec.optimizer.name == "lion"
    found = problems(spec_data(pkg, model={"name": "brokennet"}))
    assert found["model.name"].startswith("entry point 'brokennet' (nosuchpkg_ep.nets:Net, "
                                          "package brokennet-dist 0.1) failed to load: "
                                          "ModuleNotFoundError")
    assert main(["list", "--components"]) == 0
    out = capsys.readouterr().out
    assert "model      tinynet" in out and "package tinynet-dist 0.1" in out
    assert "optimizer  lion" in out and "model      fully_connected          built-in" in out


def test_unknown_names_say_how_to_name_user_code(pkg):
    found = problems(spec_data(pkg, model={"name": "tinyvit"}))
    assert "unknown model 'tinyvit'" in found["model.name"]
    assert "import path 'package.module:attribute'" in found["model.name"]
    found = problems(spec_data(pkg, optimizer={"name": "lion", "lr": 1}))
    assert "unknown optimizer; valid: sgd, sgdg, adamg, alig, or an import path" in found[
        "optimizer"]
    found = problems(spec_data(pkg, method={"name": "rescale"}))
    assert "unknown method 'rescale'" in found["method.name"]


def test_fingerprint_of_a_spec_without_method_or_code_is_unchanged(pkg, tmp_path):
    spec = parse_spec(spec_data(pkg))
    moved = spec.model_copy(update={"code": str(tmp_path)})
    assert moved.fingerprint() == spec.fingerprint()
    assert "method" not in parse_spec({**spec_data(pkg), "method": None}).model_dump(
        mode="json", exclude_none=True)


def test_torch_is_not_imported_by_config():
    import subprocess
    import sys

    code = ("import sys, studies.config.load, studies.config.components; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert torch  # the test module itself uses torch
