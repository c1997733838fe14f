"""Import cycles between the modules of normlib/ and studies/, imports inside functions included.

import-linter sees only what Python would import at module level; an import inside a function
still runs (on the first call), so a cycle hidden that way is a cycle all the same. This reads
every module with ``ast`` and collects every import:

* at module level, inside functions or classes, in ``try`` blocks: runtime edges, they count;
* ``importlib.import_module("a.b")`` with a literal name: a runtime edge too;
* under ``if TYPE_CHECKING:``: not a runtime edge (never executed), so it never fails the
  check; a cycle that needs one is listed apart, as a note.

``from a import b`` is the module ``a.b`` where ``a/b.py`` or ``a/b/__init__.py`` exists, else
the module ``a``. Importing ``a.b`` also runs ``a/__init__`` first, but that implicit edge from
a submodule to its parent package is left out: with it, every package whose ``__init__``
re-exports a submodule (or imports it lazily, as normlib's ``__getattr__`` does ``stats``)
would be a cycle, and it is none, as the submodule runs to its end while the package waits.
The edges a package's ``__init__`` makes to its submodules count, so a submodule that imports
a name from its own package (``from normlib import ENorm`` inside normlib), or reaches the
package through another module, closes a cycle. Only modules of the packages checked are
nodes; third-party imports are ignored.

    python tests/check_import_cycles.py [ROOT ...]   # default: normlib studies; exit 1 on a cycle
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("normlib", "studies")
MAX_CYCLES = 20  # listed per strongly connected group of modules


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line``; ``where`` is ``module level``, ``in f``
    (a function or method) or ``TYPE_CHECKING``."""

    source: str
    target: str
    line: int
    where: str

    @property
    def runtime(self) -> bool:
        """The import runs when the module (or the function) does."""
        return self.where != "TYPE_CHECKING"

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}, {self.where})"


def modules(roots: list[Path]) -> dict[str, Path]:
    """Dotted name -> file of every module under each package folder in ``roots``."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Imports(ast.NodeVisitor):
    """Every import of one module with its line and where it sits."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, list[str], int, str]] = []  # (base, names, line, where)
        self.where = ["module level"]

    def _visit_scope(self, node: ast.AST, where: str) -> None:
        self.where.append(where)
        self.generic_visit(node)
        self.where.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_scope(node, f"in {node.name}")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_scope(node, f"in {node.name}")

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.where.append("TYPE_CHECKING")
        for child in node.body:
            self.visit(child)
        self.where.pop()
        for child in node.orelse:  # the `else:` of TYPE_CHECKING runs
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, [], node.lineno, self.where[-1]))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.package.split(".")
            anchor = package[: len(package) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        self.found.append((base, [a.name for a in node.names], node.lineno, self.where[-1]))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if (name == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            self.found.append((node.args[0].value, [], node.lineno, self.where[-1]))
        self.generic_visit(node)


def edges(found: dict[str, Path]) -> list[Edge]:
    """Every import between two of ``found``'s modules, resolved to the module it loads."""
    result = []
    for module, path in found.items():
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for base, names, line, where in visitor.found:
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in found]
            if len(targets) < len(names) or not names:  # a name of the module itself
                targets.append(base)
            for target in targets:
                if target in found and target != module:
                        result.append(Edge(module, target, line, where))
    return result


def _groups(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _cycles_in(group: list[str], graph: dict[str, set[str]]) -> list[list[str]]:
    """Elementary cycles within one group, each starting at its smallest module (at most
    MAX_CYCLES): a -> b -> ... -> a."""
    members = set(group)
    found: list[list[str]] = []

    def extend(path: list[str]) -> None:
        start = path[0]
        for nxt in sorted(graph.get(path[-1], set()) & members):
            if len(found) >= MAX_CYCLES:
                return
            if nxt == start:
                found.append(path + [start])
            elif nxt > start and nxt not in path:  # each cycle once, from its smallest
                extend(path + [nxt])

    for start in group:
        extend([start])
    return found


def _rank(edge: Edge) -> int:
    """Which of two imports between the same modules a cycle shows: the one that runs first."""
    return 0 if edge.where == "module level" else 1 if edge.runtime else 2


def cycles(all_edges: list[Edge], runtime_only: bool = True) -> list[list[Edge]]:
    """Each import cycle as the edges around it; ``runtime_only=False`` counts the
    TYPE_CHECKING imports too."""
    first: dict[tuple[str, str], Edge] = {}
    for edge in all_edges:  # per pair: a module-level import, else a function's, else typing's
        if edge.runtime or not runtime_only:
            key = (edge.source, edge.target)
            if key not in first or _rank(edge) < _rank(first[key]):
                first[key] = edge
    graph: dict[str, set[str]] = {}
    for source, target in first:
        graph.setdefault(source, set()).add(target)
    return [[first[(a, b)] for a, b in zip(cycle, cycle[1:], strict=False)]
            for group in _groups(graph) for cycle in _cycles_in(group, graph)]


def describe(cycle: list[Edge]) -> str:
    """``a -> b -> a`` and, below it, where each import is."""
    path = " -> ".join([cycle[0].source] + [edge.target for edge in cycle])
    return path + "".join(f"\n    {edge}" for edge in cycle)


def check(roots: list[Path]) -> tuple[list[list[Edge]], list[list[Edge]]]:
    """(runtime cycles, cycles that need a TYPE_CHECKING import) among ``roots``' modules."""
    all_edges = edges(modules(roots))
    runtime = cycles(all_edges)
    seen = {tuple(e.source for e in cycle) for cycle in runtime}
    typing_only = [c for c in cycles(all_edges, runtime_only=False)
                   if tuple(e.source for e in c) not in seen]
    return runtime, typing_only


def main(argv: list[str]) -> int:
    """Print every cycle; 1 when a runtime one exists, else 0."""
    roots = [Path(a).resolve() for a in argv] or [REPO / p for p in PACKAGES]
    runtime, typing_only = check(roots)
    for cycle in typing_only:
        print("note, a cycle only through TYPE_CHECKING imports (not run):\n" + describe(cycle))
    for cycle in runtime:
        print("import cycle:\n" + describe(cycle))
    names = ", ".join(root.name for root in roots)
    print(f"{len(runtime)} import cycle(s) among the modules of {names}")
    return 1 if runtime else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
