"""The real-Qt tier: the unmodified module (its .ui, setup(), panel and worker process) on PySide6, offscreen.

Qt renders offscreen (``QT_QPA_PLATFORM=offscreen``, set before PySide6 is imported). The Slicer tier's stand-ins
are installed first, so the two tiers can share one pytest process: this tier swaps in real Qt per test
(qtHarness.activate) and gives everything back afterwards. Measurements (event-loop stalls, Apply→result) go to
a JSON report and the end of the pytest output; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

HERE = Path(__file__).resolve().parent
SLICER_TIER = HERE.parent / "slicer"
for folder in (HERE, SLICER_TIER):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import slicerHarness  # noqa: E402
import slicerStandIns  # noqa: E402

slicerHarness.makeHeadlessSlicer()
slicerStandIns.install()

import qtHarness  # noqa: E402
import slicer  # noqa: E402

REPORT: dict = {}
REPORT_NAME = "morse-qt-tier-report.json"


@pytest.fixture(autouse=True)
def realQt(monkeypatch):
    """Real Qt for this test (the scene is left alone: a session shared by several tests lives in it)."""
    qtHarness.activate(monkeypatch)
    yield
    qtHarness.application().processEvents()


@pytest.fixture(scope="module", autouse=True)
def detachPanelsFromScene():
    """After each module, the combo boxes its panels left behind stop observing the process-wide scene: the
    slicer-core tier that may follow in the same process must not run Qt code on every node it adds."""
    yield
    import slicerWidgets

    slicerWidgets.detachAllFromScenes()


@pytest.fixture
def emptyScene():
    """An empty scene and empty settings before and after the test."""
    slicer.mrmlScene.Clear(0)
    slicerStandIns._QSettings.clearAll()
    yield
    slicer.mrmlScene.Clear(0)


@pytest.fixture(scope="module")
def defaultIsTiny(tinyPack, tmp_path_factory):
    """The tiny pack installed as the bundled default model (``MORSE_MODELS``), for this module's tests."""
    import shutil

    from morse.modelpack import DEFAULT_MODEL_ID

    models = tmp_path_factory.mktemp("models")
    shutil.copytree(tinyPack, models / DEFAULT_MODEL_ID)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MORSE_MODELS", str(models))
        yield models


@pytest.fixture(scope="session")
def tinyPack(tmp_path_factory) -> Path:
    import slicerModelPacks as modelPacks

    return modelPacks.makeTinyPack(tmp_path_factory.mktemp("packs") / "tiny")


@pytest.fixture(scope="session")
def report(tmp_path_factory) -> dict:
    """Measurements of this tier, written to ``<pytest basetemp>/morse-qt-tier-report.json`` at the end."""
    REPORT["path"] = str(tmp_path_factory.getbasetemp() / REPORT_NAME)
    return REPORT


def pytest_sessionfinish(session, exitstatus):
    if REPORT.get("path"):
        Path(REPORT["path"]).write_text(json.dumps(REPORT, indent=1), encoding="utf-8")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not REPORT.get("path"):
        return
    terminalreporter.section("MORSE real-Qt tier: measurements")
    for key, value in REPORT.items():
        if key != "path":
            terminalreporter.write_line(f"{key}: {json.dumps(value)}")
    terminalreporter.write_line(f"report: {REPORT['path']}")
