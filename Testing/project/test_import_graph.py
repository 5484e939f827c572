"""The layering of the engine: the import graph of ``morse`` has no cycle, and the model layers (networks, heads, the
model and the model pack) never import from inference.

Every import counts, also those inside functions: an import deferred to run time still ties the two modules together.
Run alone with ``python -m pytest Testing/project/test_import_graph.py``; a failure names the cycle or the arrow.
"""

from __future__ import annotations

from pathlib import Path

from sourceImports import imports

SOURCE = Path(__file__).resolve().parents[2] / "MORSESegmentation"
MODEL_LAYERS = ("morse.nets", "morse.heads", "morse.model", "morse.modelpack", "morse.labels")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SOURCE / "morse").rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``morse`` modules that ``name`` imports (``from package import module`` counts as the module)."""
    found = set()
    for module, names in imports(path, name):
        found.update(f"{module}.{n}" if f"{module}.{n}" in modules else module for n in names or [""])
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_engine_has_no_import_cycle():
    graph = import_graph()
    assert "morse.inference.pipeline" in graph and "morse.data.readers" in graph  # the walk found the package
    assert cycles(graph) == []


def test_model_layers_do_not_import_inference():
    upward = {
        name: sorted(t for t in targets if t.startswith("morse.inference"))
        for name, targets in import_graph().items()
        if name.startswith(MODEL_LAYERS)
    }
    assert {name: targets for name, targets in upward.items() if targets} == {}
