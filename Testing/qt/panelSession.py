"""A user at the MORSE panel on real Qt: the module widget built by its own ``setup()``, real mouse events, the
event loop running between steps, and a heartbeat that measures how long the loop ever stops.

Clicks are real ``QMouseEvent`` s. :meth:`Session.click` delivers them now; :meth:`Session.queueClick` posts them,
as the window system does for a click made while the application is busy: Qt hands them out at the next
``processEvents``, wherever that is.
"""

from __future__ import annotations

import time

import numpy as np
import pythonQt
import slicer
import slicerSyntheticVolumes as syntheticVolumes
from MORSESegmentationLib.volumeArrays import addVolumeFromArray
from PySide6 import QtCore, QtGui, QtWidgets

HEARTBEAT_MS = 10


class Heartbeat:
    """A 10 ms QTimer; the gaps between its ticks, less 10 ms, are the event loop's stalls (ms)."""

    def __init__(self):
        self.ticks: list[float] = []
        self.timer = QtCore.QTimer()
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def summary(self, since: float = 0.0) -> dict:
        """p99 and worst stall (ms) over the ticks after ``since`` (``time.perf_counter()``)."""
        ticks = np.asarray([t for t in self.ticks if t >= since])
        stalls = np.clip(np.diff(ticks) * 1000.0 - HEARTBEAT_MS, 0.0, None)
        if stalls.size == 0:
            return {"ticks": 0}
        return {
            "ticks": int(stalls.size + 1),
            "p99_stall_ms": round(float(np.percentile(stalls, 99)), 1),
            "worst_stall_ms": round(float(stalls.max()), 1),
        }

    def stop(self):
        self.timer.stop()


class Session:
    """The module panel in a shown top-level widget (offscreen), over the current scene."""

    def __init__(self):
        from MORSESegmentation import MORSESegmentationWidget

        self.app = QtWidgets.QApplication.instance()
        self.module = MORSESegmentationWidget()
        self.module.setup()
        self.ui = self.module.ui
        self.panel = self.module.panel
        self.logic = self.module.logic
        self.top = pythonQt.unwrap(self.module.parent)
        self.top.resize(440, 760)
        self.top.show()
        self.outcomes = []
        self.progress: list[int] = []
        self.logic.finished.connect(self.outcomes.append)
        pythonQt.unwrap(self.ui.progressBar).valueChanged.connect(self.progress.append)
        self.heartbeat = Heartbeat()
        self.pump(0.05)

    # -- the event loop --------------------------------------------------------------------------------------------

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
            time.sleep(0.002)

    def waitUntil(self, condition, timeout: float = 60.0, what: str = "condition") -> float:
        """Run the event loop until ``condition()``; returns the seconds it took."""
        start = time.monotonic()
        loop = QtCore.QEventLoop()
        check = QtCore.QTimer()
        check.setInterval(5)
        check.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() - start > timeout else None)
        check.start()
        if not condition():
            loop.exec()
        check.stop()
        if not condition():
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; log:\n{self.logText()}")
        return time.monotonic() - start

    def waitForOutcome(self, count: int, timeout: float = 90.0):
        self.waitUntil(lambda: len(self.outcomes) >= count, timeout, f"outcome {count}")
        self.pump(0.05)
        return self.outcomes[count - 1]

    # -- the user --------------------------------------------------------------------------------------------------

    def _mouse(self, widget, kind):
        raw = pythonQt.unwrap(widget)
        centre = QtCore.QPointF(raw.rect().center())
        glob = QtCore.QPointF(raw.mapToGlobal(raw.rect().center()))
        return raw, QtGui.QMouseEvent(
            kind, centre, glob, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.LeftButton,
            QtCore.Qt.KeyboardModifier.NoModifier,
        )  # fmt: skip

    def click(self, widget) -> None:
        """Press and release on ``widget`` now."""
        for kind in (QtCore.QEvent.Type.MouseButtonPress, QtCore.QEvent.Type.MouseButtonRelease):
            raw, event = self._mouse(widget, kind)
            QtWidgets.QApplication.sendEvent(raw, event)

    def clickCell(self, table, row: int, column: int = 0) -> None:
        """Press and release on a cell of a table widget (on its viewport, where Qt takes cell clicks), now."""
        raw = pythonQt.unwrap(table)
        item = raw.item(row, column)
        raw.scrollToItem(item)
        viewport = raw.viewport()
        centre = QtCore.QPointF(raw.visualItemRect(item).center())
        glob = QtCore.QPointF(viewport.mapToGlobal(centre.toPoint()))
        for kind in (QtCore.QEvent.Type.MouseButtonPress, QtCore.QEvent.Type.MouseButtonRelease):
            event = QtGui.QMouseEvent(
                kind, centre, glob, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.LeftButton,
                QtCore.Qt.KeyboardModifier.NoModifier,
            )  # fmt: skip
            QtWidgets.QApplication.sendEvent(viewport, event)

    def queueClick(self, widget, double: bool = False) -> None:
        """Post a click (or a double-click: press, release, double-click, release) for the next event processing."""
        kinds = [QtCore.QEvent.Type.MouseButtonPress, QtCore.QEvent.Type.MouseButtonRelease]
        if double:
            kinds += [QtCore.QEvent.Type.MouseButtonDblClick, QtCore.QEvent.Type.MouseButtonRelease]
        for kind in kinds:
            raw, event = self._mouse(widget, kind)
            QtWidgets.QApplication.postEvent(raw, event)

    def logText(self) -> str:
        return self.ui.logTextEdit.toPlainText()

    def logLines(self) -> list[str]:
        return self.logText().splitlines()

    def close(self) -> None:
        self.heartbeat.stop()
        self.module.cleanup()
        self.top.close()
        self.top.deleteLater()
        self.pump(0.02)


def addCt(name: str = "CT", shape=(8, 32, 40)):
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=shape)
    return addVolumeFromArray(volume, ijkToRas, name)


def morseNodes() -> list[str]:
    return sorted(
        n.GetName()
        for cls in ("vtkMRMLSegmentationNode", "vtkMRMLScalarVolumeNode")
        for n in slicer.util.getNodesByClass(cls)
        if n.GetAttribute("MORSE.Output")
    )
