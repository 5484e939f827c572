"""The ExtensionsIndex catalog entry (``MORSE.json``) follows Slicer's catalog-entry schema v1.0.1 and agrees with
the extension's CMake metadata."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCHEMA = (
    "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#"
)
# The schema's properties and their JSON types (it allows no others); "tier" is one of 1, 3, 5.
PROPERTIES = {
    "$schema": str,
    "category": str,
    "scm_url": str,
    "scm_revision": str,
    "scm_type": str,
    "build_dependencies": list,
    "build_subdirectory": str,
    "enabled": bool,
    "tier": int,
}
REQUIRED = ("$schema", "category", "scm_url")


def cmakeValue(name: str) -> str:
    match = re.search(rf"set\({name} (.+)\)", (REPO / "CMakeLists.txt").read_text())
    assert match, name
    return match.group(1).strip().strip('"')


def test_catalog_entry_follows_the_schema():
    entry = json.loads((REPO / "MORSE.json").read_text())
    assert entry["$schema"] == SCHEMA
    assert all(key in entry for key in REQUIRED)
    assert set(entry) <= set(PROPERTIES), f"not in the schema: {sorted(set(entry) - set(PROPERTIES))}"
    for key, value in entry.items():
        assert isinstance(value, PROPERTIES[key]) and not (PROPERTIES[key] is int and isinstance(value, bool)), key
    assert entry.get("tier", 5) in (1, 3, 5)
    assert entry.get("scm_type", "git") in ("git", "local")
    assert all(isinstance(d, str) for d in entry.get("build_dependencies", []))
    assert not (REPO / "MORSE.s4ext").exists()  # superseded by the JSON entry


def test_catalog_entry_agrees_with_cmake():
    entry = json.loads((REPO / "MORSE.json").read_text())
    assert entry["category"] == cmakeValue("EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == cmakeValue("EXTENSION_DEPENDS").split()
    assert entry["scm_url"].removesuffix(".git") == cmakeValue("EXTENSION_HOMEPAGE")
