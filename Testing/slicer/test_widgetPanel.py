"""The panel's control flow (MORSESegmentationLib.widget) with fake widgets, the real logic and real MRML nodes.

The widgets are the plain-Python fakes of slicerFakes.py (built from the .ui); connectGui does not bind them here.
The worker is :class:`InProcessWorker`: the warm worker's interface (submit, poll, kill) around an in-process engine
run, one protocol event per poll, so that the logic's own run code (WorkerRun, progress, import) is what runs. The
real worker process and real Qt are driven in Testing/qt.
"""

from __future__ import annotations

import json
import shutil
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
from morse.inference.pipeline import segment_volume
from morse.inference.worker import write_result
from MORSESegmentationLib.backgroundRun import WorkerEvent
from MORSESegmentationLib.parameters import Preferences
from MORSESegmentationLib.volumeArrays import addVolumeFromArray
from MORSESegmentationLib.widget import FROM_DISK_KEY, MORSESegmentationPanel
from slicerFakes import Recorder, fakeUi

from MORSESegmentation import MORSESegmentationLogic

UI_FILE = Path(__file__).resolve().parents[2] / "MORSESegmentation" / "Resources" / "UI" / "MORSESegmentation.ui"


class InProcessWorker:
    """Stands for :class:`~MORSESegmentationLib.backgroundRun.WarmWorker`; ``fail`` makes the engine report an
    error instead of a result."""

    instances: typing.ClassVar[list] = []
    fail: str | None = None

    def __init__(self):
        self.requests: list[dict] = []
        self.killed = False
        self._run = None
        self._events: list[WorkerEvent] = []
        InProcessWorker.instances.append(self)

    pid = 4242

    def isAlive(self):
        return not self.killed

    def submit(self, run):
        run.requestID = str(len(self.requests) + 1)
        request = json.loads(run.requestPath.read_text(encoding="utf-8"))
        self.requests.append(request)
        self._run = run
        ids = {"id": run.requestID}
        events = [WorkerEvent("device", data={**ids, "device": "cpu"})]
        events += [WorkerEvent("progress", stage="segmenting", fraction=f, data=ids) for f in (0.0, 0.5, 1.0)]
        if InProcessWorker.fail:
            events.append(WorkerEvent("error", text=InProcessWorker.fail, data=ids))
        else:
            volume = np.load(run.workDir / request["input"])
            result = segment_volume(
                volume, np.asarray(request["ijk_to_ras"]), request["model"], "cpu", review=request["review"]
            )
            out = write_result(result, run.workDir / request["output"])
            events.append(WorkerEvent("done", data={**ids, "output": str(out)}))
        self._events = events

    def poll(self):
        if self._events and self._run is not None:
            event = self._events.pop(0)
            self._run._record(event)
            if event.kind in ("done", "error", "exit"):
                self._run._ended = True

    def kill(self):
        self.killed = True
        self._events = []
        if self._run is not None:
            self._run._record(WorkerEvent("exit", data={"returncode": -15}))
            self._run._ended = True

    def shutdown(self):
        self.kill()


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
    InProcessWorker.instances, InProcessWorker.fail = [], None
    yield types.SimpleNamespace(dialogs=dialogs, tmp=tmp_path)
    while PANELS:  # what the module widget's cleanup() does when Slicer closes
        PANELS.pop().cleanup()


PANELS: list = []


def makePanel(logic=None):
    ui = fakeUi(UI_FILE)
    panel = MORSESegmentationPanel(
        None, ui, logic or MORSESegmentationLogic(workerFactory=InProcessWorker), Preferences()
    )
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


def pastDoubleClick(panel):
    """As if the double-click interval had passed since Apply."""
    panel._startedAt -= 10.0


def runToEnd(panel):
    for _ in range(100):
        if not panel.isRunning():
            return
        panel.logic.pollRun()
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
    assert panel.isRunning() and panel.logic._timer.isActive()
    assert ui.applyButton.text == "Cancel" and ui.applyButton.enabled
    assert ui.progressBar.visible and not ui.inputVolumeSelector.enabled and not ui.postprocessCheckBox.enabled
    worker = InProcessWorker.instances[-1]
    request = worker.requests[-1]
    assert request["model"] == "default" and request["device"] == "auto" and request["postprocess"] is True
    for _ in range(3):
        panel.logic.pollRun()  # device, progress 0.0, progress 0.5
    assert ui.progressBar.format == "segmenting %p%" and ui.progressBar.value == 500
    runToEnd(panel)
    assert not panel.logic._timer.isActive() and not ui.progressBar.visible
    assert ui.applyButton.text == "Apply" and ui.inputVolumeSelector.enabled
    assert ui.deviceStatusLabel.text == "Ran on cpu."
    names = {n.GetName() for n in slicer.util.getNodesByClass("vtkMRMLSegmentationNode")}
    assert names == {"CT MORSE", "CT MORSE experts", "CT MORSE rectified"}
    assert ui.show3DButton.segmentationNode.GetName() == "CT MORSE"
    assert any(line.startswith("Done in") for line in ui.logTextEdit.lines)
    assert panel._parameterNode.outputSegmentation is None  # a second Apply makes new nodes, never overwrites
    ui.applyButton.click()
    runToEnd(panel)
    assert slicer.mrmlScene.GetFirstNodeByName("CT MORSE 2") is not None


