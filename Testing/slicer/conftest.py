"""Harness of the Slicer-side tests: slicer-core's real MRML scene and module logics, plus stand-ins for the Qt-based
parts of Slicer's Python API (see slicerStandIns.py), and small real MORSE model packs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import slicerHarness  # noqa: E402
import slicerStandIns  # noqa: E402

slicerHarness.makeHeadlessSlicer()
slicerStandIns.install()

import slicer  # noqa: E402


def defaultPackInstalled() -> bool:
    """True when the trained default model pack is in MORSESegmentation/Resources/Models."""
    from morse.modelpack import DEFAULT_MODEL_ID, models_dir

    folder = models_dir() / DEFAULT_MODEL_ID
    return (folder / "model.json").is_file() and (folder / "model.safetensors").is_file()


needsDefaultModel = pytest.mark.skipif(not defaultPackInstalled(), reason="default model pack not installed")


@pytest.fixture(autouse=True)
def cleanScene():
    """Every test starts and ends with an empty scene (default colour tables and singletons stay)."""
    slicer.mrmlScene.Clear(0)
    slicerStandIns._QSettings.clearAll()
    yield
    slicer.mrmlScene.Clear(0)


@pytest.fixture(scope="session")
def tinyPack(tmp_path_factory) -> Path:
    import slicerModelPacks as modelPacks

    return modelPacks.makeTinyPack(tmp_path_factory.mktemp("packs") / "tiny")


@pytest.fixture(scope="session")
def brightPack(tmp_path_factory) -> Path:
    import slicerModelPacks as modelPacks

    return modelPacks.trainBrightObjectPack(tmp_path_factory.mktemp("packs") / "bright")
