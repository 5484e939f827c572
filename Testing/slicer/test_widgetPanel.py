"""The panel's control flow (MORSESegmentationLib.widget) with fake widgets and real MRML nodes.

Real Qt is not available here: the widgets are the plain-Python fakes of slicerFakes.py (built from the .ui), the
parameter-node ↔ widget binding (connectGui) is not exercised, and the background worker is a fake that replays the
worker protocol around an in-process engine run (the real worker process is tested in test_backgroundRun.py).
"""

from __future__ import annotations

import shutil
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
from morse.errors import CancelledError
from morse.inference.pipeline import segment_volume
from MORSESegmentationLib.backgroundRun import WorkerError, WorkerEvent
from MORSESegmentationLib.parameters import Preferences
from MORSESegmentationLib.volumeArrays import addVolumeFromArray
from MORSESegmentationLib.widget import FROM_DISK_KEY, MORSESegmentationPanel
from slicerFakes import Recorder, fakeUi

from MORSESegmentation import MORSESegmentationLogic

UI_FILE = Path(__file__).resolve().parents[2] / "MORSESegmentation" / "Resources" / "UI" / "MORSESegmentation.ui"


class FakeWorker:
    """Replays the worker protocol one event per poll; the result is computed in-process at start()."""

    instances: typing.ClassVar[list] = []
    fail: str | None = None

    def __init__(self, volume, ijkToRas, model, device, refine, gating, uncertainty, mapsUint8):
        self.args = dict(
            volume=volume,
            ijkToRas=ijkToRas,
            model=model,
            device=device,
            refine=refine,
            gating=gating,
            uncertainty=uncertainty,
        )
        self.cancelled = self.cleaned = False
        self._events = []
        FakeWorker.instances.append(self)

    def start(self):
        a = self.args
        self._result = segment_volume(
            a["volume"], a["ijkToRas"], a["model"], "cpu", a["refine"], a["gating"], a["uncertainty"]
        )
        self._events = [WorkerEvent("started"), WorkerEvent("device", data={"device": "cpu"})]
        self._events += [WorkerEvent("progress", stage="segmenting", fraction=f) for f in (0.0, 0.5, 1.0)]
        self._events += [WorkerEvent("error", text=FakeWorker.fail)] if FakeWorker.fail else [WorkerEvent("done")]
        self._events += [WorkerEvent("exit", data={"returncode": 2 if FakeWorker.fail else 0})]

    def poll(self):
        return [self._events.pop(0)] if self._events else []

    def isRunning(self):
        return bool(self._events)

    def cancel(self):
        self.cancelled = True
        self._events = [WorkerEvent("exit", data={"returncode": -15})]

    def result(self):
        if self.cancelled:
            raise CancelledError()
        if FakeWorker.fail:
            raise WorkerError(FakeWorker.fail)
        return self._result

    def cleanup(self):
        self.cleaned = True


@pytest.fixture
def env(monkeypatch, tmp_path, tinyPack):
    """Bundled models = the tiny pack as default; a fake application; recorded error dialogs."""
    from morse.modelpack import DEFAULT_MODEL_ID

    shutil.copytree(tinyPack, tmp_path / "models" / DEFAULT_MODEL_ID)
    monkeypatch.setenv("MORSE_MODELS", str(tmp_path / "models"))
    dialogs = []
    app = types.SimpleNamespace(
        setOverrideCursor=lambda c: None,
        restoreOverrideCursor=lambda: None,
        testingEnabled=lambda: True,
        processEvents=lambda: None,
    )
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: dialogs.append(text))
    FakeWorker.instances, FakeWorker.fail = [], None
    yield types.SimpleNamespace(dialogs=dialogs, tmp=tmp_path)
    while PANELS:  # what the module widget's cleanup() does when Slicer closes
        PANELS.pop().cleanup()


PANELS: list = []


def makePanel(logic=None):
    ui = fakeUi(UI_FILE)
    panel = MORSESegmentationPanel(None, ui, logic or MORSESegmentationLogic(), Preferences(), FakeWorker)
    panel.initializeParameterNode()
    PANELS.append(panel)
    return panel, ui


def addCt(name="CT"):
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(8, 32, 40))
    return addVolumeFromArray(volume, ijkToRas, name)


def closeScene(panel):
    """What the module widget does around File > Close Scene."""
    panel.onSceneStartClose()
    slicer.mrmlScene.Clear(0)
    panel.initializeParameterNode()


def runToEnd(panel):
    for _ in range(100):
        if not panel.isRunning():
            return
        panel._timer.fire()
    raise AssertionError("the run did not finish")


def test_apply_needs_an_input_and_picks_an_image_volume(env):
    panel, ui = makePanel()
    assert [ui.modelComboBox.itemData(i) for i in range(ui.modelComboBox.count)] == ["default", FROM_DISK_KEY]
    assert ui.modelComboBox.itemText(0).endswith("(default)")
    assert not ui.applyButton.enabled and ui.applyButton.toolTip == "Select an input volume."
    addVolumeFromArray(np.zeros((2, 4, 4), np.uint8), np.eye(4), "labels", "vtkMRMLLabelMapVolumeNode")
    ct = addCt()
    panel.initializeParameterNode()
    assert panel._parameterNode.inputVolume is ct  # the label map is skipped
    assert ui.applyButton.enabled and ui.applyButton.text == "Apply"
    assert "tiny-test 0.0.1" in ui.modelStatusLabel.text


