"""The package's shape: no import circles, no long functions, one home per concept."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "largelr"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """largelr modules ``path`` imports anywhere (top level or inside functions), resolved to known names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("largelr"):
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = set(modules())
    graph = {}
    for name, path in modules().items():
        targets = imported_modules(path, known) - {name}
        # a package's __init__ is imported by its submodules' import; that edge is Python's, not ours
        graph[name] = {t for t in targets if not name.startswith(f"{t}.")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert "largelr.train" in graph and "largelr.evaluate" in graph["largelr.train"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_analyses_and_datasets_never_import_the_layers_above_them():
    graph = import_graph()
    above = {"largelr.config", "largelr.train", "largelr.aggregate", "largelr.figures", "largelr.cli"}
    for name, targets in graph.items():
        if name.startswith(("largelr.analyses", "largelr.datasets", "largelr.evaluate", "largelr.models")):
            assert not targets & above, (name, targets & above)


def long_functions() -> list[str]:
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}.{node.name}: {length} lines")
    return found


def test_no_function_is_longer_than_sixty_lines():
    assert long_functions() == []


def test_no_module_is_longer_than_four_hundred_lines():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


@pytest.mark.parametrize("table", ["KINDS"])
def test_every_dataset_kind_is_one_record(table):
    from largelr.registry.kinds import KINDS, RECORDS, implementation

    assert len(KINDS) == len(RECORDS)  # no name is defined twice
    for kind in KINDS.values():
        assert kind.doc and callable(implementation(kind.builder)) and kind.params, kind.name
        assert all(setting.doc for setting in kind.params.values()), kind.name


def test_every_analysis_declares_its_columns_and_its_run():
    from largelr.analyses import ANALYSES

    for name, module in ANALYSES.items():
        assert module.NAME == name and module.COLUMNS and callable(module.run)
