"""A PythonQt-style ``qt`` module over PySide6, so that Slicer-facing code written for PythonQt runs on real Qt.

3D Slicer exposes Qt to Python through PythonQt, whose idioms differ from PySide's:

- Qt properties read and write as attributes: ``button.enabled = False``, ``label.text``, ``combo.count`` (an int,
  not a method: a property shadows a method of the same name), ``widget.name`` for ``objectName``.
- Signals connect by C++ signature: ``button.connect("clicked(bool)", slot)``; the slot gets exactly the
  signature's arguments (``"clicked()"`` calls it with none).
- ``qt.<Class>`` names every Qt class; ``qt.Qt`` holds the enums.

Every Qt object handed to the caller is wrapped in a :class:`QtProxy` that gives it those idioms; arguments going
back into Qt are unwrapped. Objects created inside Qt (a scroll bar returned by ``verticalScrollBar()``, the children
of a loaded ``.ui``) get the same wrapper, so the code under test never sees a bare PySide object. Only what MORSE's
module uses is covered; anything else raises ``AttributeError`` rather than guessing.
"""

from __future__ import annotations

import inspect
import re
import types
import weakref

from PySide6 import QtCore, QtGui, QtWidgets

_SIGNATURE = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")
# Weak: a proxy must not keep a Qt object alive (a parentless QTimer would fire after its owner is gone). Python
# attributes set through a proxy live on the PySide object, so they survive a new proxy.
_PROXIES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def unwrap(value):
    """The PySide object behind a proxy (lists and tuples element-wise); anything else unchanged."""
    if isinstance(value, QtProxy):
        return object.__getattribute__(value, "_obj")
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(unwrap(v) for v in value)
    return value


def wrap(value):
    """A proxy for a Qt object (one per object, so ``is`` and ``==`` behave); lists element-wise; others as is."""
    if isinstance(value, QtCore.QObject):
        key = id(value)
        proxy = _PROXIES.get(key)
        if proxy is None or object.__getattribute__(proxy, "_obj") is not value:
            proxy = QtProxy._make(value)
            _PROXIES[key] = proxy
        return proxy
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def _callable(function):
    def call(*args, **kwargs):
        return wrap(function(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()}))

    call.__name__ = getattr(function, "__name__", "call")
    call.__doc__ = getattr(function, "__doc__", None)
    return call


def parseSignature(signature: str) -> tuple[str, list[str]]:
    """``"currentIndexChanged(int)"`` → ``("currentIndexChanged", ["int"])``."""
    match = _SIGNATURE.match(signature)
    if not match:
        raise ValueError(f"not a Qt signal signature: {signature!r} (expected 'name(type, ...)')")
    arguments = [a.strip() for a in match.group(2).split(",") if a.strip()]
    return match.group(1), arguments


def _argumentCount(slot) -> int | None:
    """How many positional arguments ``slot`` accepts (None: any number)."""
    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for p in parameters:
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class QtProxy:
    """A Qt object seen the way PythonQt shows it (see the module docstring)."""

    __slots__ = ("__weakref__", "_obj")

    @classmethod
    def _make(cls, obj):
        proxy = object.__new__(cls)
        object.__setattr__(proxy, "_obj", obj)
        return proxy

    def _connections(self) -> dict:
        obj = object.__getattribute__(self, "_obj")
        table = obj.__dict__.get("_pythonQtConnections")
        if table is None:
            table = obj.__dict__["_pythonQtConnections"] = {}
        return table

    # -- attributes ------------------------------------------------------------------------------------------------

    def _isProperty(self, name: str) -> bool:
        obj = object.__getattribute__(self, "_obj")
        return obj.metaObject().indexOfProperty(name) >= 0

    def __getattr__(self, name):
        obj = object.__getattribute__(self, "_obj")
        if name == "name":
            return obj.objectName()
        if not name.startswith("_") and obj.metaObject().indexOfProperty(name) >= 0:
            return wrap(obj.property(name))
        value = getattr(obj, name)
        if isinstance(value, QtCore.SignalInstance):
            return value
        if inspect.isroutine(value):
            return _callable(value)
        return wrap(value)

    def __setattr__(self, name, value):
        obj = object.__getattribute__(self, "_obj")
        if name == "name":
            obj.setObjectName(value)
        elif not name.startswith("_") and obj.metaObject().indexOfProperty(name) >= 0:
            if not obj.setProperty(name, unwrap(value)):
                raise AttributeError(f"{obj.metaObject().className()}.{name} could not be set to {value!r}")
        else:
            obj.__dict__[name] = value  # PythonQt keeps Python attributes on the wrapped object

    def __eq__(self, other):
        return unwrap(self) is unwrap(other)

    def __hash__(self):
        return id(unwrap(self))

    def __repr__(self):
        obj = object.__getattribute__(self, "_obj")
        return f"<qt.{obj.metaObject().className()} '{obj.objectName()}'>"

    # -- PythonQt's string-signature connections -------------------------------------------------------------------

    def connect(self, signature: str, slot, *rest) -> bool:
        """``obj.connect("signal(types)", callable)``, or ``(..., receiver, "slot(types)")`` as in C++."""
        if rest:
            slot = getattr(slot, parseSignature(rest[0])[0])
        obj = object.__getattribute__(self, "_obj")
        name, arguments = parseSignature(signature)
        signal = getattr(obj, name, None)
        if not isinstance(signal, QtCore.SignalInstance):
            raise AttributeError(f"{obj.metaObject().className()} has no signal {signature!r}")
        wanted = len(arguments)
        accepted = _argumentCount(slot)
        passed = wanted if accepted is None else min(wanted, accepted)

        def relay(*values):
            slot(*wrap(list(values[:passed])))

        signal.connect(relay)
        self._connections().setdefault((name, slot), []).append((signal, relay))
        return True

    def disconnect(self, signature: str, slot=None) -> bool:
        name, _ = parseSignature(signature)
        table = self._connections()
        keys = [k for k in table if k[0] == name and (slot is None or k[1] == slot)]
        for key in keys:
            for signal, relay in table.pop(key):
                signal.disconnect(relay)
        return bool(keys)


