"""The package's shape: the rooms of dd_hub (its sub-packages and top-level modules) import one way, from the
command line down to the base modules; no import cycle between modules; a command line that starts without torch
(which is what makes ``dd-hub --help`` answer in well under a second; docs/architecture.md has the measurement).

Imports are read from the source (``ast``), at any depth (a function-level import is still a dependency), except
those under ``if TYPE_CHECKING:``. Importing ``dd_hub.a.b`` also imports the package ``dd_hub.a``, so that edge is
counted too, except from a module to the packages it lives in (Python imports those first in any case).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dd_hub"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """dd_hub modules that ``name`` (at ``path``) imports, with the packages on their way."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            targets = []
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # a.b.c imports a, a.b and a.b.c
                candidate = ".".join(parts[:i])
                if candidate in known and candidate != name and not name.startswith(candidate + "."):
                    found.add(candidate)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


#: the floors of the house, top first: a room imports rooms of the floors below only (rooms on one floor do not
#: import each other), never a floor above
FLOORS = [
    {"__main__"},
    {"cli"},
    {"workflows"},
    {"hub"},
    {"recipes"},
    {"training", "evaluation"},
    {"models", "data"},
    {"attacks", "storage"},
    {"settings", "text", "registration", "threat_models"},
    {"names", "errors", "version"},
]


def room(module: str) -> str:
    """``dd_hub.hub.cards`` -> ``hub``; the package itself is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def floor(name: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if name in rooms)


def upward_or_sideways(graph: dict[str, set[str]]) -> list[str]:
    """Every import from one room to another that does not go down a floor."""
    bad = []
    for module, targets in graph.items():
        if room(module) == "__init__":
            continue  # the lazy public API re-exports from every room
        for target in targets:
            if room(target) not in (room(module), "__init__") and floor(room(target)) <= floor(room(module)):
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def test_every_room_is_on_a_floor():
    rooms = {room(module) for module in import_graph()} - {"__init__"}
    assert rooms == set().union(*FLOORS)


def test_rooms_import_only_downwards():
    graph = import_graph()
    assert len(graph) > 40 and "dd_hub.training.loop" in graph["dd_hub.workflows.harden"]  # real edges are seen
    assert upward_or_sideways(graph) == []


def test_no_import_cycle_in_dd_hub():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_checks_find_planted_faults():
    graph = import_graph()
    graph["dd_hub.errors"] = graph["dd_hub.errors"] | {"dd_hub.workflows.harden"}
    assert find_cycle(graph) is not None
    assert upward_or_sideways(graph) == ["dd_hub.errors -> dd_hub.workflows.harden"]


def test_the_command_line_starts_without_torch():
    code = "import sys, dd_hub.cli; print(sorted(m for m in ('torch', 'timm', 'accelerate') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_text = subprocess.run([sys.executable, "-m", "dd_hub", "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "harden" in help_text and "publish" in help_text and "verify" in help_text and "verify" in help_text
