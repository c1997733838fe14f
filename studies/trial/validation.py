"""Loading a spec for real: the config checks (:mod:`studies.config.load`), then what needs
the model registry and torch, before any work starts.

* ``model.name`` is a registered model, and every model argument the spec gives, sweeps or
  sets in an arm is one its constructor accepts;
* the user's components (:mod:`studies.trial.components`): a model, dataset loader, optimizer
  or ``method`` named by import path or entry point resolves to a callable whose signature
  takes the spec's arguments (unknown ones named with the accepted ones, required ones
  missing), and a dataset loader returns the splits contract (:mod:`studies.trial.user_data`);
* input normalization has one switch, ``bn.input_norm`` (a ``model.input_norm`` is refused);
* every distinct network of the study builds on the ``meta`` device (shapes and arguments
  checked, nothing allocated), and it and a batch of inputs fit in the trial's memory:
  ``resources.memory_gb``, default this machine's.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from normlib.models import MODELS
from studies.config.datasets import DATASET_INFO, DatasetInfo, dataset_info
from studies.config.load import parse_config, read_spec
from studies.config.space import (
    configurations,
    explicit_arms,
    flatten_assignment,
    is_finite,
    resolved_config,
)
from studies.config.spec import OPTIMIZERS, SpecError, StudySpec
from studies.trial.components import (
    SERVICE_FIELDS,
    ComponentError,
    activate_code,
    arguments,
    resolve_callable,
)
from studies.trial.data import check_available
from studies.trial.hardware import check_machine, machine_memory
from studies.trial.recipes import build_enorm, build_model, model_parameters
from studies.trial.study_data import study_datasets
from studies.trial.user_data import ContractError, load_user_data


def load_spec(spec: str | Path, overrides: list[str] | None = None, smoke: bool = False,
              data_here: bool = True, machine: bool = False) -> StudySpec:  # fmt: skip
    """Read, override, shrink (``smoke``) and validate a spec file or catalog study."""
    return parse_spec(read_spec(spec, overrides, smoke), data_here, machine)


def parse_spec(data: dict[str, Any], data_here: bool = True, machine: bool = False) -> StudySpec:
    """A validated StudySpec from spec data; SpecError lists every problem by field.
    ``data_here``: the dataset files must be on this machine (not so for a cluster run,
    whose trials read them on the nodes: :func:`missing_data` warns instead). ``machine``
    (a local run): a trial must fit this machine (CannotStart), checked before the models are
    built, so the refusal comes in seconds."""
    spec = parse_config(data)
    if machine:
        check_machine(spec)
    if spec.code is not None and not Path(spec.code).expanduser().is_dir():
        raise SpecError([("code", f"{spec.code!r} is not a folder; give the folder that holds "
                          "your packages (--code DIR)")])  # fmt: skip
    activate_code(spec.code)
    problems = check_spec(spec, data_here)
    if problems:
        raise SpecError(problems)
    return spec


def missing_data(spec: StudySpec) -> list[str]:
    """What the study's dataset files lack on this machine (for a cluster run: a warning)."""
    found = (check_available(options) for options in study_datasets(spec))
    return list(dict.fromkeys(message for message in found if message))


