"""The real-Qt tier's Slicer: PySide6 widgets behind the PythonQt-style ``qt`` module, slicer-core's MRML scene.

:func:`activate` (per test, through pytest's ``monkeypatch``, so that the plain Slicer tier in the same process keeps
its own stand-ins) puts in place:

- ``qt`` (``sys.modules`` and the module globals that imported it) = :mod:`pythonQt` with the widgets of
  :mod:`slicerWidgets`; settings stay in memory (the Slicer tier's ``QSettings`` stand-in);
- ``slicer.app``: the ``QApplication`` seen through the adapter, plus ``testingEnabled()`` as Slicer has it;
- ``ScriptedLoadableModuleWidget``: a real ``QWidget`` parent with a layout, ``resourcePath`` and ``isEntered``;
- the parameter node wrapper's ``connectGui`` / ``disconnectGui``: widgets with a ``SlicerParameterName`` follow
  the parameter node and the other way round (check boxes, choice combo boxes, node combo boxes).
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pythonQt
import slicer
import slicerStandIns
import slicerWidgets
import vtk
from PySide6 import QtWidgets

QT = pythonQt.makeQtModule(slicerStandIns._QSettings, slicerWidgets.UiLoader)


def application() -> QtWidgets.QApplication:
    """The process's QApplication (created once)."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["morse-qt-tests"])
    app.__dict__["testingEnabled"] = lambda: True
    return app


# -- ScriptedLoadableModuleWidget on real Qt ---------------------------------------------------------------------------


def _moduleWidgetInit(self, parent=None):
    if parent is None:
        parent = QT.QWidget()
        parent.setLayout(QT.QVBoxLayout())
    self.parent = parent
    self.parent.isEntered = True
    self.layout = parent.layout()
    self.moduleName = type(self).__name__[: -len("Widget")]
    self.developerMode = False


def _resourcePath(self, filename):
    return str(Path(inspect.getfile(type(self))).resolve().parent / "Resources" / filename)


# -- connectGui --------------------------------------------------------------------------------------------------------


class _GuiBinding:
    """Two-way binding of one parameter node to the widgets of ``gui`` that name a parameter."""

    def __init__(self, wrapper, gui):
        self.wrapper = wrapper
        self.pairs = []
        self.updating = False
        for widget in vars(gui).values():
            if not isinstance(widget, pythonQt.QtProxy):
                continue
            name = widget.property("SlicerParameterName")
            if name:
                self._bind(str(name), widget)
        self.tag = wrapper.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda *_a: self.toGui())
        self.toGui()

    def _bind(self, name, widget):
        parameter = type(self.wrapper).allParameters[name]
        raw = pythonQt.unwrap(widget)
        if isinstance(raw, slicerWidgets.QMRMLNodeComboBox):
            signal, read = raw.currentNodeChanged, raw.currentNode
        elif isinstance(raw, QtWidgets.QCheckBox):
            signal, read = raw.toggled, raw.isChecked
        elif isinstance(raw, QtWidgets.QComboBox):
            choices = next(v.choices for v in parameter.validators if hasattr(v, "choices"))
            raw.clear()
            raw.addItems([str(c) for c in choices])
            signal, read = raw.currentTextChanged, raw.currentText
        else:
            raise TypeError(f"connectGui stand-in: no binding for a {type(raw).__name__} ({name})")

        def fromGui(*_args):
            if not self.updating:
                setattr(self.wrapper, name, read())

        signal.connect(fromGui)
        self.pairs.append((name, raw, signal, fromGui))

    def toGui(self):
        self.updating = True
        try:
            for name, raw, _signal, _slot in self.pairs:
                value = getattr(self.wrapper, name)
                if isinstance(raw, slicerWidgets.QMRMLNodeComboBox):
                    raw.setCurrentNode(value)
                elif isinstance(raw, QtWidgets.QCheckBox):
                    raw.setChecked(bool(value))
                else:
                    raw.setCurrentIndex(raw.findText(str(value)))
        finally:
            self.updating = False

    def disconnect(self):
        self.wrapper.parameterNode.RemoveObserver(self.tag)
        for _name, _raw, signal, slot in self.pairs:
            signal.disconnect(slot)


def _connectGui(self, gui):
    return _GuiBinding(self, gui)


def _disconnectGui(self, tag):
    if tag is not None:
        tag.disconnect()


# -- activation --------------------------------------------------------------------------------------------------------


def activate(monkeypatch) -> None:
    """Switch this test to real Qt (undone by ``monkeypatch`` at the end of the test)."""
    from MORSESegmentationLib import widget as panelmodule
    from MORSESegmentationLib.parameters import MORSESegmentationParameterNode

    app = application()
    monkeypatch.setitem(sys.modules, "qt", QT)
    monkeypatch.setattr(panelmodule, "qt", QT)
    monkeypatch.setattr(slicer, "app", pythonQt.wrap(app), raising=False)
    moduleWidget = slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget
    monkeypatch.setattr(moduleWidget, "__init__", _moduleWidgetInit)
    monkeypatch.setattr(moduleWidget, "setup", lambda self: None, raising=False)
    monkeypatch.setattr(moduleWidget, "resourcePath", _resourcePath, raising=False)
    monkeypatch.setattr(moduleWidget, "onReload", lambda self: None, raising=False)
    monkeypatch.setattr(MORSESegmentationParameterNode, "connectGui", _connectGui)
    monkeypatch.setattr(MORSESegmentationParameterNode, "disconnectGui", _disconnectGui)
