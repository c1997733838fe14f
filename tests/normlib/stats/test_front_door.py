"""normlib.stats as a package: the front door re-exports every public name, and the modules
import one another only at the top, without a cycle."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import normlib
from normlib import stats
from normlib.stats.boundaries import boundaries
from normlib.stats.design import decide

PACKAGE = Path(stats.__file__).parent


def test_reexported_from_stats():
    assert stats.decide is decide and stats.boundaries is boundaries


def test_every_public_name_is_exported_once():
    assert len(stats.__all__) == len(set(stats.__all__))
    for name in stats.__all__:
        value = getattr(stats, name)
        module = getattr(value, "__module__", None)
        if module is not None and module.startswith("normlib.stats."):
            assert getattr(importlib.import_module(module), name) is value


def test_normlib_lazy_attributes_come_from_stats():
    for name in ("holm", "paired_ttest", "power", "seeds_needed", "wilcoxon"):
        assert getattr(normlib, name) is getattr(stats, name)


def test_import_normlib_does_not_load_stats():
    code = "import sys, normlib; print('normlib.stats' in sys.modules, 'scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]


def _package_imports(path: Path) -> tuple[set[str], list[str]]:
    """normlib.stats modules imported at the top of ``path``, and any import elsewhere."""
    tree = ast.parse(path.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("normlib.stats"):
            assert node.names[0].name != "*", f"{path.name}: star import"
            top.add(node.module.removeprefix("normlib.stats.").removeprefix("normlib.stats"))
    nested = [
        f"{path.name}:{node.lineno}"
        for parent in tree.body
        if not isinstance(parent, ast.Import | ast.ImportFrom)
        for node in ast.walk(parent)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    return top, nested


def test_modules_import_at_the_top_without_a_cycle():
    graph = {}
    for path in sorted(PACKAGE.glob("*.py")):
        top, nested = _package_imports(path)
        assert not nested, f"imports inside a function or class: {nested}"
        graph[path.stem] = top - {""}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
