"""Scripted sessions at the MORSE panel on real Qt, with the real worker process and a tiny model.

The tests of this file share one panel and one warm worker (starting Python, torch and the model is most of a run's
time), in file order: the first run starts the worker, the next ones reuse it, and the last three end it on purpose
(Cancel, a killed worker, a scene close), each while it is still starting or running. Every test leaves the panel
idle. Apply→result and the event loop's stalls go to the tier's report; no duration is asserted.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import panelSession
import pytest
import qtHarness
import slicer
from MORSESegmentationLib import backgroundRun
from PySide6 import QtCore, QtWidgets

pytestmark = pytest.mark.slow

FALLBACK = "CUDA was requested but no CUDA GPU is available to PyTorch; using the CPU instead"


@pytest.fixture(scope="module")
def session(defaultIsTiny):
    slicer.mrmlScene.Clear(0)
    with pytest.MonkeyPatch.context() as patch:
        qtHarness.activate(patch)
        patch.setattr(slicer.util, "errorDisplay", lambda text, **kw: SESSION_DIALOGS.append(text))
        panelSession.addCt()
        s = panelSession.Session()
        yield s
        s.close()
    slicer.mrmlScene.Clear(0)


SESSION_DIALOGS: list[str] = []


def apply(session, report=None, key=None) -> object:
    """Click Apply, run the event loop until the outcome; record Apply→result in the report under ``key``."""
    count = len(session.outcomes)
    started, since = time.monotonic(), time.perf_counter()
    session.click(session.ui.applyButton)
    outcome = session.waitForOutcome(count + 1)
    if report is not None and key:
        report[key] = {"apply_to_result_s": round(time.monotonic() - started, 2), **session.heartbeat.summary(since)}
    return outcome


@pytest.fixture
def immediateCancel():
    """A double-click interval of 1 ms, so that a Cancel right after Apply counts however fast the run is."""
    app = QtWidgets.QApplication.instance()
    interval = app.doubleClickInterval()
    app.setDoubleClickInterval(1)
    yield
    app.setDoubleClickInterval(interval)


def idle(session):
    assert not session.panel.isRunning()
    assert session.ui.applyButton.text == "Apply" and session.ui.applyButton.enabled


def test_apply_shows_progress_locks_inputs_and_creates_outputs(session, report):
    ui = session.ui
    assert ui.applyButton.enabled and ui.show3DButton.enabled is False
    count = len(session.outcomes)
    started, since = time.monotonic(), time.perf_counter()
    session.click(ui.applyButton)
    assert session.panel.isRunning() and ui.applyButton.text == "Cancel"
    assert ui.progressBar.visible
    # What defines the run cannot change under it.
    for name in ("inputVolumeSelector", "modelComboBox", "outputSegmentationSelector", "refineCheckBox",
                 "postprocessCheckBox", "replaceExistingCheckBox", "deviceComboBox"):  # fmt: skip
        assert getattr(ui, name).enabled is False, name
    outcome = session.waitForOutcome(count + 1, timeout=400)  # a cold worker: Python, torch, the model
    report["first_apply"] = {"apply_to_result_s": round(time.monotonic() - started, 2),
                             **session.heartbeat.summary(since)}  # fmt: skip
    assert outcome.status == "done", outcome.error
    idle(session)
    assert ui.inputVolumeSelector.enabled and ui.modelComboBox.enabled
    assert not ui.progressBar.visible
    # The bar went forward only, to the end (it once fell from 93 % to 0 % when the outputs were being created).
    values = session.progress
    assert values[-1] == 1000 and values == sorted(values), values
    assert slicer.mrmlScene.GetFirstNodeByName("CT MORSE") is not None
    assert ui.show3DButton.enabled
    assert any(line.startswith("Done in") for line in session.logLines())


def test_second_apply_reuses_the_warm_worker(session, report):
    outcome = apply(session, report, "second_apply")
    assert outcome.status == "done", outcome.error
    assert outcome.modelCached and outcome.startupSeconds is None
    assert slicer.mrmlScene.GetFirstNodeByName("CT MORSE 2") is not None
    idle(session)


def test_double_click_on_apply_starts_one_run_and_lets_it_finish(session):
    count = len(session.outcomes)
    session.queueClick(session.ui.applyButton, double=True)
    outcome = session.waitForOutcome(count + 1)
    session.pump(0.2)
    assert outcome.status == "done", outcome.error  # not started and cancelled at once
    assert len(session.outcomes) == count + 1
    assert "Cancelling…" not in session.logLines()
    idle(session)


def test_rerun_with_replace_keeps_one_set_of_outputs(session):
    session.click(session.ui.replaceExistingCheckBox)
    assert session.panel._parameterNode.replaceExisting  # the check box is bound to the parameter node
    before = panelSession.morseNodes()
    outcome = apply(session)
    assert outcome.status == "done", outcome.error
    assert outcome.outputs.replacedNodeNames
    firstRun = [n for n in before if not n.startswith(("CT MORSE 2", "CT MORSE 3"))]
    assert panelSession.morseNodes() == firstRun  # the new outputs took the plain names; the others are gone
    session.click(session.ui.replaceExistingCheckBox)
    idle(session)


def test_cancel_clicked_while_outputs_are_created_cancels(session, monkeypatch, immediateCancel):
    """A Cancel click that reaches the panel while the outputs are being created stops the run; it never starts a
    second one (it once did, with a hidden progress bar)."""
    original = backgroundRun.WorkerRun.result

    def resultThenClick(run):
        session.queueClick(session.ui.applyButton)  # the user clicks "Cancel" while the GUI thread is busy
        return original(run)

    monkeypatch.setattr(backgroundRun.WorkerRun, "result", resultThenClick)
    before = panelSession.morseNodes()
    outcome = apply(session)
    session.pump(0.3)
    assert outcome.status == "cancelled"
    assert session.outcomes[-1] is outcome  # no further run
    assert panelSession.morseNodes() == before
    idle(session)


def test_click_still_queued_when_the_run_ends_starts_no_new_run(session, monkeypatch):
    """A click made on "Cancel" that the GUI thread only reaches once the run has ended is dropped: the button says
    "Apply" again by then, and taking the click would start a second full run nobody asked for."""
    panel = session.panel
    original = panel._onRunFinished

    def clickThenFinish(outcome):
        session.queueClick(session.ui.applyButton)
        original(outcome)

    monkeypatch.setattr(panel, "_onRunFinished", clickThenFinish)
    outcome = apply(session)
    session.pump(0.5)
    assert outcome.status == "done", outcome.error
    assert session.outcomes[-1] is outcome and not panel.isRunning()
    idle(session)


def test_device_fallback_is_said_once(session, report):
    ui = session.ui
    combo = ui.deviceComboBox
    combo.currentIndex = combo.findText("cuda")
    assert session.panel._parameterNode.device == "cuda"
    start = len(session.logLines())
    outcome = apply(session)
    assert outcome.status == "done", outcome.error
    lines = session.logLines()[start:]
    assert sum(FALLBACK in line for line in lines) == 1, lines
    assert ui.resultNotesLabel.visible and FALLBACK in ui.resultNotesLabel.text  # in plain sight, too
    assert ui.resultNotesLabel.text.startswith("Check this result (1 note):")
    combo.currentIndex = combo.findText("auto")
    idle(session)


def test_panel_screenshot(session, report):
    """The panel as a user sees it after a run with notes (QWidget.grab, offscreen). ``MORSE_PANEL_SCREENSHOT``
    names a PNG to write it to as well (docs/images/panel.png is made this way)."""
    image = session.top.grab()
    assert image.width() >= 400 and image.height() >= 600
    path = Path(report["path"]).with_name("panel.png")
    assert image.save(str(path))
    target = os.environ.get("MORSE_PANEL_SCREENSHOT")
    if target:
        assert image.save(target)
    report["screenshot"] = str(path)


def test_cancel_mid_run(session, immediateCancel):
    ui = session.ui
    ct = ui.inputVolumeSelector.currentNode()
    big = panelSession.addCt("CT big", shape=(64, 96, 96))  # long enough to be cancelled while segmenting
    ui.inputVolumeSelector.setCurrentNode(big)
    assert session.panel._parameterNode.inputVolume is big
    count = len(session.outcomes)
    before = panelSession.morseNodes()
    session.click(ui.applyButton)
    session.waitUntil(lambda: session.progress and session.progress[-1] >= 100, 120, "segmenting")
    assert session.panel.isRunning()
    session.click(ui.applyButton)  # "Cancel"
    outcome = session.waitForOutcome(count + 1, timeout=30)
    assert outcome.status == "cancelled"
    assert "Cancelled; nothing was added to the scene." in session.logLines()
    assert panelSession.morseNodes() == before
    idle(session)
    ui.inputVolumeSelector.setCurrentNode(ct)
    slicer.mrmlScene.RemoveNode(big)


def test_killed_worker_is_reported_and_the_panel_recovers(session):
    count = len(session.outcomes)
    SESSION_DIALOGS.clear()
    session.click(session.ui.applyButton)
    session.waitUntil(lambda: session.logic.workerPid is not None, 30, "a worker process")
    os.kill(session.logic.workerPid, signal.SIGKILL)  # as the out-of-memory killer would
    outcome = session.waitForOutcome(count + 1, timeout=30)
    assert outcome.status == "failed" and outcome.error
    assert SESSION_DIALOGS and outcome.error in SESSION_DIALOGS[-1]
    assert any(line.startswith("Error: ") for line in session.logLines())
    idle(session)


def test_scene_close_mid_run(session):
    ui = session.ui
    assert ui.show3DButton.enabled  # holds the last result
    count = len(session.outcomes)
    session.click(ui.applyButton)
    assert session.panel.isRunning()
    slicer.mrmlScene.Clear(0)  # File > Close Scene: the module widget's observers call the panel
    session.pump(0.2)
    assert len(session.outcomes) == count + 1 and session.outcomes[-1].status == "cancelled"
    assert not session.panel.isRunning() and not ui.progressBar.visible
    assert ui.show3DButton.enabled is False  # its node left with the scene
    assert session.logic.workerPid is None
    assert panelSession.morseNodes() == []
    panelSession.addCt("CT2")
    session.waitUntil(lambda: session.ui.applyButton.enabled, 5, "Apply enabled for the new volume")
    assert ui.applyButton.text == "Apply"


def test_report_the_event_loop(session, report):
    report["whole_session"] = session.heartbeat.summary()
    logging.info("MORSE real-Qt session: %s", report)
    assert report["whole_session"]["ticks"] > 100  # the loop ran throughout
    assert QtCore.QCoreApplication.instance() is not None
