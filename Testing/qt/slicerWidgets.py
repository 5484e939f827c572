"""Real-Qt stand-ins for the CTK and qMRML widgets of MORSE's ``.ui``, and a ``QUiLoader`` that builds them.

Each is a PySide6 widget written for these tests with the part of the C++ widget's behaviour the module relies on:

- ``qMRMLWidget``: ``setMRMLScene`` emits ``mrmlSceneChanged``.
- ``qMRMLNodeComboBox``: lists the scene's nodes of ``nodeTypes`` (subclasses only with ``showChildNodeTypes``), an
  optional "none" item, follows node additions/removals and scene close, and with ``noneEnabled`` false selects a
  node as soon as there is one (as Slicer's does). No add/rename/delete menu.
- ``qMRMLSegmentationShow3DButton``: disabled without a segmentation node; checking it creates the closed-surface
  representation. Like Slicer's, it does not notice its node leaving the scene.
- ``ctkCollapsibleButton``: a header button that hides/shows its children (``collapsed``).
- ``ctkPathLineEdit``: a line edit with ``currentPath`` / ``currentPathChanged``, ``filters``, ``settingKey``.
"""

from __future__ import annotations

import weakref
import xml.etree.ElementTree as ET

import pythonQt
import shiboken6
import slicer
from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets
from PySide6.QtCore import Property, Signal


class QMRMLWidget(QtWidgets.QWidget):
    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene):
        if scene is not self._scene:
            self._scene = scene
            self.mrmlSceneChanged.emit(scene)


class QMRMLNodeComboBox(QtWidgets.QComboBox):
    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._observations: list[int] = []
        self._nodeTypes: list[str] = []
        self._showChildNodeTypes = True
        self._noneEnabled = False
        self._noneDisplay = "None"
        self._flags = {"addEnabled": True, "removeEnabled": True, "renameEnabled": False, "editEnabled": False}
        self._refreshing = False
        self._currentID = ""
        self.currentIndexChanged.connect(self._onIndexChanged)
        self.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)

    # -- properties set by the .ui -------------------------------------------------------------------------------

    def _getNodeTypes(self):
        return list(self._nodeTypes)

    def _setNodeTypes(self, types):
        self._nodeTypes = [str(t) for t in types]
        self._refresh()

    nodeTypes = Property("QStringList", _getNodeTypes, _setNodeTypes)

    def _getShowChild(self):
        return self._showChildNodeTypes

    def _setShowChild(self, value):
        self._showChildNodeTypes = bool(value)
        self._refresh()

    showChildNodeTypes = Property(bool, _getShowChild, _setShowChild)

    def _getNoneEnabled(self):
        return self._noneEnabled

    def _setNoneEnabled(self, value):
        self._noneEnabled = bool(value)
        self._refresh()

    noneEnabled = Property(bool, _getNoneEnabled, _setNoneEnabled)

    def _getNoneDisplay(self):
        return self._noneDisplay

    def _setNoneDisplay(self, text):
        self._noneDisplay = str(text)
        self._refresh()

    noneDisplay = Property(str, _getNoneDisplay, _setNoneDisplay)

    def _flag(name):  # noqa: N805  (builds properties in the class body)
        return Property(bool, lambda self: self._flags[name], lambda self, v: self._flags.__setitem__(name, bool(v)))

    addEnabled = _flag("addEnabled")
    removeEnabled = _flag("removeEnabled")
    renameEnabled = _flag("renameEnabled")
    editEnabled = _flag("editEnabled")
    del _flag

    def _getCurrentNodeID(self):
        return self._currentID

    def _setCurrentNodeID(self, nodeID):
        self.setCurrentNodeID(nodeID)

    currentNodeID = Property(str, _getCurrentNodeID, _setCurrentNodeID)

    # -- scene -----------------------------------------------------------------------------------------------------

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene):
        if self._scene is not None:
            for tag in self._observations:
                self._scene.RemoveObserver(tag)
        self._observations = []
        self._scene = scene
        if scene is not None:
            # A weak callback: the scene (one per process) must not keep every combo box ever built alive.
            onEvent = weakref.WeakMethod(self._onSceneEvent)

            def callback(*args, onEvent=onEvent):
                method = onEvent()
                if method is not None:
                    method(*args)

            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent, scene.EndImportEvent):
                self._observations.append(scene.AddObserver(event, callback))
            _attached.add(self)
            tags = list(self._observations)
            # The scene outlives the widget: its observers must go with the widget.
            self.destroyed.connect(lambda *_a, scene=scene, tags=tags: [scene.RemoveObserver(t) for t in tags])
        self._refresh()

    def _onSceneEvent(self, *_args):
        if shiboken6.isValid(self):
            self._refresh()
        else:
            self._detach()

    def _detach(self) -> None:
        if self._scene is not None:
            for tag in self._observations:
                self._scene.RemoveObserver(tag)
        self._observations = []
        self._scene = None
        _attached.discard(self)

    def _accepts(self, node) -> bool:
        if node.GetHideFromEditors():
            return False
        for nodeType in self._nodeTypes:
            if node.GetClassName() == nodeType or (self._showChildNodeTypes and node.IsA(nodeType)):
                return True
        return False

    def nodes(self) -> list:
        if self._scene is None:
            return []
        found = []
        for nodeType in self._nodeTypes:
            for i in range(self._scene.GetNumberOfNodesByClass(nodeType)):
                node = self._scene.GetNthNodeByClass(i, nodeType)
                if self._accepts(node) and node not in found:
                    found.append(node)
        return found

    def _refresh(self) -> None:
        self._refreshing = True
        try:
            nodes = self.nodes()
            self.clear()
            if self._noneEnabled:
                self.addItem(self._noneDisplay, "")
            for node in nodes:
                self.addItem(node.GetName(), node.GetID())
            ids = [n.GetID() for n in nodes]
            current = self._currentID if self._currentID in ids else ""
            if not current and not self._noneEnabled and ids:
                current = ids[0]  # Slicer's combo box picks a node when "none" is not allowed
            index = self.findData(current) if current or self._noneEnabled else -1
            self.setCurrentIndex(index)
        finally:
            self._refreshing = False
        self._setCurrent(self.itemData(self.currentIndex()) or "" if self.currentIndex() >= 0 else "")

    def _onIndexChanged(self, index):
        if not self._refreshing:
            self._setCurrent(self.itemData(index) or "" if index >= 0 else "")

    def _setCurrent(self, nodeID: str) -> None:
        if nodeID == self._currentID:
            return
        self._currentID = nodeID
        self.currentNodeIDChanged.emit(nodeID)
        self.currentNodeChanged.emit(self.currentNode())

    def currentNode(self):
        return self._scene.GetNodeByID(self._currentID) if self._scene is not None and self._currentID else None

    def setCurrentNode(self, node):
        self.setCurrentNodeID(node.GetID() if node is not None else "")

    def setCurrentNodeID(self, nodeID):
        index = self.findData(nodeID or "")
        if nodeID and index < 0:
            return
        self.setCurrentIndex(index)


