"""No import cycle among the modules of normlib/ and studies/, imports inside functions included
(tests/check_import_cycles.py), and the check itself on tiny packages written here."""

from __future__ import annotations

from pathlib import Path

import check_import_cycles as checker

REPO = Path(__file__).resolve().parents[1]


def package(root: Path, name: str, files: dict[str, str]) -> Path:
    """Write a package ``name`` under ``root``: ``files`` maps a relative path to its source
    (``__init__.py`` is created empty where not given)."""
    folder = root / name
    for relative, source in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for init in {folder / Path(r).parent / "__init__.py" for r in files} | {folder / "__init__.py"}:
        if not init.exists():
            init.write_text("")
    return folder


def paths(cycles: list[list[checker.Edge]]) -> list[list[str]]:
    return [[cycle[0].source] + [edge.target for edge in cycle] for cycle in cycles]


def test_normlib_and_studies_have_no_import_cycle():
    runtime, _ = checker.check([REPO / "normlib", REPO / "studies"])
    assert not runtime, "import cycles:\n" + "\n".join(map(checker.describe, runtime))


def test_a_cycle_hidden_in_a_function_fails_with_its_path(tmp_path, capsys):
    root = package(tmp_path, "pkg", {
        "space.py": "from pkg.sequential import check\n",
        "sequential.py": "def check():\n    from pkg import space\n    return space\n",
        "other.py": "import pkg.space\n",
    })
    assert checker.main([str(root)]) == 1
    out = capsys.readouterr().out
    assert "pkg.sequential -> pkg.space -> pkg.sequential" in out
    assert "pkg.sequential -> pkg.space (line 2, in check)" in out
    assert "pkg.space -> pkg.sequential (line 1, module level)" in out
    assert out.rstrip().endswith("1 import cycle(s) among the modules of pkg")


def test_relative_imports_a_three_module_cycle_and_import_module(tmp_path):
    root = package(tmp_path, "pkg", {
        "a.py": "from .b import x\n",
        "b.py": "from . import c\nx = 1\n",
        "c.py": "import importlib\n\n\ndef f():\n    return importlib.import_module('pkg.a')\n",
        "sub/d.py": "from ..a import x\n",
    })
    runtime, _ = checker.check([root])
    assert paths(runtime) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert [e.where for e in runtime[0]] == ["module level", "module level", "in f"]


def test_type_checking_imports_are_a_note_never_a_failure(tmp_path, capsys):
    root = package(tmp_path, "pkg", {
        "a.py": "from typing import TYPE_CHECKING\n\nfrom pkg import b\n\n"
                "if TYPE_CHECKING:\n    from pkg.b import B\nelse:\n    import json\n",
        "b.py": "import typing\n\nif typing.TYPE_CHECKING:\n    from pkg.a import A\n",
    })
    runtime, typing_only = checker.check([root])
    assert runtime == [] and paths(typing_only) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert typing_only[0][1].where == "TYPE_CHECKING"
    assert checker.main([str(root)]) == 0
    assert "note, a cycle only through TYPE_CHECKING imports" in capsys.readouterr().out


def test_a_package_reexporting_or_lazily_loading_its_submodules_is_no_cycle(tmp_path):
    """normlib's shape: __init__ imports submodules at the top and one in __getattr__; the
    submodules import each other and third-party modules, never the package's own names."""
    root = package(tmp_path, "pkg", {
        "__init__.py": "import importlib\nfrom pkg.a import A\n\n\ndef __getattr__(name):\n"
                       "    return importlib.import_module('pkg.stats')\n",
        "a.py": "import json\nfrom pkg.stats import paired\nA = 1\n",
        "stats/__init__.py": "from pkg.stats.paired import ttest\n",
        "stats/paired.py": "import math\n\n\ndef ttest():\n    from pkg.stats import _checks\n",
        "stats/_checks.py": "",
    })
    assert checker.check([root]) == ([], [])


def test_a_submodule_importing_its_own_package_closes_a_cycle(tmp_path):
    root = package(tmp_path, "pkg", {
        "__init__.py": "from pkg.enorm import ENorm\nHELPER = 1\n",
        "enorm.py": "class ENorm:\n    def step(self):\n        from pkg import HELPER\n",
    })
    runtime, _ = checker.check([root])
    assert paths(runtime) == [["pkg", "pkg.enorm", "pkg"]]


def test_cycles_across_two_packages(tmp_path):
    one = package(tmp_path, "one", {"x.py": "def f():\n    import two.y\n"})
    two = package(tmp_path, "two", {"y.py": "from one.x import f\n"})
    runtime, _ = checker.check([one, two])
    assert paths(runtime) == [["one.x", "two.y", "one.x"]]