def check_spec(spec: StudySpec, data_here: bool = True) -> list[tuple[str, str]]:
    """The problems of a config-valid spec that need the registry and torch."""
    problems = check_components(spec)
    if problems:
        return problems
    name = spec.model.name
    if "input_norm" in spec.model.kwargs():
        return [("model.input_norm", "input normalization has one switch, bn.input_norm (bn: "
                 "an input BatchNorm; dataset: mean/std of the data); remove model.input_norm")]
    accepted = model_parameters(name)
    assigned = [(f"sweep.{path}", path) for path in spec.sweep]
    assigned += [(f"arms[{i}].{path}", path) for i, arm in enumerate(explicit_arms(spec))
                 for path in arm]  # fmt: skip
    assigned += [(f"baseline.{path}", path) for path in flatten_assignment(spec.baseline or {})]
    assigned += [(f"across.{path}", path) for path in spec.across]
    unknown = [where for where, path in assigned if path.startswith("model.") and path.count(".")
               == 1 and path.split(".")[1] not in (*accepted, "name")]  # fmt: skip
    if unknown and not _takes_any(name):
        return [(where, f"unknown argument of model {name!r}; valid: {', '.join(accepted)}")
                for where in dict.fromkeys(unknown)]  # fmt: skip
    memory, field = memory_budget(spec)
    base = spec.trial_config()
    configs: list[tuple[dict[str, Any], dict[str, Any]]] = [(base, {})]
    if is_finite(spec):  # each arm in each setting
        configs = [(resolved_config(spec, values), values) for values in configurations(spec)]
    problems = []
    seen: set[str] = set()
    for config, values in configs:
        key = repr({k: config.get(k) for k in ("dataset", "model", "enorm", "train")})
        if key in seen:
            continue
        seen.add(key)
        found = [_by_setting(p, values, spec)
                 for p in check_buildable(config, memory, field, data_here)]  # fmt: skip
        problems.extend(p for p in found if p not in problems)
        if any(path.startswith(("model", "train")) for path, _ in found):
            break  # the other arms build the same network: one message is enough
    return problems


def _by_setting(problem: tuple[str, str], values: dict[str, Any],
                spec: StudySpec) -> tuple[str, str]:  # fmt: skip
    """A build problem of a setting's value (``across``), named by that field."""
    where, message = problem
    for path in spec.across:
        if path in where.split(" / ") or where.startswith(f"{path}."):
            return f"across.{path}", f"value {values.get(path)!r}: {where}: {message}"
    return problem


