"""The user's own model, dataset, optimizer and per-step method: resolving their names.

A spec names a component by a built-in name, an import path ``package.module:attribute``
or an entry point name (group ``normstudy.models`` / ``.datasets`` / ``.optimizers`` /
``.methods``). Built-in names win over entry points of the same name. What each kind is
called with::

    model      Model(**arguments)                  -> torch.nn.Module, (N, C, H, W) -> logits;
               num_classes, in_channels, in_features, image_size filled in if accepted
    dataset    load(**arguments)                   -> splits (studies.trial.user_data)
    optimizer  Optimizer(params, **arguments)      -> torch.optim.Optimizer
    method     Hook(model, optimizer, **arguments) -> an object with .step(), called after
               every ``method.every``-th optimizer step (optional state_dict/load_state_dict
               are checkpointed)

A ``code:`` folder (``--code DIR``) is put on the import path (:func:`activate_code`); on
Ray its packages travel to every worker as ``py_modules`` (:mod:`studies.run.tune`).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from normlib.models import MODELS
from studies.config.components import KINDS, entry_points, group, is_import_path, user_name_hint
from studies.config.datasets import DATASET_INFO

# Leading positional parameters the service passes itself, per kind.
PASSED = {"model": 0, "dataset": 0, "optimizer": 1, "method": 2}
# Arguments of a spec section that are the service's, not the callable's.
SERVICE_FIELDS = {"model": ("name",), "optimizer": ("name",), "method": ("name", "every"),
                  "dataset": ("name", "val_fraction", "split_seed", "root", "download",
                              "augment", "normalize", "train_size", "test_size", "extra",
                              "loader", "num_workers")}  # fmt: skip


class ComponentError(ValueError):
    """A component name that does not resolve to something usable."""


def builtin_names(kind: str) -> list[str]:
    # imported here: studies.trial's training loop imports without pydantic (bench/gpu.sh
    # runs it on a bare GPU machine; tests/test_gpu_bench_imports.py)
    from studies.config.spec import OPTIMIZERS

    return {"model": MODELS.names(), "dataset": list(DATASET_INFO), "optimizer": list(OPTIMIZERS),
            "method": []}[kind]  # fmt: skip


def is_builtin(kind: str, name: str) -> bool:
    return name in builtin_names(kind)


def activate_code(folder: str | Path | None) -> None:
    """Put a ``code:`` folder first on this process's import path (once)."""
    if folder is None:
        return
    path = str(Path(folder).expanduser().resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
        importlib.invalidate_caches()


def resolve(kind: str, name: str) -> Any:
    """The object a user component name stands for (ComponentError says why not)."""
    if is_import_path(name):
        return _import(name)
    points = entry_points(kind)
    if name in points:
        point = points[name]
        try:
            return point.load()
        except Exception as err:  # any failure inside the package's import
            raise ComponentError(f"entry point {name!r} ({point.value}, {_package(point)}) "
                                 f"failed to load: {type(err).__name__}: {err}") from None
    valid = ", ".join(builtin_names(kind) + sorted(points))
    raise ComponentError(f"unknown {kind} {name!r}; valid: {valid or 'none built in'}, or "
                         f"{user_name_hint(kind)}")  # fmt: skip


def resolve_callable(kind: str, name: str) -> Any:
    """:func:`resolve`, and the object must be callable."""
    obj = resolve(kind, name)
    if not callable(obj):
        raise ComponentError(f"{name!r} is a {type(obj).__name__}, not a callable; a {kind} "
                             f"must be a class or function ({_calls(kind)})")  # fmt: skip
    return obj


def _calls(kind: str) -> str:
    return {"model": "Model(**arguments) -> nn.Module",
            "dataset": "load(**arguments) -> splits",
            "optimizer": "Optimizer(params, **arguments)",
            "method": "Hook(model, optimizer, **arguments) with .step()"}[kind]  # fmt: skip


def _import(name: str) -> Any:
    module_name, _, attribute = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise ComponentError(f"cannot import {module_name!r}: no module named {err.name!r}; "
                                 "install it, or pass its folder with --code DIR (code: in the "
                                 "spec)") from None  # fmt: skip
        raise ComponentError(f"importing {module_name!r} failed: {type(err).__name__}: "
                             f"{err}") from None  # fmt: skip
    except Exception as err:  # the user's module raised while importing
        raise ComponentError(f"importing {module_name!r} failed: {type(err).__name__}: "
                             f"{err}") from None  # fmt: skip
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise ComponentError(f"{module_name!r} has no attribute {attribute!r}; it has: "
                                 f"{', '.join(names[:20]) or 'nothing public'}") from None
    return obj


def _package(point: Any) -> str:
    """Which installed package an entry point comes from."""
    dist = getattr(point, "dist", None)
    return f"package {dist.name} {dist.version}" if dist is not None else "entry point"


@dataclass(frozen=True)
class Arguments:
    """What a callable accepts after the arguments the service passes itself."""

    names: tuple[str, ...]
    required: tuple[str, ...]
    open: bool  # takes **kwargs: any name is accepted

    def unknown(self, given: Iterable[str]) -> list[str]:
        return [] if self.open else [k for k in given if k not in self.names]

    def missing(self, given: Container[str]) -> list[str]:
        return [k for k in self.required if k not in given]


def arguments(kind: str, obj: Any) -> Arguments:
    """The keyword arguments ``obj`` accepts as a ``kind`` (ComponentError if it cannot take
    the ones the service passes: a model's none, an optimizer's params, ...)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature: accept anything
        return Arguments((), (), True)
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    passed = PASSED[kind]
    if len(positional) < passed and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise ComponentError(f"{_qualname(obj)}{signature} cannot be called as {_calls(kind)}")
    rest = params[passed:] if len(positional) >= passed else []
    named = [p for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return Arguments(
        names=tuple(p.name for p in named),
        required=tuple(p.name for p in named if p.default is p.empty),
        open=any(p.kind == p.VAR_KEYWORD for p in params),
    )


def _qualname(obj: Any) -> str:
    return getattr(obj, "__qualname__", type(obj).__name__)


def origin(kind: str, name: str) -> str:
    """Where a name comes from: built-in, an entry point's package, or an import path's file."""
    if is_builtin(kind, name):
        return "built-in"
    if is_import_path(name):
        module = sys.modules.get(name.partition(":")[0])
        where = getattr(module, "__file__", None)
        return f"import path ({where})" if where else "import path"
    point = entry_points(kind).get(name)
    return f"entry point ({point.value}, {_package(point)})" if point else "unknown"


def list_components() -> list[tuple[str, str, str]]:
    """(kind, name, origin) of every built-in and entry point name."""
    rows = []
    for kind in KINDS:
        for name in builtin_names(kind):
            rows.append((kind, name, "built-in"))
        for name, point in sorted(entry_points(kind).items()):
            shadowed = " (shadowed by the built-in)" if is_builtin(kind, name) else ""
            rows.append((kind, name, f"entry point {group(kind)}: {point.value}, "
                         f"{_package(point)}{shadowed}"))  # fmt: skip
    return rows


def user_components(spec: Any) -> list[tuple[str, str, str]]:
    """(section, name, origin) of the spec's components that are not built in."""
    found = []
    for section in ("model", "dataset", "optimizer", "method"):
        part = getattr(spec, section, None)
        if part is not None and origin(section, part.name) != "built-in":
            found.append((section, part.name, origin(section, part.name)))
    return found
