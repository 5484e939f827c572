"""Static checks of Resources/UI/MORSESegmentation.ui against the Python code that uses it (no Qt needed)."""

from __future__ import annotations

import re
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import slicer
from MORSESegmentationLib.parameters import MORSESegmentationParameterNode

MODULE_DIR = Path(__file__).resolve().parents[2] / "MORSESegmentation"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "MORSESegmentation.ui"
PYTHON_FILES = [MODULE_DIR / "MORSESegmentation.py", MODULE_DIR / "MORSESegmentationLib" / "widget.py"]


def widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def stringProperty(widget: ET.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            child = next(iter(prop))
            if child.tag == "stringlist":
                return [s.text for s in child.findall("string")]
            return child.text
    return None


def test_every_widget_the_code_uses_exists_in_the_ui():
    names = set(widgets())
    used = set()
    for path in PYTHON_FILES:
        used |= set(re.findall(r"\bui\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text(encoding="utf-8")))
    assert used, "the code should use widgets of the .ui"
    missing = sorted(used - names)
    assert not missing, f"used in Python but not in {UI_FILE.name}: {missing}"
    # the widgets the contract requires
    for required in (
        "inputVolumeSelector",
        "outputSegmentationSelector",
        "modelComboBox",
        "modelPathLineEdit",
        "modelStatusLabel",
        "deviceComboBox",
        "deviceStatusLabel",
        "applyButton",
        "progressBar",
        "logTextEdit",
        "refineCheckBox",
        "gatingCheckBox",
        "uncertaintyCheckBox",
        "replaceExistingCheckBox",
        "postprocessCheckBox",
        "intendedUseLabel",
        "resultNotesLabel",
    ):
        assert required in names, required


def test_user_visible_strings_of_the_panel_are_translatable():
    """Text the panel puts on widgets, in the log or in dialogs goes through ``_()`` (slicer.i18n.tr)."""
    source = (MODULE_DIR / "MORSESegmentationLib" / "widget.py").read_text(encoding="utf-8")
    assert "from slicer.i18n import tr as _" in source
    bare = re.findall(
        r"(?:\.(?:text|toolTip)\s*=\s*|(?:_panelLog|errorDisplay|addItem)\(\s*)f?[\"'][^\"']*?[A-Za-z]{2}", source
    )
    assert not bare, f"literal strings shown without _(): {bare}"
    assert len(re.findall(r"\b_\(", source)) >= 30


def test_root_is_a_mrml_widget_and_selectors_get_the_scene():
    root = ET.parse(UI_FILE).getroot()
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "MORSESegmentation"
    comboBoxes = {n for n, w in widgets().items() if w.get("class") == "qMRMLNodeComboBox"}
    connected = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("sender") == "MORSESegmentation"
        and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    assert comboBoxes == {"inputVolumeSelector", "outputSegmentationSelector"}
    assert comboBoxes <= connected
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in widgets().values() if w.get("class").startswith(("q", "ctk"))}
    assert used <= declared


def test_parameter_bindings_match_the_parameter_node():
    """Each SlicerParameterName names a parameter, on a widget type that Slicer's connectGui can bind to it."""
    hints = typing.get_type_hints(MORSESegmentationParameterNode, include_extras=True)
    bound = {}
    for widget in widgets().values():
        parameter = stringProperty(widget, "SlicerParameterName")
        if parameter:
            bound[parameter] = widget
    assert set(bound) == set(hints) - {"model"}  # the model is set by code (combo box + path field)
    for parameter, widget in bound.items():
        hint = hints[parameter]
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        cls = widget.get("class")
        if isinstance(base, type) and issubclass(base, slicer.vtkMRMLNode):
            assert cls == "qMRMLNodeComboBox", parameter
            assert stringProperty(widget, "nodeTypes") == [base.__name__], parameter
        elif base is bool:
            assert cls == "QCheckBox", parameter
        elif base is str:
            assert cls == "QComboBox", parameter
            assert typing.get_origin(hint) is typing.Annotated  # Choice(...) fills the combo box
        else:
            raise AssertionError(f"unexpected parameter type {hint} for {parameter}")


def test_input_selector_excludes_label_maps_and_output_can_be_empty():
    w = widgets()
    assert stringProperty(w["inputVolumeSelector"], "showChildNodeTypes") == "false"
    assert stringProperty(w["outputSegmentationSelector"], "noneEnabled") == "true"
    assert stringProperty(w["outputSegmentationSelector"], "noneDisplay") == "Create new segmentation"


def test_log_is_read_only_and_capped():
    log = widgets()["logTextEdit"]
    assert log.get("class") == "QPlainTextEdit"
    assert stringProperty(log, "readOnly") == "true"
    assert 100 <= int(stringProperty(log, "maximumBlockCount")) <= 10000


def test_model_folder_picker_selects_folders():
    picker = widgets()["modelPathLineEdit"]
    assert picker.get("class") == "ctkPathLineEdit"
    filters = next(p for p in picker.findall("property") if p.get("name") == "filters").findtext("set")
    assert "ctkPathLineEdit::Dirs" in filters and "Files" not in filters
