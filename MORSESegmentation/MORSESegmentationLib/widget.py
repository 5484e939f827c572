"""The module panel's behaviour: parameter node ↔ widgets, model choice, Apply ↔ Cancel, progress and log.

The heavy work runs in a worker process (:class:`~MORSESegmentationLib.backgroundRun.WorkerRun`) polled by a
``qt.QTimer`` every 200 ms, so Slicer stays responsive; only the final node creation (fast) runs on the GUI thread.
Widget names are those of ``Resources/UI/MORSESegmentation.ui`` (a test checks that every ``self.ui.<name>`` used
here exists there).
"""

from __future__ import annotations

import logging
import time

import qt
import slicer
import vtk
from morse.errors import CancelledError, MorseError
from slicer.util import VTKObservationMixin

from . import modelCatalog
from .backgroundRun import WorkerRun
from .logic import activeVolume, overallProgress
from .parameters import Preferences

FROM_DISK_KEY = "__from_disk__"
PREFERENCES_APPLIED = "MORSE.PreferencesApplied"  # parameter-node attribute: preferences were applied to it
POLL_INTERVAL_MS = 200
PROGRESS_STEPS = 1000
OK_STYLE = "color: #2e7d32"
WARN_STYLE = "color: #c77700"
ERROR_STYLE = "color: #c62828"


