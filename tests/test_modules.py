"""alap's module graph has no import cycle.

A cycle is what made alap.metrics.weights import alap.metrics.fid and lpips_metric inside functions while they
imported it at the top: it works only as long as no one moves an import. Function-level imports count as edges
here too, because they close a cycle just the same when they run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tiny import ROOT

PACKAGE = ROOT / "alap"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """For every module of alap, the alap modules it imports anywhere in its body (``from pkg import submodule``
    counts as importing the submodule)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets.update(
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                )
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that returns to its start, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_sees_the_split_modules() -> None:
    graph = import_graph()
    assert {"alap.metrics.weights.files", "alap.metrics.weights.provide"} <= graph["alap.metrics.fid"]
    assert {"alap.metrics.fid", "alap.metrics.lpips_metric"} <= graph["alap.metrics.weights.verify"]
    assert "alap.tracking.client" in graph["alap.tracking.runs"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_alap_has_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None