# Combo boxes observing a scene. In Slicer a module panel lives as long as the application; here panels are built
# per test, so a tier detaches those it leaves behind before the next tier uses the scene.
_attached: weakref.WeakSet = weakref.WeakSet()


def detachAllFromScenes() -> int:
    """Remove the scene observers of every combo box still attached; returns how many were attached."""
    boxes = list(_attached)
    for box in boxes:
        box._detach()
    return len(boxes)


class QMRMLSegmentationShow3DButton(QtWidgets.QToolButton):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._node = None
        self.setText("Show 3D")
        self.setCheckable(True)
        self.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toggled.connect(self._onToggled)
        self._update()

    def segmentationNode(self):
        return self._node

    def setSegmentationNode(self, node):
        self._node = node
        self._update()

    def _hasSurface(self) -> bool:
        if self._node is None:
            return False
        name = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
        return bool(self._node.GetSegmentation().ContainsRepresentation(name))

    def _update(self):
        self.setEnabled(self._node is not None)
        self.blockSignals(True)
        self.setChecked(self._hasSurface())
        self.blockSignals(False)

    def _onToggled(self, checked):
        if self._node is None:
            return
        if checked:
            self._node.CreateClosedSurfaceRepresentation()
        else:
            self._node.RemoveClosedSurfaceRepresentation()