class MORSESegmentationPanel(VTKObservationMixin):
    """Controller of the module's panel. ``workerFactory`` builds the background run (tests pass a fake)."""

    def __init__(self, uiWidget, ui, logic, preferences: Preferences | None = None, workerFactory=WorkerRun):
        VTKObservationMixin.__init__(self)
        self.uiWidget = uiWidget
        self.ui = ui
        self.logic = logic
        self.preferences = preferences or Preferences()
        self.workerFactory = workerFactory
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._request = None
        self._runStarted = 0.0
        self._modelCheck = modelCatalog.ModelCheck(False, "")
        self._updatingModelWidgets = False

        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._onPoll)

        ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChoiceChanged)
        ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        ui.clearLogButton.connect("clicked(bool)", lambda _checked=False: ui.logTextEdit.clear())
        ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        ui.progressBar.setRange(0, PROGRESS_STEPS)
        ui.progressBar.hide()
        self.populateModels()

    # -- parameter node --------------------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        """Bind the scene's parameter node; pick the active (or first) volume and, for a new scene, the user's
        preferred device (before binding, so that the node's defaults do not overwrite the preference)."""
        params = self.logic.getParameterNode()
        node = params.parameterNode
        if not node.GetAttribute(PREFERENCES_APPLIED):
            node.SetAttribute(PREFERENCES_APPLIED, "1")
            params.device = self.preferences.device
            folder = self.preferences.lastModelFolder
            if params.model == modelCatalog.DEFAULT_KEY and not self._modelEntries and folder:
                params.model = folder  # no bundled model: offer the last folder used
        if not params.inputVolume:
            volume = activeVolume() or _firstImageVolume()
            if volume is not None:
                params.inputVolume = volume
        self.setParameterNode(params)

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode is not None:
            # Widgets with a SlicerParameterName property (see the .ui) follow the parameter node both ways.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._updateModelWidgets()
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        params = self._parameterNode
        if params is None:
            return
        # The device follows the user across scenes and sessions. Only from a node this panel initialised: a node
        # being reset (scene close) shows default values that are not the user's choice.
        initialised = params.parameterNode.GetAttribute(PREFERENCES_APPLIED)
        if initialised and params.device != self.preferences.device:
            self.preferences.device = params.device
        self._updateDeviceLabel()
        self._checkCanApply()

    # -- model choice ----------------------------------------------------------------------------------------------

    def populateModels(self) -> None:
        """Fill the model combo box: bundled packs (default first), then "Load from disk…"."""
        self._updatingModelWidgets = True
        try:
            combo = self.ui.modelComboBox
            combo.clear()
            self._modelEntries = modelCatalog.bundledModels()
            for entry in self._modelEntries:
                combo.addItem(entry.title, entry.key)
                combo.setItemData(combo.count - 1, entry.description, qt.Qt.ToolTipRole)
            combo.addItem("Load from disk…", FROM_DISK_KEY)
        finally:
            self._updatingModelWidgets = False

    def _keys(self) -> list[str]:
        return [entry.key for entry in self._modelEntries]

    def _updateModelWidgets(self) -> None:
        """Show the parameter node's model in the combo box / path field and validate it."""
        params = self._parameterNode
        if params is None:
            return
        self._updatingModelWidgets = True
        try:
            key = params.model
            keys = self._keys()
            fromDisk = key not in keys
            self.ui.modelComboBox.currentIndex = len(keys) if fromDisk else keys.index(key)
            self.ui.modelPathLineEdit.visible = fromDisk
            if fromDisk and key and self.ui.modelPathLineEdit.currentPath != key:
                self.ui.modelPathLineEdit.currentPath = key
        finally:
            self._updatingModelWidgets = False
        self._validateModel()

    def onModelChoiceChanged(self, index: int) -> None:
        if self._updatingModelWidgets or self._parameterNode is None or index < 0:
            return
        key = self.ui.modelComboBox.itemData(index)
        if key == FROM_DISK_KEY:
            self.ui.modelPathLineEdit.visible = True
            path = self.ui.modelPathLineEdit.currentPath or self.preferences.lastModelFolder
            self._parameterNode.model = path or ""
            if path and self.ui.modelPathLineEdit.currentPath != path:
                self._updatingModelWidgets = True
                self.ui.modelPathLineEdit.currentPath = path
                self._updatingModelWidgets = False
        else:
            self.ui.modelPathLineEdit.visible = False
            self._parameterNode.model = key
        self._validateModel()

    def onModelPathChanged(self, path: str) -> None:
        if self._updatingModelWidgets or self._parameterNode is None:
            return
        self._parameterNode.model = path
        self._validateModel()
        if self._modelCheck.ok:
            self.preferences.lastModelFolder = path

    def _validateModel(self) -> None:
        params = self._parameterNode
        self._modelCheck = modelCatalog.checkModel(params.model if params is not None else "")
        label = self.ui.modelStatusLabel
        label.text = self._modelCheck.message
        label.setStyleSheet(OK_STYLE if self._modelCheck.ok else ERROR_STYLE)
        self._checkCanApply()

    # -- state -----------------------------------------------------------------------------------------------------

    def isRunning(self) -> bool:
        return self._run is not None

    def _checkCanApply(self) -> None:
        button = self.ui.applyButton
        if self.isRunning():
            button.text = "Cancel"
            button.toolTip = "Stop the segmentation; nothing is added to the scene."
            button.enabled = True
            return
        button.text = "Apply"
        params = self._parameterNode
        reason = ""
        if params is None:
            reason = "No parameter node."
        elif not params.inputVolume:
            reason = "Select an input volume."
        elif not self._modelCheck.ok:
            reason = "Choose a valid model: " + self._modelCheck.message
        button.enabled = not reason
        button.toolTip = reason or "Segment the input volume with MORSE."

    def _updateDeviceLabel(self, device: str = "", message: str = "") -> None:
        label = self.ui.deviceStatusLabel
        if message:
            label.text = f"Running on {device}: {message}"
            label.setStyleSheet(WARN_STYLE)
        elif device:
            label.text = f"Running on {device}."
            label.setStyleSheet(OK_STYLE)
        else:
            chosen = self._parameterNode.device if self._parameterNode is not None else "auto"
            label.text = {
                "auto": "A CUDA GPU if there is one (Apple GPU for 2D models), else the CPU.",
                "cpu": "The CPU (slower, always available).",
            }.get(chosen, f"{chosen.upper()} if available; otherwise MORSE falls back to the CPU and says so here.")
            label.setStyleSheet("")

    def log(self, text: str, level: int = logging.INFO) -> None:
        """Append to the log box (its size is capped by the .ui's maximumBlockCount) and Slicer's log."""
        logging.log(level, "MORSE: %s", text)
        prefix = {logging.WARNING: "Warning: ", logging.ERROR: "Error: "}.get(level, "")
        self.ui.logTextEdit.appendPlainText(prefix + text)

    # -- running ---------------------------------------------------------------------------------------------------

    def onApplyButton(self, _checked: bool = False) -> None:
        if self.isRunning():
            self.cancelRun()
        else:
            self.startRun()

    def onInstallDependencies(self, _checked: bool = False) -> None:
        try:
            with slicer.util.tryWithErrorDisplay("Failed to install MORSE's Python packages.", waitCursor=True):
                installed = self.logic.dependencies.ensure()
                self.log(
                    "Installed " + ", ".join(r.pipRequirement for r in installed)
                    if installed
                    else "All Python packages MORSE needs are installed."
                )
        except Exception as exc:
            self.log(str(exc), logging.ERROR)
        self._validateModel()

    def startRun(self) -> None:
        """Check dependencies (first use: ask, then install), capture the input, start the worker and the timer."""
        try:
            # tryWithErrorDisplay shows the error in a dialog, then re-raises; the log keeps it too.
            with slicer.util.tryWithErrorDisplay("MORSE could not start the segmentation.", waitCursor=True):
                self._startRun(self._parameterNode)
        except Exception as exc:
            self.log(str(exc), logging.ERROR)
        finally:
            self._checkCanApply()

    def _startRun(self, params) -> None:
        self.log("Checking Python packages…")
        self.logic.dependencies.ensure()  # asks before installing anything (first use only)
        self._validateModel()  # a full check now that torch is surely there
        if not self._modelCheck.ok:
            raise MorseError(self._modelCheck.message)
        request = self.logic.prepareRequest(
            params.inputVolume,
            params.outputSegmentation,
            params.model,
            params.device,
            params.refine,
            params.gating,
            params.uncertainty,
            params.replaceExisting,
        )
        run = self.workerFactory(
            request.volume,
            request.ijkToRas,
            model=request.model,
            device=request.device,
            refine=request.refine,
            gating=request.gating,
            uncertainty=request.uncertainty,
            mapsUint8=self.logic.mapsAsUint8,
        )
        run.start()
        request.volume = None  # the worker has its copy on disk; do not hold the voxels twice during the run
        self._run, self._request, self._runStarted = run, request, time.monotonic()
        self.log(f"Segmenting '{request.inputName}' with model '{request.model}' on '{request.device}'…")
        self.ui.progressBar.value = 0
        self.ui.progressBar.setFormat("starting %p%")
        self.ui.progressBar.show()
        self._timer.start()

    def cancelRun(self) -> None:
        if self._run is None:
            return
        self.log("Cancelling…")
        self._run.cancel()  # the next poll sees the process end and reports the cancellation

    def _onPoll(self) -> None:
        run = self._run
        if run is None:
            self._timer.stop()
            return
        for event in run.poll():
            self._handleEvent(event)
        if not run.isRunning():
            self._timer.stop()
            self._finishRun()

    def _handleEvent(self, event) -> None:
        if event.kind == "started":
            self.log(f"Worker process {event.data.get('pid', '?')} started ({event.data.get('python', '')}).")
        elif event.kind == "progress":
            self._showProgress(event.stage, overallProgress(event.stage, event.fraction))
        elif event.kind == "device":
            self._updateDeviceLabel(event.data.get("device", ""), event.text)
            if event.text:
                self.log(event.text, logging.WARNING)
        elif event.kind == "message":
            self.log(event.text, logging.WARNING)
        elif event.kind == "log" and event.text.strip():
            self.ui.logTextEdit.appendPlainText(event.text)
        elif event.kind == "error":
            self.log(event.text, logging.ERROR)

    def _showProgress(self, stage: str, overall: float) -> None:
        self.ui.progressBar.value = round(overall * PROGRESS_STEPS)
        self.ui.progressBar.setFormat(f"{stage} %p%")

    def _finishRun(self) -> None:
        run, request = self._run, self._request
        self._run = self._request = None
        try:
            result = run.result()
            self._showProgress("creating outputs", 0.0)
            slicer.app.processEvents()
            outputs = self.logic.importResult(
                request, result, lambda s, f: self._showProgress(s, overallProgress(s, f))
            )
            seconds = time.monotonic() - self._runStarted
            self.log(
                f"Done in {seconds:.1f} s on {outputs.device}: {', '.join(outputs.createdNodeNames)}"
                + (f"; replaced {', '.join(outputs.replacedNodeNames)}" if outputs.replacedNodeNames else "")
            )
            self._showResult(outputs)
        except CancelledError:
            self.log("Cancelled; nothing was added to the scene.")
        except MorseError as exc:
            self.log(str(exc), logging.ERROR)
            slicer.util.errorDisplay(f"MORSE segmentation failed:\n{exc}")
        except Exception as exc:  # a bug: show it with details rather than lose it in the timer callback
            logging.exception("MORSE segmentation failed")
            slicer.util.errorDisplay(f"MORSE segmentation failed: {exc}", detailedText=str(exc))
        finally:
            run.cleanup()
            self.ui.progressBar.hide()
            self._checkCanApply()

    def _showResult(self, outputs) -> None:
        slicer.util.setSliceViewerLayers(background=outputs.inputVolume, fit=False)
        self.ui.show3DButton.setSegmentationNode(outputs.segmentation)
        for message in outputs.messages:
            self.log(message, logging.WARNING)

    # -- scene / teardown ------------------------------------------------------------------------------------------

    def onSceneStartClose(self) -> None:
        if self._run is not None:
            self._run.cancel()
            self._run.cleanup()
            self._run = self._request = None
            self._timer.stop()
            self.ui.progressBar.hide()
        self.setParameterNode(None)

    def cleanup(self) -> None:
        self.onSceneStartClose()
        self.removeObservers()


def _firstImageVolume():
    for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
        if not node.IsA("vtkMRMLLabelMapVolumeNode"):
            return node
    return None
