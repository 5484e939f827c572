"""The panel on real Qt without a run: what the .ui, the stand-ins and the PythonQt-style adapter give the panel."""

from __future__ import annotations

import json

import panelSession
import pytest
import pythonQt
import slicer
from PySide6 import QtWidgets


@pytest.fixture
def session(emptyScene, defaultIsTiny):
    s = panelSession.Session()
    yield s
    s.close()


def test_adapter_speaks_pythonqt(session):
    ui = session.ui
    button = ui.applyButton
    assert isinstance(button.text, str) and button.text == "Apply"  # a property, not a method
    button.toolTip = "x"
    assert pythonQt.unwrap(button).toolTip() == "x"
    assert ui.modelComboBox.count == 2 and ui.modelComboBox.name == "modelComboBox"
    seen = []
    ui.clearLogButton.connect("clicked()", lambda *args: seen.append(args))
    session.click(ui.clearLogButton)
    assert seen == [()]  # the signature's arguments, here none
    with pytest.raises(AttributeError):
        button.connect("noSuchSignal()", print)


def test_ui_loads_with_the_slicer_widgets_bound_to_the_scene(session):
    ui = session.ui
    assert ui.inputVolumeSelector.mrmlScene() is slicer.mrmlScene  # through the .ui's connections
    assert ui.outputSegmentationSelector.mrmlScene() is slicer.mrmlScene
    assert ui.outputSegmentationSelector.currentText == "Create new segmentation"
    assert ui.advancedCollapsibleButton.collapsed and not ui.deviceComboBox.visible
    assert [ui.deviceComboBox.itemText(i) for i in range(ui.deviceComboBox.count)][:2] == ["auto", "cpu"]
    assert ui.show3DButton.enabled is False
    assert not ui.applyButton.enabled and ui.applyButton.toolTip == "Select an input volume."
    labels = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    assert labels is not None and ui.inputVolumeSelector.currentNode() is None  # label maps are not offered
    ct = panelSession.addCt()
    session.pump(0.05)
    assert ui.inputVolumeSelector.currentNode() is ct  # the selector picks it, the parameter node follows
    assert session.panel._parameterNode.inputVolume is ct and ui.applyButton.enabled


def test_check_boxes_are_bound_to_the_parameter_node(session):
    ui, params = session.ui, session.panel._parameterNode
    assert ui.postprocessCheckBox.checked and params.postprocess
    session.click(ui.postprocessCheckBox)
    assert params.postprocess is False
    params.refine = False
    assert ui.refineCheckBox.checked is False


def test_intended_use_is_shown(session, defaultIsTiny):
    from morse.modelpack import DEFAULT_MODEL_ID

    metaPath = defaultIsTiny / DEFAULT_MODEL_ID / "model.json"
    original = metaPath.read_text(encoding="utf-8")
    text = "Research use only; tested on synthetic ellipses."
    metaPath.write_text(json.dumps({**json.loads(original), "intended_use": text}), encoding="utf-8")
    try:
        session.panel.populateModels()
        session.panel._updateModelWidgets()
        assert session.ui.intendedUseLabel.visible and text in session.ui.intendedUseLabel.text
    finally:
        metaPath.write_text(original, encoding="utf-8")


def test_show_3d_forgets_a_closed_scene(session):
    ct = panelSession.addCt()
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "result")
    session.ui.show3DButton.setSegmentationNode(segmentation)  # what a finished run does
    assert session.ui.show3DButton.enabled and ct is not None
    slicer.mrmlScene.Clear(0)
    session.pump(0.05)
    assert session.ui.show3DButton.enabled is False


def test_log_keeps_the_newest_line_in_view(session):
    ui = session.ui
    for i in range(80):
        session.panel.log(f"line {i}")
    session.pump(0.05)
    ui.progressBar.show()  # as a run starts: the log box must keep its height and its last line
    session.pump(0.05)
    bar = ui.logTextEdit.verticalScrollBar()
    # Off the bottom, as a shrinking box or a look back up leaves it: Qt's own append would not follow from here.
    bar.value = bar.maximum // 2
    session.pump(0.05)
    session.panel.log("newest")
    session.pump(0.05)
    assert bar.maximum > 0 and bar.value == bar.maximum
    box = pythonQt.unwrap(ui.logTextEdit)
    last = box.cursorForPosition(box.viewport().rect().bottomLeft()).block().text()
    assert last in ("newest", "line 79")
    assert isinstance(box, QtWidgets.QPlainTextEdit)