def test_cancel_restores_the_panel_and_adds_nothing(env):
    addCt()
    panel, ui = makePanel()
    count = slicer.mrmlScene.GetNumberOfNodes()
    ui.applyButton.click()
    ui.applyButton.click()  # at once: the second click of a double-click, not a Cancel
    assert panel.isRunning()
    pastDoubleClick(panel)
    ui.applyButton.click()  # "Cancel"
    runToEnd(panel)
    assert InProcessWorker.instances[-1].killed
    assert slicer.mrmlScene.GetNumberOfNodes() == count
    assert "Cancelled; nothing was added to the scene." in ui.logTextEdit.lines
    assert ui.applyButton.text == "Apply" and not ui.progressBar.visible


def test_worker_error_is_shown(env):
    addCt()
    InProcessWorker.fail = "simulated engine error"
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
    panel, ui = makePanel(MORSESegmentationLogic(dependencies=fake.installer(), workerFactory=InProcessWorker))
    ui.applyButton.click()
    assert not panel.isRunning() and InProcessWorker.instances == []
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
    assert InProcessWorker.instances[-1].killed
    assert not panel.isRunning() and not panel.logic._timer.isActive()
    assert ui.show3DButton.segmentationNode is None


def test_review_section_follows_the_runs_review_table(env):
    ct = addCt()
    panel, ui = makePanel()
    assert ui.reviewOrgansTable.rowCount == ui.reviewRegionsTable.rowCount == 0
    assert not ui.reviewRegionsTable.enabled and not ui.markReviewedButton.enabled
    assert ui.reviewSummaryLabel.text.startswith("No review yet")
    ui.applyButton.click()
    runToEnd(panel)
    table = slicer.util.getNode("CT MORSE review")
    rows = panel.logic.reviewList(table)
    organs = [r for r in rows if r["entry"] == "organ"]
    regions = [r for r in rows if r["entry"] == "region"]
    assert InProcessWorker.instances[-1].requests[-1]["review"] is True
    assert regions and ui.reviewRegionsTable.enabled
    assert [ui.reviewOrgansTable.rowTexts(i)[0] for i in range(ui.reviewOrgansTable.rowCount)] == [
        o["organ"] for o in organs
    ]
    liver = ui.reviewOrgansTable.rowTexts(0)
    assert liver[1] == f"{organs[0]['volume_ml']:.1f}" and liver[2] == f"{organs[0]['confidence']:.2f}"
    assert liver[3] == ", ".join(organs[0]["flags"])
    assert ui.reviewRegionsTable.rowTexts(0) == [
        "1",
        regions[0]["organ"],
        regions[0]["kind"],
        f"{regions[0]['volume_ml']:.1f}",
        f"{regions[0]['mean_uncertainty']:.2f}",
        "to review",
    ]
    assert "Centre (RAS)" in ui.reviewRegionsTable.item(0, 0).toolTip()

    jumps = []
    panel.logic.jumpToRegion = lambda node, rank: jumps.append((node, rank))  # the logic's own is tested alone
    ui.reviewRegionsTable.clickCell(0, 2)
    assert jumps == [(table, 1)] and ui.markReviewedButton.enabled
    ui.markCorrectedButton.click()
    assert panel.logic.reviewList(table)[len(organs)]["status"] == "corrected"  # written to the table node
    assert ui.reviewRegionsTable.rowTexts(0)[-1] == "corrected"  # and shown, the row still selected
    assert ui.reviewRegionsTable.currentRow() == 0 and "1 corrected" in ui.reviewSummaryLabel.text
    panel.logic.setReviewStatus(table, 1, "reviewed")  # from the Python console: the panel follows
    assert ui.reviewRegionsTable.rowTexts(0)[-1] == "reviewed" and "1 reviewed" in ui.reviewSummaryLabel.text

    other = addCt("Other")
    panel._parameterNode.inputVolume = other  # a volume without a run: nothing to review
    assert ui.reviewRegionsTable.rowCount == 0 and not ui.markReviewedButton.enabled
    panel._parameterNode.inputVolume = ct  # back: its latest review, statuses and all
    assert ui.reviewRegionsTable.rowTexts(0)[-1] == "reviewed"
    slicer.mrmlScene.RemoveNode(table)  # deleted in the Data module
    assert ui.reviewRegionsTable.rowCount == 0 and ui.reviewSummaryLabel.text.startswith("No review yet")
    closeScene(panel)
    assert ui.reviewOrgansTable.rowCount == 0 and panel._reviewTableNode is None