class CtkCollapsibleButton(QtWidgets.QAbstractButton):
    contentsCollapsed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False
        self._hiddenByCollapse: list = []
        self.setCheckable(True)
        self.setChecked(True)
        self.toggled.connect(lambda checked: self._setCollapsed(not checked))
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Preferred, QtWidgets.QSizePolicy.Policy.Preferred)

    def _headerHeight(self) -> int:
        return self.fontMetrics().height() + 10

    def _getCollapsed(self):
        return self._collapsed

    def _setCollapsed(self, collapsed):
        collapsed = bool(collapsed)
        if collapsed == self._collapsed:
            return
        self._collapsed = collapsed
        self.blockSignals(True)
        self.setChecked(not collapsed)
        self.blockSignals(False)
        self.applyCollapsed()
        self.contentsCollapsed.emit(collapsed)

    collapsed = Property(bool, _getCollapsed, _setCollapsed)

    def applyCollapsed(self) -> None:
        """Hide (or show again) the direct children; a child hidden by the code stays hidden."""
        header = self._headerHeight()
        if self._collapsed:
            self._hiddenByCollapse = [w for w in self._children() if not w.isHidden()]
            for w in self._hiddenByCollapse:
                w.hide()
            self.setContentsMargins(0, header, 0, 0)
        else:
            for w in self._hiddenByCollapse:
                w.show()
            self._hiddenByCollapse = []
            self.setContentsMargins(6, header + 2, 6, 6)
        self.updateGeometry()

    def _children(self):
        return self.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindChildOption.FindDirectChildrenOnly)

    def sizeHint(self):
        margins = self.contentsMargins()
        layout = self.layout()
        inner = layout.sizeHint() if layout is not None and not self._collapsed else QtCore.QSize(0, 0)
        width = max(inner.width() + margins.left() + margins.right(), self.fontMetrics().horizontalAdvance(self.text()))
        return QtCore.QSize(width, margins.top() + (inner.height() + margins.bottom() if not self._collapsed else 0))

    def minimumSizeHint(self):
        return self.sizeHint()

    def hitButton(self, pos):
        return pos.y() < self._headerHeight()

    def paintEvent(self, _event):
        painter = QtWidgets.QStylePainter(self)
        option = QtWidgets.QStyleOptionButton()
        option.initFrom(self)
        option.rect = QtCore.QRect(0, 0, self.width(), self._headerHeight() - 2)
        option.text = ("▸ " if self._collapsed else "▾ ") + self.text()
        painter.drawControl(QtWidgets.QStyle.ControlElement.CE_PushButton, option)
        if not self._collapsed:
            painter.setPen(self.palette().color(QtGui.QPalette.ColorRole.Mid))
            painter.drawRect(0, self._headerHeight() - 1, self.width() - 1, self.height() - self._headerHeight())


class CtkPathLineEdit(QtWidgets.QWidget):
    currentPathChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._edit = QtWidgets.QLineEdit(self)
        self._browse = QtWidgets.QToolButton(self)
        self._browse.setText("…")
        layout.addWidget(self._edit)
        layout.addWidget(self._browse)
        self._path = ""
        self._filters = ""
        self._settingKey = ""
        self._edit.editingFinished.connect(lambda: self._setCurrentPath(self._edit.text()))

    def _getCurrentPath(self):
        return self._path

    def _setCurrentPath(self, path):
        path = str(path or "")
        if self._edit.text() != path:
            self._edit.setText(path)
        if path != self._path:
            self._path = path
            self.currentPathChanged.emit(path)

    currentPath = Property(str, _getCurrentPath, _setCurrentPath)

    def setCurrentPath(self, path):
        self._setCurrentPath(path)

    # The .ui gives ``filters`` as a set of ctkPathLineEdit enum keys; kept as that text (no file dialog here).
    filters = Property(str, lambda self: self._filters, lambda self, v: setattr(self, "_filters", str(v)))
    settingKey = Property(str, lambda self: self._settingKey, lambda self, v: setattr(self, "_settingKey", str(v)))


CUSTOM_WIDGETS = {
    "qMRMLWidget": QMRMLWidget,
    "qMRMLNodeComboBox": QMRMLNodeComboBox,
    "qMRMLSegmentationShow3DButton": QMRMLSegmentationShow3DButton,
    "ctkCollapsibleButton": CtkCollapsibleButton,
    "ctkPathLineEdit": CtkPathLineEdit,
}


class UiLoader(QtUiTools.QUiLoader):
    """``QUiLoader`` that creates the stand-ins above for the Slicer classes of a ``.ui`` and makes its
    ``<connections>`` with PythonQt's string signatures (Qt's own loader cannot match ``vtkMRMLScene*`` arguments to
    Python signals)."""

    def createWidget(self, className, parent=None, name=""):
        cls = CUSTOM_WIDGETS.get(className)
        if cls is None:
            return super().createWidget(className, parent, name)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget

    def load(self, device, parent=None):
        if not device.isOpen():
            device.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
        root = ET.fromstring(bytes(device.readAll()))
        connections = root.find("connections")
        if connections is not None:
            root.remove(connections)
        data = QtCore.QByteArray(ET.tostring(root, encoding="utf-8"))
        buffer = QtCore.QBuffer(data)
        buffer.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
        widget = super().load(buffer, parent)
        if widget is None:
            raise RuntimeError(f"QUiLoader: {self.errorString()}")
        for button in widget.findChildren(CtkCollapsibleButton):
            button.applyCollapsed()  # ``collapsed`` was read before the children existed
        for connection in connections if connections is not None else []:
            sender = self._named(widget, connection.findtext("sender"))
            receiver = self._named(widget, connection.findtext("receiver"))
            slotName, _ = pythonQt.parseSignature(connection.findtext("slot"))
            pythonQt.wrap(sender).connect(connection.findtext("signal"), getattr(pythonQt.wrap(receiver), slotName))
        return widget

    @staticmethod
    def _named(root, name):
        if root.objectName() == name:
            return root
        found = root.findChild(QtCore.QObject, name)
        if found is None:
            raise RuntimeError(f"the .ui connects '{name}', which it does not contain")
        return found
