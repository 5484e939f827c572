"""Rewrite the file lists of MORSESegmentation/CMakeLists.txt from the files in the module folder.

Slicer packages only what ``slicerMacroBuildScriptedModule`` lists, so every Python file and resource must be named.
Run after adding or removing files:  python tools/sync_cmake_lists.py   (the test suite checks the lists).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1] / "MORSESegmentation"
CMAKE = MODULE_DIR / "CMakeLists.txt"
SKIP_PARTS = {"__pycache__", "Testing"}


def module_files() -> tuple[list[str], list[str]]:
    """(python scripts, resources) as paths relative to the module folder, sorted; ignored files excluded."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "."],
        cwd=MODULE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = sorted(f for f in out if not SKIP_PARTS & set(Path(f).parts) and (MODULE_DIR / f).is_file())
    files = [f for f in files if f != "CMakeLists.txt"]
    scripts = [f for f in files if f.endswith(".py")]
    resources = [f for f in files if not f.endswith(".py")]
    return scripts, resources


def listed(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\n(.*?)\n  \)", text, re.S)
    return match.group(1).split() if match else []


def render(text: str, variable: str, items: list[str]) -> str:
    block = f"set({variable}\n" + "\n".join(f"  {i}" for i in items) + "\n  )"
    return re.sub(rf"set\({variable}\n.*?\n  \)", lambda _m: block, text, flags=re.S)


def main() -> int:
    scripts, resources = module_files()
    text = CMAKE.read_text()
    new = render(render(text, "MODULE_PYTHON_SCRIPTS", scripts), "MODULE_PYTHON_RESOURCES", resources)
    if new != text:
        CMAKE.write_text(new)
        print(f"updated {CMAKE.relative_to(MODULE_DIR.parent)}: {len(scripts)} scripts, {len(resources)} resources")
    else:
        print("CMakeLists.txt already lists every file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
