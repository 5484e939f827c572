"""What a Python file imports, read with ``ast`` (nothing is run): the checks of the import closure and graph."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path


def imports(path: Path, name: str) -> Iterator[tuple[str, list[str]]]:
    """``(module, names)`` for every import statement of module ``name`` (file ``path``), imports inside functions
    included: ``import a.b`` gives ``("a.b", [])``, ``from .c import d, e`` gives the absolute ``c`` and ``["d", "e"]``.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                module = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [alias.name for alias in node.names]
