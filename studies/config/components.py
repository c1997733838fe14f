"""Names of the user's own components, without importing them (no torch here).

A spec names a model, dataset, optimizer or per-step method by a built-in name, by an
import path ``package.module:attribute``, or by an entry point name that an installed
package registers in the group ``normstudy.<kind>s``. Loading them is
:mod:`studies.trial.components`'s job; this module only tells the kinds of names apart
and finds the Python code of a ``code:`` folder.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

KINDS = ("model", "dataset", "optimizer", "method")


def group(kind: str) -> str:
    """The entry point group of a kind: ``normstudy.models``, ``normstudy.datasets``, ..."""
    return f"normstudy.{kind}s"


def is_import_path(name: str) -> bool:
    """``package.module:attribute`` (the attribute may be dotted)."""
    module, sep, attribute = name.partition(":")
    return bool(sep and module and attribute)


def entry_points(kind: str) -> dict[str, metadata.EntryPoint]:
    """The entry points installed packages register for ``kind``, by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=group(kind))}


def is_user_name(kind: str, name: object) -> bool:
    """Whether ``name`` names user code: an import path or a registered entry point."""
    return isinstance(name, str) and (is_import_path(name) or name in entry_points(kind))


def user_name_hint(kind: str) -> str:
    """How to name one's own component of ``kind``, for error messages."""
    return (f"an import path 'package.module:attribute', or an entry point name of "
            f"{group(kind)} (normstudy list --components)")  # fmt: skip


def code_modules(folder: str | Path) -> list[Path]:
    """What a ``code:`` folder ships to the workers: its packages (folders holding Python
    files) and its top-level modules (``*.py``), hidden and cache folders left out."""
    found = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.name.startswith((".", "__pycache__")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            found.append(entry)
        elif entry.is_dir() and any(entry.glob("*.py")):
            found.append(entry)
    return found
