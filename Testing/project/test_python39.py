"""Python 3.9 (the Python of 3D Slicer 5.8): everything the Slicer module and the inference worker import must parse
and run there, so no 3.10 syntax and no ``X | Y`` evaluated at run time (the annotations stay strings)."""

from __future__ import annotations

import ast
import dataclasses
import functools
import shutil
import subprocess
import textwrap
import types
import typing
from pathlib import Path

import pytest
from morse import config
from sourceImports import imports

SOURCE = Path(__file__).resolve().parents[2] / "MORSESegmentation"
ENTRY_POINTS = ("MORSESegmentation", "morse.inference.worker", "morse.modelpack", "morse.imageio", "morse.config")


def _module_file(name: str) -> Path | None:
    base = SOURCE.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, name: str):
    for module, names in imports(path, name):
        yield module
        yield from (f"{module}.{n}" for n in names)


def _slicer_and_worker_files() -> list[Path]:
    """Our files the Slicer module and the worker reach, imports inside functions included (found statically)."""
    pending = [
        *ENTRY_POINTS,
        *(f"MORSESegmentationLib.{p.stem}" for p in (SOURCE / "MORSESegmentationLib").glob("*.py")),
    ]
    pending += [f"morse.inference.{p.stem}" for p in (SOURCE / "morse" / "inference").glob("*.py")]
    found: dict[str, Path] = {}
    while pending:
        name = pending.pop()
        path = None if name in found else _module_file(name)
        if path is None:
            continue
        found[name] = path
        parents = name.split(".")
        pending += [".".join(parents[:i]) for i in range(1, len(parents))]
        pending += [m for m in _imported_names(path, name) if m.split(".")[0] in ("morse", "MORSESegmentationLib")]
    return sorted(set(found.values()))


FILES = _slicer_and_worker_files()


def test_the_import_closure_covers_the_module_and_the_engine():
    names = {p.relative_to(SOURCE).as_posix() for p in FILES}
    expected = {"MORSESegmentation.py", "MORSESegmentationLib/logic.py", "morse/config.py", "morse/fileutils.py"}
    expected |= {"morse/inference/worker.py", "morse/inference/pipeline.py", "morse/modelpack.py", "morse/nets/unet.py"}
    assert expected <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(SOURCE).as_posix())
def test_parses_as_python39_and_evaluates_no_pep604_union(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 9))
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
    annotations = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            args = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            annotations.update(id(x.annotation) for x in args if x is not None and x.annotation is not None)
            annotations.add(id(node.returns))
        elif isinstance(node, ast.AnnAssign):
            annotations.add(id(node.annotation))
    problems = []
    for node in ast.walk(tree):
        line = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if id(node) in annotations and not postponed and _has_bitor(node):
            problems.append(f"{line}: 'X | Y' annotation without 'from __future__ import annotations'")
        if not isinstance(node, ast.Call):
            continue
        func = getattr(node.func, "id", getattr(node.func, "attr", ""))
        keywords = {k.arg for k in node.keywords}
        if func in ("zip", "map") and "strict" in keywords:
            problems.append(f"{line}: {func}(strict=...) is Python 3.10")
        if func == "dataclass" and keywords & {"slots", "kw_only", "match_args"}:
            problems.append(f"{line}: dataclass({', '.join(sorted(keywords))}) is Python 3.10")
        if func in ("isinstance", "issubclass") and len(node.args) == 2 and isinstance(node.args[1], ast.BinOp):
            problems.append(f"{line}: {func} with an 'X | Y' union is Python 3.10")
    assert not problems


def _has_bitor(tree: ast.AST) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(tree))


def _has_pep604_union(tp) -> bool:
    return isinstance(tp, types.UnionType) or any(_has_pep604_union(a) for a in typing.get_args(tp))


CONFIG_CLASSES = [c for c in vars(config).values() if isinstance(c, type) and dataclasses.is_dataclass(c)]


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_config_types_resolve_without_evaluating_pep604(cls, monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("typing.get_type_hints evaluates 'X | None', which Python 3.9 cannot")

    monkeypatch.setattr(typing, "get_type_hints", refused)
    hints = config.field_types(cls)
    assert not [name for name, tp in hints.items() if _has_pep604_union(tp)]
    assert config.from_dict(cls, config.to_dict(cls())) == cls()


def test_optional_nested_configs_still_build_and_check_their_choices():
    model = config.from_dict(config.ModelConfig, {"features": {"expert_dim": 8}, "point_head": None})
    assert model.features.expert_dim == 8 and model.point_head is None
    with pytest.raises(config.ConfigError, match=r"features\.kind: 'moe' is not one of 'smoe', 'plain'"):
        config.from_dict(config.ModelConfig, {"features": {"kind": "moe"}})


def _is_python39(exe: str) -> bool:
    probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == "(3, 9)"


@functools.lru_cache(maxsize=1)
def _python39() -> str | None:
    """A Python 3.9 interpreter: ``python3.9`` on the PATH, else one that pyenv has installed but not selected."""
    exe = shutil.which("python3.9")
    if exe is not None and _is_python39(exe):
        return exe
    if shutil.which("pyenv") is None:
        return None
    listed = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True).stdout.split()
    for version in sorted((v for v in listed if v.startswith("3.9.")), reverse=True):
        prefix = subprocess.run(["pyenv", "prefix", version], capture_output=True, text=True).stdout.strip()
        candidate = Path(prefix) / "bin" / "python3.9"
        if prefix and candidate.is_file() and _is_python39(str(candidate)):
            return str(candidate)
    return None


@pytest.mark.skipif(_python39() is None, reason="no Python 3.9 interpreter here")
def test_config_and_host_memory_run_on_a_real_python39():
    # Only modules that import nothing outside the standard library: a bare 3.9 has no numpy or torch.
    script = textwrap.dedent(
        f"""
        import dataclasses, sys
        sys.path.insert(0, {str(SOURCE)!r})
        from morse import config, fileutils
        for cls in vars(config).values():
            if isinstance(cls, type) and dataclasses.is_dataclass(cls):
                assert config.from_dict(cls, config.to_dict(cls())) == cls()
        assert fileutils.available_memory() > 0
        print("ok")
        """
    )
    done = subprocess.run([_python39(), "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
