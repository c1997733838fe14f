"""Loading a spec: YAML -> ``--set`` overrides -> smoke shrink -> validated StudySpec.

Validation here needs no torch: field types and ranges (pydantic), then the study's
semantics (:func:`studies.config.space.check_study`). What needs the model registry and
torch (names, constructor arguments, does the model fit) is checked on top of this by
:mod:`studies.trial.validation`, which every command uses.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from studies.config.checks import check_study
from studies.config.roots import DEFAULT_ROOT, resolve_roots
from studies.config.secrets import mask_value
from studies.config.smoke import shrink
from studies.config.spec import SpecError, StudySpec, format_pydantic_errors

CATALOG_DIR = Path(__file__).resolve().parents[1] / "catalog"


def resolve_spec_path(spec: str | Path) -> Path:
    """A path to a YAML file, or the name of a catalog study."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpecError([("", f"spec file {str(path)!r} does not exist")])
        return path
    catalog = CATALOG_DIR / f"{spec}.yaml"
    if catalog.is_file():
        return catalog
    names = ", ".join(catalog_names())
    raise SpecError([("", f"{spec!r} is neither a spec file nor a catalog study ({names})")])


def catalog_names() -> list[str]:
    return sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SpecError([("", f"{path} is not valid YAML: {err}")]) from None
    if not isinstance(data, dict):
        raise SpecError([("", f"{path} must hold a mapping of study fields")])
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--set a.b=value`` overrides; the value is parsed as YAML (numbers, lists, ...)."""
    data = copy.deepcopy(data)
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise SpecError([("--set", f"{item!r} is not of the form path=value")])
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as err:
            problem = str(err).splitlines()[0]
            hint = "quote lists and mappings, e.g. --set 'seeds=[1, 2]'"
            message = f"{path}: value {raw!r} is not valid YAML ({problem}); {hint}"
            raise SpecError([("--set", message)]) from None
        keys = path.split(".")
        if keys[0] in ("sweep", "across") and len(keys) > 2:  # their paths are dotted too
            keys = [keys[0], ".".join(keys[1:])]
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return data


def parse_config(data: dict[str, Any]) -> StudySpec:
    """Validate fields and value ranges, then the study's semantics (no torch)."""
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_pydantic_errors(err)) from None
    problems = check_study(spec)
    if problems:
        raise SpecError(problems)
    return spec


def read_spec(spec: str | Path, overrides: list[str] | None = None,
              smoke: bool = False) -> dict[str, Any]:  # fmt: skip
    """A spec file or catalog name as data: read, overridden, data roots made absolute
    (:mod:`studies.config.roots`), shrunk (``smoke``)."""
    path = resolve_spec_path(spec)
    data = read_yaml(path)
    if isinstance(data.get("code"), str):  # a code folder is relative to the spec file
        data["code"] = str((path.parent / Path(data["code"]).expanduser()).resolve())
    if path.resolve().parent != CATALOG_DIR:  # a spec file's data roots: relative to it
        resolve_roots(data, path.parent)
    data = apply_overrides(data, overrides or [])
    cwd = Path.cwd()  # roots of --set and of catalog studies, and the default ./data
    resolve_roots(data, cwd, default=cwd / DEFAULT_ROOT)
    return shrink(data) if smoke else data


def dump_spec(spec: StudySpec, masked: bool = True) -> str:
    """The spec as YAML; ``masked`` (for anything written to disk or MLflow) replaces
    credentials by ``***`` in the values, so the YAML always reads back."""
    data = spec.model_dump(mode="json", exclude_none=True)
    if masked:
        data = mask_value(data)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
