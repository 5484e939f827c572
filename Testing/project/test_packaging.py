"""The extension packages every file of the module, and the repository carries what a newcomer needs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_sync_tool():
    spec = importlib.util.spec_from_file_location("sync_cmake_lists", REPO / "tools" / "sync_cmake_lists.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_module_file_is_listed_in_cmakelists():
    tool = _load_sync_tool()
    scripts, resources = tool.module_files()
    text = (REPO / "MORSESegmentation" / "CMakeLists.txt").read_text()
    missing_scripts = sorted(set(scripts) - set(tool.listed(text, "MODULE_PYTHON_SCRIPTS")))
    missing_resources = sorted(set(resources) - set(tool.listed(text, "MODULE_PYTHON_RESOURCES")))
    assert not missing_scripts, f"not in MODULE_PYTHON_SCRIPTS (run tools/sync_cmake_lists.py): {missing_scripts}"
    assert not missing_resources, f"not in MODULE_PYTHON_RESOURCES (run tools/sync_cmake_lists.py): {missing_resources}"
    stale = sorted(set(tool.listed(text, "MODULE_PYTHON_SCRIPTS")) - set(scripts))
    assert not stale, f"listed but absent: {stale}"


def test_listing_check_catches_a_new_file(tmp_path):
    tool = _load_sync_tool()
    text = (REPO / "MORSESegmentation" / "CMakeLists.txt").read_text()
    assert "morse/not_a_real_file.py" not in tool.listed(text, "MODULE_PYTHON_SCRIPTS")
    rendered = tool.render(text, "MODULE_PYTHON_SCRIPTS", ["a.py", "b/c.py"])
    assert tool.listed(rendered, "MODULE_PYTHON_SCRIPTS") == ["a.py", "b/c.py"]


def test_extension_metadata():
    top = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"project\(MORSE\)", top)
    assert "EXTENSION_DEPENDS PyTorch" in top
    assert "add_subdirectory(MORSESegmentation)" in top
    module = (REPO / "MORSESegmentation" / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule" in module


def test_readme_starts_with_the_two_commands():
    head = "\n".join((REPO / "README.md").read_text().splitlines()[:12])
    assert "make demo" in head and "make test" in head


def test_ci_calls_make_test():
    assert "make test" in (REPO / ".ci" / "run").read_text()
