"""Fakes for the Slicer tests: a dependency installer's Slicer side, and widgets.

Widgets: plain-Python fakes of the few Qt/CTK widget behaviours the MORSE panel relies on, built from the .ui file.

They let the panel's control flow (Apply ↔ Cancel, model choice, progress, log) run against real MRML nodes without
Qt. They model only what the panel uses; an attribute the panel uses that a fake lacks raises AttributeError, so
the fakes cannot silently accept an API the real widgets do not offer. What they cannot show is real Qt behaviour
(layout, painting, PythonQt conversions): that needs the Slicer application.
"""

from __future__ import annotations

import subprocess
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

from MORSESegmentationLib.dependencies import DependencyInstaller


class FakeWidget:
    def __init__(self, name: str):
        self.objectName = name
        self.visible = True
        self.enabled = True
        self.toolTip = ""
        self.styleSheet = ""
        self.sizePolicy = FakeSizePolicy()
        self._slots: dict[str, list] = {}

    def connect(self, signal: str, slot) -> None:
        self._slots.setdefault(signal.split("(")[0], []).append(slot)

    def emit(self, signal: str, *args) -> None:
        for slot in self._slots.get(signal, []):
            slot(*args)

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setStyleSheet(self, style: str):
        self.styleSheet = style

    def property(self, name):  # connectGui looks for SlicerParameterName; the stand-in does not bind
        return None

    def setSizePolicy(self, policy):
        self.retainSizeWhenHidden = policy.retainSizeWhenHidden


class FakeSizePolicy:
    retainSizeWhenHidden = False

    def setRetainSizeWhenHidden(self, retain):
        self.retainSizeWhenHidden = retain


class FakeScrollBar:
    value = maximum = 0


class FakeButton(FakeWidget):
    def __init__(self, name):
        super().__init__(name)
        self.text = ""

    def click(self):
        if self.enabled:
            self.emit("clicked", False)


class FakeLabel(FakeWidget):
    def __init__(self, name):
        super().__init__(name)
        self.text = ""


class FakeComboBox(FakeWidget):
    """Emits currentIndexChanged like Qt: when items are added to an empty box, cleared, or the index is set."""

    def __init__(self, name):
        super().__init__(name)
        self._items: list[dict] = []
        self._index = -1

    @property
    def count(self):
        return len(self._items)

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        if index != self._index:
            self._index = index
            self.emit("currentIndexChanged", index)

    def addItem(self, text, data=None):
        self._items.append({"text": text, "data": data})
        if self._index == -1:
            self.currentIndex = 0

    def setItemData(self, index, value, role):
        self._items[index][role] = value

    def itemData(self, index):
        return self._items[index]["data"]

    def itemText(self, index):
        return self._items[index]["text"]

    def clear(self):
        self._items.clear()
        self.currentIndex = -1


class FakePathLineEdit(FakeWidget):
    def __init__(self, name):
        super().__init__(name)
        self._path = ""

    @property
    def currentPath(self):
        return self._path

    @currentPath.setter
    def currentPath(self, path):
        if path != self._path:
            self._path = path
            self.emit("currentPathChanged", path)


class FakeProgressBar(FakeWidget):
    def __init__(self, name):
        super().__init__(name)
        self.value, self.minimum, self.maximum, self.format = 0, 0, 100, "%p%"

    def setRange(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def setFormat(self, text):
        self.format = text


class FakePlainTextEdit(FakeWidget):
    def __init__(self, name, maximumBlockCount=0):
        super().__init__(name)
        self.maximumBlockCount = maximumBlockCount
        self.lines: list[str] = []
        self._bar = FakeScrollBar()

    def verticalScrollBar(self):
        return self._bar

    def appendPlainText(self, text):
        self.lines.extend(str(text).split("\n"))
        if self.maximumBlockCount:
            del self.lines[: -self.maximumBlockCount]

    def clear(self):
        self.lines.clear()

    def toPlainText(self):
        return "\n".join(self.lines)


class FakeShow3DButton(FakeWidget):
    def __init__(self, name):
        super().__init__(name)
        self.segmentationNode = None

    def setSegmentationNode(self, node):
        self.segmentationNode = node


class FakeTableWidget(FakeWidget):
    """Rows of items, a current row; ``clickCell`` emits what a click on a cell makes Qt emit."""

    def __init__(self, name):
        super().__init__(name)
        self._items: dict[tuple[int, int], object] = {}
        self._rows = 0
        self._current = -1

    @property
    def rowCount(self):
        return self._rows

    def setRowCount(self, count):
        self._rows = count
        self._items = {key: item for key, item in self._items.items() if key[0] < count}
        if self._current >= count:
            self.setCurrentCell(-1, -1)

    def setItem(self, row, column, item):
        self._items[(row, column)] = item

    def item(self, row, column):
        return self._items.get((row, column))

    def currentRow(self):
        return self._current

    def setCurrentCell(self, row, column):
        if row != self._current:
            self._current = row
            self.emit("itemSelectionChanged")

    def resizeColumnsToContents(self):
        pass

    def rowTexts(self, row):
        return [self._items[key].text() for key in sorted(k for k in self._items if k[0] == row)]

    def clickCell(self, row, column=0):
        self.setCurrentCell(row, column)
        self.emit("cellClicked", row, column)


FAKES = {
    "QPushButton": FakeButton,
    "QLabel": FakeLabel,
    "QComboBox": FakeComboBox,
    "ctkPathLineEdit": FakePathLineEdit,
    "QProgressBar": FakeProgressBar,
    "qMRMLSegmentationShow3DButton": FakeShow3DButton,
    "QTableWidget": FakeTableWidget,
}


def fakeUi(uiFile: Path) -> SimpleNamespace:
    """A ``self.ui``-like namespace with one fake per named widget of the .ui file."""
    ui = {}
    for widget in ET.parse(uiFile).getroot().iter("widget"):
        name, cls = widget.get("name"), widget.get("class")
        if cls == "QPlainTextEdit":
            cap = next(
                (p.findtext("number") for p in widget.findall("property") if p.get("name") == "maximumBlockCount"), "0"
            )
            ui[name] = FakePlainTextEdit(name, int(cap))
        else:
            ui[name] = FAKES.get(cls, FakeWidget)(name)
    return SimpleNamespace(**ui)


class Recorder:
    """Fake Slicer side: a user who answers ``answer``, installers that record calls and 'install' packages."""

    def __init__(self, missing, answer=True, torchAnswer=True, pipFails=False, imported=()):
        self.missing = set(missing)
        self.imported = set(imported)
        self.answer, self.torchAnswer, self.pipFails = answer, torchAnswer, pipFails
        self.calls = []

    def confirm(self, message, details):
        self.calls.append(("confirm", message, details))
        return self.answer

    def installTorch(self, versionRequirement):
        self.calls.append(("torch", versionRequirement))
        if not self.torchAnswer:
            return None
        self.missing.discard("torch")
        return types.SimpleNamespace(__version__="2.9.0")

    def pipInstall(self, requirements, skip):
        self.calls.append(("pip", list(requirements), list(skip)))
        if self.pipFails:
            raise subprocess.CalledProcessError(1, ["pip", "install"])
        for r in requirements:
            self.missing.discard(r.split(">")[0].split("=")[0].split("<")[0])

    def isSatisfied(self, requirement):
        return requirement.distribution not in self.missing

    def installer(self):
        return DependencyInstaller(
            confirm=self.confirm,
            installTorch=self.installTorch,
            pipInstall=self.pipInstall,
            isSatisfied=self.isSatisfied,
            isImported=lambda name: name in self.imported,
        )
