"""lce's import graph: no import climbs a floor, no modules import each other (however long the loop), and an
`lce.*` import inside a function says why on its own line or the line above.

The floors, bottom to top; a module imports only from its own package or from a lower floor (a package on a floor
of its own never imports sideways):

  0  ground     lce itself, errors, vocabulary, names, config, home, disk, input_files, output_paths, resources,
                records, published: the vocabulary and the plumbing, no torch and no database
  1  db         storage: the schema, connections, runs and pending files written
     models     architectures, checkpoints, layers and their layouts
     instrument counting allocations and host syncs (tests and benches)
  2  probe      Broden datasets, their decode cache, and their registration in the database (so above db)
  3  dissect    the method: thresholds, upsampling, tallies, uncertainty, the memory plan, the engine over a probe
                dataset and a model (so above probe and models)
  4  importers  reading files (CSV, JSON, pending runs) into records, with the checks that name the file at fault
  5  ingest     one model's run, the plan, its executors, resume
  6  analysis   matrices, embeddings, correlations over stored runs
  7  report     HTML, plots and strips
  8  cli        the command line: may import anything
"""

from __future__ import annotations

import ast
from pathlib import Path

LCE = Path(__file__).resolve().parents[1] / "lce"
GROUND = ("lce", "lce.errors", "lce.vocabulary", "lce.names", "lce.config", "lce.home", "lce.disk",
          "lce.input_files", "lce.output_paths", "lce.resources", "lce.records", "lce.published", "lce.__main__")
FLOORS = {**{name: 0 for name in GROUND}, "lce.db": 1, "lce.models": 1, "lce.instrument": 1, "lce.probe": 2,
          "lce.dissect": 3, "lce.importers": 4, "lce.ingest": 5, "lce.analysis": 6, "lce.report": 7, "lce.cli": 8}
# lce/__main__.py runs the command line: it sits on the ground only so that `python -m lce` needs no floor of its own.
ENTRY_POINTS = {"lce.__main__"}


def modules() -> dict[str, Path]:
    """Every module under lce/ by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(LCE.rglob("*.py")):
        parts = path.relative_to(LCE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def package(module: str) -> str:
    """The top-level part of lce a module belongs to: lce.db for lce.db.runs, lce.errors for lce.errors."""
    return ".".join(module.split(".")[:2])


def floor(module: str) -> int:
    return FLOORS[module] if module in FLOORS else FLOORS[package(module)]


class Import:
    def __init__(self, module: str, target: str, line: int, in_function: bool, type_only: bool):
        self.module, self.target, self.line = module, target, line
        self.in_function, self.type_only = in_function, type_only

    def __repr__(self) -> str:
        return f"{self.module}:{self.line} -> {self.target}"


def imports(module: str, path: Path) -> list[Import]:
    """The lce modules that `module` imports, at module level, in functions and under TYPE_CHECKING: `from a
    import b` names the module a.b when there is one, else a."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom, ast.Call)):
                for target in _targets(module, path, child):
                    if target != module:
                        found.append(Import(module, target, child.lineno, in_function, type_only))
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and _type_checking(child.test):
                # only the body never runs: `else:` (and `if not TYPE_CHECKING:`) do
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), nested, True)
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), nested, type_only)
                continue
            visit(child, nested, type_only)

    visit(tree, False, False)
    return found