def _sections(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The user-code sections of a trial config: section -> its data (name included)."""
    found = {}
    for section in ("model", "dataset", "optimizer", "method"):
        data = config.get(section)
        if data is None:
            continue
        if section == "model" and data["name"] in MODELS:
            continue
        if section == "dataset" and data["name"] in DATASET_INFO:
            continue
        if section == "optimizer" and data["name"] in OPTIMIZERS:
            continue
        found[section] = data
    return found


def _plugin_model(config: dict[str, Any]) -> bool:
    """A registered model whose code is not normlib's (a plugin registered it at run time)."""
    entry = MODELS.get(config["model"]["name"]) if config["model"]["name"] in MODELS else None
    module = getattr(getattr(entry, "func", entry), "__module__", None) or "normlib."
    return not module.startswith("normlib.")


def runs_user_code(spec: StudySpec) -> bool:
    """Whether checking ``spec`` runs code other than normstudy's and normlib's (a ``code:``
    folder, a component that is not built in, in any arm or setting): then its verdict
    depends on more than the spec's text and normstudy's sources."""
    configs = [spec.trial_config()]
    if is_finite(spec):
        configs += [resolved_config(spec, values) for values in configurations(spec)]
    return spec.code is not None or any(_sections(config) or _plugin_model(config)
                                        for config in configs)  # fmt: skip


def check_components(spec: StudySpec) -> list[tuple[str, str]]:
    """The user's components resolve to callables that take the spec's arguments, and a
    user dataset loader keeps its contract (it is called once, here)."""
    problems: list[tuple[str, str]] = []
    assigned = [(f"sweep.{path}", path) for path in spec.sweep]
    assigned += [(f"arms[{i}].{path}", path) for i, arm in enumerate(explicit_arms(spec))
                 for path in arm]  # fmt: skip
    assigned += [(f"across.{path}", path) for path in spec.across]
    for section, data in _sections(spec.trial_config()).items():
        try:
            accepted = arguments(section, resolve_callable(section, data["name"]))
        except ComponentError as err:
            problems.append((f"{section}.name", str(err)))
            continue
        service = SERVICE_FIELDS[section]
        given = [k for k in data if k not in service]
        if section == "model":
            given = [k for k in given if k != "input_norm"]
        swept = [(where, path.split(".")[1]) for where, path in assigned
                 if path.startswith(f"{section}.") and path.count(".") == 1]  # fmt: skip
        names = ", ".join(accepted.names) or "none"
        for key in accepted.unknown(given):
            problems.append((f"{section}.{key}", f"unknown argument of {section} "
                             f"{data['name']!r}; it accepts: {names}"))  # fmt: skip
        for where, key in swept:
            if key not in service and key in accepted.unknown([key]):
                problems.append((where, f"unknown argument of {section} {data['name']!r}; it "
                                 f"accepts: {names}"))  # fmt: skip
        injected = ("num_classes", "in_channels", "in_features", "image_size")
        have = set(given) | {k for _, k in swept} | (set(injected) if section == "model" else set())
        missing = accepted.missing(have)
        if missing:
            problems.append((section, f"{data['name']!r} needs the argument(s) "
                             f"{', '.join(missing)}; set {section}.{missing[0]}"))  # fmt: skip
        if section == "dataset" and not problems:
            try:
                load_user_data(data)
            except ContractError as err:
                problems.append(("dataset.name", f"the loader breaks the splits contract: {err} "
                                 "(README: Study your own method)"))  # fmt: skip
            except Exception as err:  # the user's loader raised
                problems.append(("dataset.name", f"the loader {data['name']!r} raised "
                                 f"{type(err).__name__}: {err}"))  # fmt: skip
    return problems


def _takes_any(model: str) -> bool:
    """A user model that takes ``**kwargs``."""
    return model not in MODELS and arguments("model", resolve_callable("model", model)).open


def dataset_facts(options: dict[str, Any]) -> DatasetInfo:
    """DatasetInfo of a built-in dataset, or of a user loader (which is called, cached)."""
    if options["name"] in DATASET_INFO:
        return dataset_info(options["name"])
    return load_user_data(options)[0]


def memory_budget(spec: StudySpec) -> tuple[int | None, str]:
    """Bytes one trial may use, and the field that says so."""
    if spec.resources.memory_gb is None:
        return None, "resources.memory_gb, default this machine's memory"
    return int(spec.resources.memory_gb * 2**30), "resources.memory_gb"


# Bytes a trained fp32 parameter costs at least: weight, gradient, two optimizer-state slots.
BYTES_PER_PARAMETER = 16
BUILD_SECONDS = 5.0  # CPU seconds; a model that takes longer to build on meta is refused


class ModelTooBig(ValueError):
    """Raised while a model is built on the meta device, before it is allocated anywhere."""


class _BuildBudget:
    """Counts parameters and buffers as modules register them (no memory is allocated on the
    meta device) and stops the build at once when they exceed ``max_elements`` or the build
    uses more than ``seconds`` of CPU time (not wall time: a loaded machine refuses nothing
    more): ``FullyConnected(width=10**8)`` is refused in milliseconds."""

    def __init__(self, max_elements: int, seconds: float, memory_note: str):
        self.max_elements, self.seconds, self.memory_note = max_elements, seconds, memory_note
        self.elements = self.modules = 0
        self._handles: list = []

    def __enter__(self) -> _BuildBudget:
        # torch's lazy imports, before the clock starts: the first init op on the meta device
        # (a normal_, a kaiming_normal_ ...) imports torch._dynamo, seconds of CPU on a slow
        # machine, which refused a 2-layer MLP as "too big" there
        import torch._dynamo  # noqa: F401
        from torch.nn.modules import module as hooks

        with torch.device("meta"):
            torch.nn.Linear(2, 2)
        self._deadline = time.process_time() + self.seconds
        self._handles = [
            hooks.register_module_parameter_registration_hook(self._tensor),
            hooks.register_module_buffer_registration_hook(self._tensor),
            hooks.register_module_module_registration_hook(self._module),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _tensor(self, module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        self.elements += 0 if tensor is None else tensor.numel()
        if self.elements > self.max_elements:
            raise ModelTooBig(f"more than {self.max_elements:,} parameters, at "
                              f"{BYTES_PER_PARAMETER} bytes each (weights, gradients, "
                              f"optimizer state), exceed the trial's {self.memory_note}")
        self._module(module, name, None)

    def _module(self, module: nn.Module, name: str, child: nn.Module | None) -> None:
        self.modules += 1
        if time.process_time() > self._deadline:
            raise ModelTooBig(f"it has over {self.modules:,} modules (building it on the meta "
                              f"device took over {self.seconds:.0f} CPU seconds)")  # fmt: skip


def _size_fields(config: dict[str, Any]) -> str:
    """The spec fields that set the model's size: its integer arguments."""
    sized = [f"model.{k}" for k, v in config["model"].items()
             if isinstance(v, int) and not isinstance(v, bool)]  # fmt: skip
    return " / ".join(sized) or "model.name"


def check_memory(config: dict[str, Any], memory: int, memory_field: str) -> list[tuple[str, str]]:
    """A batch of inputs must fit in the trial's memory (a lower bound on its activations)."""
    info = dataset_facts(config["dataset"])
    batch = config["train"]["batch_size"] * math.prod(info.shape) * 4
    if batch <= memory:
        return []
    return [("train.batch_size", f"{config['train']['batch_size']:,} images of "
             f"{'x'.join(map(str, info.shape))} take {batch / 2**30:,.1f} GiB, more than the "
             f"trial's {memory / 2**30:,.1f} GiB ({memory_field}); use a smaller batch")]


def check_buildable(
    config: dict[str, Any], memory: int | None = None, memory_field: str = "this machine's memory",
    data_here: bool = True,
) -> list[tuple[str, str]]:
    """Problems building this config's model (and ENorm on it), found without real work.

    The model is built on the ``meta`` device: shapes and arguments are checked, no memory
    is allocated, no weights are initialized for real. Its parameters, at
    ``BYTES_PER_PARAMETER`` each, and a batch of inputs must fit in ``memory`` bytes (default:
    this machine's memory).
    """
    problems: list[tuple[str, str]] = []
    missing = check_available(config["dataset"]) if data_here else None
    if missing:
        problems.append(("dataset.root", missing))
    name = config["model"]["name"]
    accepted = model_parameters(name)
    for key in config["model"]:
        if key != "name" and key not in accepted and not _takes_any(name):
            problems.append(
                (
                    f"model.{key}",
                    f"unknown argument of model {name!r}; valid: {', '.join(accepted)}",
                )
            )
    if problems:
        return problems
    memory = machine_memory() if memory is None else memory
    try:
        info = dataset_facts(config["dataset"])
    except Exception as err:  # a swept loader argument the loader refuses
        loader = config["dataset"]["name"]
        return [("dataset", f"the loader {loader!r} failed: {type(err).__name__}: {err}")]
    problems += check_memory(config, memory, memory_field)
    note = f"{memory / 2**30:,.1f} GiB ({memory_field})"
    budget = _BuildBudget(memory // BYTES_PER_PARAMETER, BUILD_SECONDS, note)
    try:
        with torch.device("meta"), budget:
            model = build_model(config, info)
            build_enorm(config, model, None)
    except ModelTooBig as err:
        problems.append((_size_fields(config), f"the model is too big: {err}; make it smaller"))
    except (ValueError, TypeError) as err:
        section = "enorm" if "ENorm" in str(err) else "model"
        problems.append((section, str(err)))
    except Exception as err:  # the user's model raised while it was built
        problems.append(("model", f"building {name!r} on the meta device failed: "
                         f"{type(err).__name__}: {err}"))  # fmt: skip
    return problems