class _ClassMeta(type):
    """``qt.QTimer.singleShot``, ``qt.QFile.ReadOnly``...: class-level names forwarded to the PySide class."""

    def __getattr__(cls, name):
        value = getattr(cls._qtClass, name)
        if inspect.isroutine(value):
            return _callable(value)
        return value

    def __instancecheck__(cls, instance):
        return isinstance(unwrap(instance), cls._qtClass)


def qtClass(qtClass: type, name: str | None = None) -> type:
    """A ``qt.<Name>`` class: calling it builds the PySide object and returns its proxy."""

    def __new__(cls, *args, **kwargs):  # noqa: N807
        return wrap(qtClass(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()}))

    return _ClassMeta(name or qtClass.__name__, (), {"_qtClass": qtClass, "__new__": __new__})


# The classes MORSE's module and slicer.util touch.
_CLASSES = [
    QtCore.QObject,
    QtCore.QTimer,
    QtCore.QFile,
    QtCore.QBuffer,
    QtCore.QEventLoop,
    QtCore.QSize,
    QtCore.QPoint,
    QtGui.QColor,
    QtGui.QPixmap,
    QtGui.QTextCursor,
    QtWidgets.QWidget,
    QtWidgets.QFrame,
    QtWidgets.QLabel,
    QtWidgets.QPushButton,
    QtWidgets.QToolButton,
    QtWidgets.QCheckBox,
    QtWidgets.QComboBox,
    QtWidgets.QLineEdit,
    QtWidgets.QPlainTextEdit,
    QtWidgets.QProgressBar,
    QtWidgets.QScrollBar,
    QtWidgets.QTableWidget,
    QtWidgets.QTableWidgetItem,  # not a QObject: handed out as it is (PythonQt's methods, no properties)
    QtWidgets.QVBoxLayout,
    QtWidgets.QHBoxLayout,
    QtWidgets.QFormLayout,
    QtWidgets.QSizePolicy,
    QtWidgets.QMessageBox,
    QtWidgets.QApplication,
]


def makeQtModule(settingsClass, uiLoaderClass) -> types.ModuleType:
    """The ``qt`` module: ``settingsClass`` stands for ``QSettings`` (tests keep settings in memory, never in the
    user's files); ``uiLoaderClass`` is the ``QUiLoader`` that knows the Slicer widget stand-ins."""
    qt = types.ModuleType("qt")
    qt.__doc__ = "PythonQt-style Qt for MORSE's tests: PySide6 behind a wrapper (see Testing/qt/pythonQt.py)."
    for cls in _CLASSES:
        setattr(qt, cls.__name__, qtClass(cls))
    qt.QUiLoader = qtClass(uiLoaderClass, "QUiLoader")
    qt.QSettings = settingsClass
    qt.Qt = QtCore.Qt
    qt.IS_REAL_QT = True
    return qt
