"""Test-only stand-ins for the parts of 3D Slicer's Python API that slicer-core does not ship.

slicer-core has the real MRML/logic libraries and ``slicer.util``, but no Qt, CTK, application object,
``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper`` or ``slicer.i18n``. These small replacements
(written for MORSE's tests, behaving like the documented Slicer API where the module relies on it) let the module
file import and its logic and self-test run against real MRML nodes. Widgets are not emulated: a
ScriptedLoadableModuleWidget skips the test that tries to build one.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
import typing
import unittest

import slicer

# ----------------------------------------------------------------------------------------------------------------------
# qt / ctk: only the non-GUI classes the module touches outside widgets


class _QSettings:
    """In-memory QSettings (one store per process, like the user's settings file)."""

    _store: typing.ClassVar[dict] = {}

    def value(self, key, default=None):
        return self._store.get(key, default)

    def setValue(self, key, value):
        self._store[key] = value

    def remove(self, key):
        self._store.pop(key, None)

    @classmethod
    def clearAll(cls):
        cls._store.clear()


class _QTimer:
    """A timer that never fires by itself: tests call the connected slot (``fire``) explicitly."""

    def __init__(self):
        self.interval = 0
        self.active = False
        self._slots = []

    def setInterval(self, msec):
        self.interval = msec

    def connect(self, signal, slot):
        self._slots.append(slot)

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    def fire(self):
        for slot in list(self._slots):
            slot()


class _QTableWidgetItem:
    """A table cell's text and tool tip (the item the panel puts into its fake tables)."""

    def __init__(self, text=""):
        self._text, self._toolTip = str(text), ""

    def text(self):
        return self._text

    def setText(self, text):
        self._text = str(text)

    def toolTip(self):
        return self._toolTip

    def setToolTip(self, text):
        self._toolTip = str(text)


def _makeQt() -> types.ModuleType:
    qt = types.ModuleType("qt")
    qt.__doc__ = "MORSE test stand-in for PythonQt's qt module (settings, timer, table items; no widgets)."
    qt.QSettings = _QSettings
    qt.QTimer = _QTimer
    qt.QTableWidgetItem = _QTableWidgetItem
    qt.Qt = types.SimpleNamespace(ToolTipRole=3, WaitCursor=3)
    return qt


def _makeCtk() -> types.ModuleType:
    ctk = types.ModuleType("ctk")
    ctk.__doc__ = "MORSE test stand-in for CTK (no widgets)."
    return ctk


# ----------------------------------------------------------------------------------------------------------------------
# slicer.i18n


def _makeI18n() -> types.ModuleType:
    module = types.ModuleType("slicer.i18n")
    module.tr = lambda text: text
    module.translate = lambda context, text: text
    return module


# ----------------------------------------------------------------------------------------------------------------------
# slicer.ScriptedLoadableModule


def _makeScriptedLoadableModule() -> types.ModuleType:
    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            self.moduleName = type(self).__name__

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            raise unittest.SkipTest("module widgets need the Slicer application (Qt); not available headless")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            super().__init__()
            name = type(self).__name__
            self.moduleName = name[: -len("Logic")] if name.endswith("Logic") else name
            self.isSingletonParameterNode = True

        def getParameterNode(self):
            scene = slicer.mrmlScene
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
                node.SetSingletonTag(self.moduleName)
                node.SetAttribute("ModuleName", self.moduleName)
                node.SetName(scene.GenerateUniqueName(self.moduleName))
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, requestedDelay=None, msec=None):
            logging.info("delayDisplay: %s", message)

        def takeScreenshot(self, name, description, type=-1):
            logging.info("takeScreenshot skipped (no views): %s", name)

    for cls in (
        ScriptedLoadableModule,
        ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
    ):
        setattr(module, cls.__name__, cls)
    module.__all__ = [
        c.__name__
        for c in (
            ScriptedLoadableModule,
            ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleTest,
        )
    ]
    return module


# ----------------------------------------------------------------------------------------------------------------------
# slicer.parameterNodeWrapper: typed properties over a vtkMRMLScriptedModuleNode (no GUI connection)


@dataclasses.dataclass
class Choice:
    choices: list

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"value {value!r} is not one of {self.choices}")


@dataclasses.dataclass
class Default:
    value: object


def _isNodeType(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, slicer.vtkMRMLNode)


class _Parameter:
    def __init__(self, name, tp, default, validators):
        self.name, self.type, self.default, self.validators = name, tp, default, validators

    def read(self, node):
        if _isNodeType(self.type):
            return node.GetNodeReference(self.name)
        if self.name not in node.GetParameterNames():
            return self.default
        raw = node.GetParameter(self.name)
        if self.type is bool:
            return raw == "True"
        return self.type(raw)

    def write(self, node, value):
        if _isNodeType(self.type):
            if value is not None and not value.IsA(self.type.__name__):
                raise TypeError(f"{self.name}: a {value.GetClassName()} is not a {self.type.__name__}")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
            return
        if not isinstance(value, self.type):
            raise TypeError(f"{self.name}: expected {self.type.__name__}, got {type(value).__name__}")
        for validator in self.validators:
            validator.validate(value)
        node.SetParameter(self.name, str(value))


def parameterNodeWrapper(cls=None):
    def wrap(cls):
        hints = typing.get_type_hints(cls, include_extras=True)
        params = {}
        for name, hint in hints.items():
            tp, extras = hint, []
            if typing.get_origin(hint) is typing.Annotated:
                tp, *extras = typing.get_args(hint)
            default = getattr(cls, name, None)
            for extra in extras:
                if isinstance(extra, Default):
                    default = extra.value
            if default is None and not _isNodeType(tp):
                default = tp()
            params[name] = _Parameter(name, tp, default, [e for e in extras if hasattr(e, "validate")])

        def __init__(self, parameterNode):  # noqa: N807
            self.parameterNode = parameterNode
            for p in params.values():
                if not _isNodeType(p.type) and p.name not in parameterNode.GetParameterNames():
                    p.write(parameterNode, p.default)

        for name, p in params.items():
            setattr(
                cls,
                name,
                property(
                    lambda self, p=p: p.read(self.parameterNode),
                    lambda self, value, p=p: p.write(self.parameterNode, value),
                ),
            )
        cls.__init__ = __init__
        cls.allParameters = params
        cls.connectGui = lambda self, gui: None
        cls.disconnectGui = lambda self, tag: None
        cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback)
        cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
        return cls

    return wrap if cls is None else wrap(cls)


def _makeParameterNodeWrapper() -> types.ModuleType:
    module = types.ModuleType("slicer.parameterNodeWrapper")
    module.parameterNodeWrapper = parameterNodeWrapper
    module.Choice = Choice
    module.Default = Default
    return module


# ----------------------------------------------------------------------------------------------------------------------


def install() -> None:
    """Register the stand-ins in ``sys.modules`` (only those slicer-core lacks)."""
    for name, factory in (("qt", _makeQt), ("ctk", _makeCtk)):
        if name not in sys.modules:
            sys.modules[name] = factory()
    for attribute, factory in (
        ("i18n", _makeI18n),
        ("ScriptedLoadableModule", _makeScriptedLoadableModule),
        ("parameterNodeWrapper", _makeParameterNodeWrapper),
    ):
        fullName = f"slicer.{attribute}"
        if fullName not in sys.modules:
            sys.modules[fullName] = factory()
            setattr(slicer, attribute, sys.modules[fullName])