def test_apply_runs_in_the_background_and_creates_the_outputs(env):
    addCt()
    panel, ui = makePanel()
    ui.applyButton.click()
    assert panel.isRunning() and panel._timer.isActive()
    assert ui.applyButton.text == "Cancel" and ui.applyButton.enabled
    assert ui.progressBar.visible
    worker = FakeWorker.instances[-1]
    assert worker.args["model"] == "default" and worker.args["device"] == "auto"
    panel._timer.fire()
    panel._timer.fire()
    panel._timer.fire()
    panel._timer.fire()  # progress segmenting 0.5
    assert ui.progressBar.format == "segmenting %p%" and ui.progressBar.value == 500
    assert ui.deviceStatusLabel.text == "Running on cpu."
    runToEnd(panel)
    assert not panel._timer.isActive() and not ui.progressBar.visible
    assert ui.applyButton.text == "Apply"
    names = {n.GetName() for n in slicer.util.getNodesByClass("vtkMRMLSegmentationNode")}
    assert names == {"CT MORSE", "CT MORSE experts", "CT MORSE rectified"}
    assert ui.show3DButton.segmentationNode.GetName() == "CT MORSE"
    assert any(line.startswith("Done in") for line in ui.logTextEdit.lines)
    assert worker.cleaned
    assert panel._parameterNode.outputSegmentation is None  # a second Apply makes new nodes, never overwrites
    ui.applyButton.click()
    runToEnd(panel)
    assert slicer.mrmlScene.GetFirstNodeByName("CT MORSE 2") is not None


def test_cancel_restores_the_panel_and_adds_nothing(env):
    addCt()
    panel, ui = makePanel()
    count = slicer.mrmlScene.GetNumberOfNodes()
    ui.applyButton.click()
    ui.applyButton.click()  # "Cancel"
    runToEnd(panel)
    assert FakeWorker.instances[-1].cancelled and FakeWorker.instances[-1].cleaned
    assert slicer.mrmlScene.GetNumberOfNodes() == count
    assert "Cancelled; nothing was added to the scene." in ui.logTextEdit.lines
    assert ui.applyButton.text == "Apply" and not ui.progressBar.visible


def test_worker_error_is_shown(env):
    addCt()
    FakeWorker.fail = "simulated engine error"
    panel, ui = makePanel()
    count = slicer.mrmlScene.GetNumberOfNodes()
    ui.applyButton.click()
    runToEnd(panel)
    assert env.dialogs and "simulated engine error" in env.dialogs[-1]
    assert slicer.mrmlScene.GetNumberOfNodes() == count
    assert ui.applyButton.text == "Apply"


def test_declined_dependencies_start_nothing(env):
    addCt()
    fake = Recorder(missing=["monai"], answer=False)
    panel, ui = makePanel(MORSESegmentationLogic(dependencies=fake.installer()))
    ui.applyButton.click()
    assert not panel.isRunning() and FakeWorker.instances == []
    assert any("nothing was installed" in line for line in ui.logTextEdit.lines)
    assert ui.applyButton.text == "Apply" and ui.applyButton.enabled


def test_model_from_disk_is_validated_and_remembered(env, tinyPack):
    addCt()
    panel, ui = makePanel()
    ui.modelComboBox.currentIndex = 1  # "Load from disk…"
    assert ui.modelPathLineEdit.visible
    bad = env.tmp / "bad"
    bad.mkdir()
    (bad / "net.pth").write_bytes(b"x")
    ui.modelPathLineEdit.currentPath = str(bad)
    assert "pickle" in ui.modelStatusLabel.text and ui.modelStatusLabel.styleSheet.startswith("color: #c6")
    assert not ui.applyButton.enabled and "Choose a valid model" in ui.applyButton.toolTip
    ui.modelPathLineEdit.currentPath = str(tinyPack)
    assert ui.applyButton.enabled and panel._parameterNode.model == str(tinyPack)
    assert Preferences().lastModelFolder == str(tinyPack)
    ui.modelComboBox.currentIndex = 0
    assert not ui.modelPathLineEdit.visible and panel._parameterNode.model == "default"
    # a new scene: the parameter node forgets, the preference brings the folder back when "Load from disk…" is chosen
    closeScene(panel)
    ui.modelComboBox.currentIndex = 1
    assert panel._parameterNode.model == str(tinyPack)


def test_device_preference_follows_the_user(env):
    panel, ui = makePanel()
    assert "CUDA GPU if there is one" in ui.deviceStatusLabel.text
    panel._parameterNode.device = "cuda"
    assert Preferences().device == "cuda"
    assert "falls back to the CPU" in ui.deviceStatusLabel.text
    closeScene(panel)
    assert panel._parameterNode.device == "cuda"  # a new scene starts from the preference
    assert Preferences().device == "cuda"
    panel2, _ = makePanel()  # and so does a new session
    assert panel2._parameterNode.device == "cuda"


def test_scene_close_cancels_a_running_segmentation(env):
    addCt()
    panel, ui = makePanel()
    ui.applyButton.click()
    panel.onSceneStartClose()
    assert FakeWorker.instances[-1].cancelled and FakeWorker.instances[-1].cleaned
    assert not panel.isRunning() and not panel._timer.isActive()