def _type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`, nothing else (`if not TYPE_CHECKING:` runs)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_by_call(node: ast.Call) -> str | None:
    """The module that `importlib.import_module("lce...")` or `__import__("lce...")` names: the string, or the
    leading text of an f-string (f"lce.models.{name}" names lce.models); None for any other call."""
    function = node.func
    name = function.id if isinstance(function, ast.Name) else function.attr if isinstance(function, ast.Attribute) \
        else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    argument = node.args[0]
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    if isinstance(argument, ast.JoinedStr) and argument.values and isinstance(argument.values[0], ast.Constant):
        return str(argument.values[0].value).rstrip(".") or None
    return None


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom | ast.Call) -> list[str]:
    if isinstance(node, ast.Call):
        named = _imported_by_call(node)
        return [_known(named)] if named and named.split(".")[0] == "lce" else []
    if isinstance(node, ast.Import):
        return [_known(alias.name) for alias in node.names if alias.name.split(".")[0] == "lce"]
    base = node.module or ""
    if node.level:  # relative: from the module's package up
        parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
    if base.split(".")[0] != "lce":
        return []
    return sorted({f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else _known(base)
                   for alias in node.names})


def _known(name: str) -> str:
    """The module itself, or the package above a name that is no module."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


GRAPH = [found for module, path in MODULES.items() for found in imports(module, path)]


def test_every_package_has_a_floor():
    assert {package(module) for module in MODULES if module not in FLOORS and package(module) not in FLOORS} == set()


def test_no_import_climbs_a_floor():
    climbs = [f"{edge} (floor {floor(edge.module)} to {floor(edge.target)})" for edge in GRAPH
              if edge.module not in ENTRY_POINTS and floor(edge.target) > floor(edge.module)]
    assert climbs == []


def test_no_package_imports_sideways():
    sideways = [repr(edge) for edge in GRAPH if floor(edge.target) == floor(edge.module) > 0
                and package(edge.target) != package(edge.module)]
    assert sideways == []


def test_no_modules_import_each_other():
    """A loop of any length, through imports at module level or in functions (TYPE_CHECKING ones excepted: they
    never run)."""
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in GRAPH:
        if not edge.type_only:
            edges[edge.module].add(edge.target)
    assert [" -> ".join(cycle) for cycle in cycles(edges)] == []


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One loop (a -> b -> ... -> a) through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return [_loop(group, edges) for group in groups]


def _loop(group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to it, within the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges[node] & group):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    return sorted(group)


def test_the_loop_finder_names_the_modules_of_a_loop():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert sorted(cycles(edges)) == [["a", "b", "c", "a"], ["e", "e"]]


def test_function_level_lce_imports_say_why():
    """An lce import inside a function keeps a heavy package (torch, alembic, ...) out of a path that does not
    need it, and says so: a comment on its line, on another line of its block of imports, or on the line above the
    block."""
    silent = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for edge in imports(module, path):
            if edge.in_function and not edge.type_only and not _commented(lines, edge.line - 1):
                silent.append(repr(edge))
    assert sorted(set(silent)) == []


def _commented(lines: list[str], at: int) -> bool:
    """Whether line `at` (0-based) or the import lines just above it carry a comment, or the line above them is one."""
    while True:
        line = lines[at].strip()
        if "#" in line:
            return True
        if at == 0:
            return False
        above = lines[at - 1].strip()
        if not above.startswith(("from ", "import ", "#")) and above:
            return False
        if not above:  # a blank line inside a block of imports (stdlib, then lce)
            at -= 1
            continue
        at -= 1


def test_the_graph_sees_imports_in_functions_and_from_packages():
    """The parser itself: the known function-level import of lce.db.migrate and `from lce.models import build`."""
    found = {(edge.module, edge.target): edge for edge in GRAPH}
    assert found[("lce.db.connection", "lce.db.migrate")].in_function
    assert not found[("lce.ingest.run", "lce.models.build")].in_function
    assert ("lce.ingest.run", "lce.models") not in found


def test_the_graph_sees_imports_by_name_and_those_that_run_beside_type_checking(tmp_path):
    """importlib.import_module and __import__ of an lce module are imports too; under `if TYPE_CHECKING:` only the
    body is for the type checker alone: its `else:`, and `if not TYPE_CHECKING:`, run."""
    source = tmp_path / "hidden.py"
    source.write_text("import importlib\n"
                      "from typing import TYPE_CHECKING\n"
                      "importlib.import_module('lce.cli.app')\n"
                      "__import__('lce.report.html')\n"
                      "if TYPE_CHECKING:\n"
                      "    from lce.analysis import embed\n"
                      "else:\n"
                      "    from lce.ingest import run\n"
                      "if not TYPE_CHECKING:\n"
                      "    from lce.analysis import compare\n")
    found = {edge.target: edge.type_only for edge in imports("lce.db.hidden", source)}
    assert found == {"lce.cli.app": False, "lce.report.html": False, "lce.analysis.embed": True,
                     "lce.ingest.run": False, "lce.analysis.compare": False}
