"""The module panel's behaviour: parameter node ↔ widgets, model choice, Apply ↔ Cancel, progress, log, notes, review.

The panel only starts, cancels and listens: the run itself (worker process, progress, output nodes) belongs to the
logic (:meth:`~MORSESegmentationLib.logic.SegmentationLogic.startRun` and its ``onProgress`` / ``onLog`` /
``onFinished`` callbacks). Widget names are those of ``Resources/UI/MORSESegmentation.ui`` (a test checks that every
``self.ui.<name>`` used here exists there). User-visible strings go through ``_()`` (Slicer's ``slicer.i18n.tr``).

The Review section shows the review table of the last run (or, after a scene is loaded, of the selected input's latest
run): the organs, and the ranked regions to check. It observes that table node and redraws whenever it changes (a
status set here, from the Python console or in the Tables module); clicks go to the logic (``jumpToRegion``,
``setReviewStatus``).
"""

from __future__ import annotations

import logging
import time

import qt
import slicer
import vtk
from morse.errors import MorseError
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

from . import modelCatalog
from .logic import activeVolume
from .parameters import Preferences
from .reviewTable import CORRECTED, REVIEWED, TO_REVIEW
from .runOptions import RunOptions

FROM_DISK_KEY = "__from_disk__"
PREFERENCES_APPLIED = "MORSE.PreferencesApplied"  # parameter-node attribute: preferences were applied to it
PROGRESS_STEPS = 1000
DOUBLE_CLICK_S = 0.4  # where the application does not say (Qt's default interval)
OK_STYLE = "color: #2e7d32"
WARN_STYLE = "color: #c77700"
ERROR_STYLE = "color: #c62828"
# Widgets that define a run: locked while one is going, so what the panel shows is what is running.
RUN_INPUTS = (
    "inputVolumeSelector",
    "modelComboBox",
    "modelPathLineEdit",
    "outputSegmentationSelector",
    "refineCheckBox",
    "gatingCheckBox",
    "uncertaintyCheckBox",
    "postprocessCheckBox",
    "replaceExistingCheckBox",
    "deviceComboBox",
    "installDependenciesButton",
)


def reviewText(value: str) -> str:
    """The panel's words for a review status, region kind or organ flag (the table stores the English keys)."""
    return {
        "to review": _("to review"),
        "reviewed": _("reviewed"),
        "corrected": _("corrected"),
        "uncertain": _("uncertain"),
        "head disagreement": _("head disagreement"),
        "absent": _("absent"),
        "truncated": _("truncated"),
        "fragmented": _("fragmented"),
        "low confidence": _("low confidence"),
        "implausible region": _("implausible region"),
    }.get(value, value)


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _organCells(organ: dict) -> list:
    """Organ, volume (ml, 0.1), confidence, flags: one row of the organ table."""
    flags = ", ".join(reviewText(flag) for flag in organ["flags"])
    return [organ["organ"], _number(organ["volume_ml"], 1), _number(organ["confidence"], 2), flags]


def _regionCells(region: dict) -> list:
    """Rank, organ, kind, volume (ml, 0.1), mean uncertainty, status: one row of the region table."""
    kind, status = reviewText(region["kind"] or ""), reviewText(region["status"])
    volume, uncertainty = _number(region["volume_ml"], 1), _number(region["mean_uncertainty"], 2)
    return [str(region["rank"]), region["organ"], kind, volume, uncertainty, status]


def stageText(stage: str) -> str:
    """The progress bar's words for an engine stage."""
    return {
        "checking dependencies": _("checking packages"),
        "reading input": _("reading input"),
        "starting": _("starting"),
        "loading model": _("loading model"),
        "preprocessing": _("preprocessing"),
        "segmenting": _("segmenting"),
        "finishing": _("finishing"),
        "creating outputs": _("creating outputs"),
    }.get(stage, stage)


class MORSESegmentationPanel(VTKObservationMixin):
    """Controller of the module's panel: ``uiWidget`` is the loaded .ui, ``ui`` its named children, ``logic`` the
    module logic that runs the segmentation."""

    def __init__(self, uiWidget, ui, logic, preferences: Preferences | None = None):
        VTKObservationMixin.__init__(self)
        self.uiWidget = uiWidget
        self.ui = ui
        self.logic = logic
        self.preferences = preferences or Preferences()
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._modelCheck = modelCatalog.ModelCheck(False, "")
        self._updatingModelWidgets = False
        self._startedAt = 0.0
        self._progressValue = 0
        self._flushingClicks = False
        self._reviewTableNode = None
        self._reviewScene = None
        self._reviewVolumeID = ""
        self._reviewRanks: list[int] = []
        self._updatingReview = False

        ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChoiceChanged)
        ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        ui.clearLogButton.connect("clicked(bool)", lambda _checked=False: ui.logTextEdit.clear())
        ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        ui.progressBar.setRange(0, PROGRESS_STEPS)
        # The bar keeps its place while hidden: the log below must not change height when a run starts.
        policy = ui.progressBar.sizePolicy
        policy.setRetainSizeWhenHidden(True)
        ui.progressBar.setSizePolicy(policy)
        ui.progressBar.hide()
        ui.resultNotesLabel.hide()
        ui.reviewRegionsTable.connect("cellClicked(int,int)", self.onReviewRegionClicked)
        ui.reviewRegionsTable.connect("itemSelectionChanged()", self._updateReviewButtons)
        ui.markReviewedButton.connect("clicked(bool)", lambda _checked=False: self.onMarkRegion(REVIEWED))
        ui.markCorrectedButton.connect("clicked(bool)", lambda _checked=False: self.onMarkRegion(CORRECTED))
        ui.markToReviewButton.connect("clicked(bool)", lambda _checked=False: self.onMarkRegion(TO_REVIEW))
        self.showReview(None)
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
        volume = params.inputVolume
        volumeID = volume.GetID() if volume is not None else ""
        if volumeID != self._reviewVolumeID and not self.isRunning():
            # another input (or a loaded scene): the review of its latest run, if it has one
            self._reviewVolumeID = volumeID
            self.showReview(self.logic.reviewTableOf(volume) if volume is not None else None)

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
            combo.addItem(_("Load from disk…"), FROM_DISK_KEY)
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
        entry = self._modelCheck.entry
        intendedUse = getattr(entry, "intendedUse", "") if entry is not None else ""
        self.ui.intendedUseLabel.text = _("Intended use: {text}").format(text=intendedUse) if intendedUse else ""
        self.ui.intendedUseLabel.visible = bool(intendedUse)
        self._checkCanApply()

    # -- state -----------------------------------------------------------------------------------------------------

    def isRunning(self) -> bool:
        return bool(self.logic.isRunning)

    def _checkCanApply(self) -> None:
        button = self.ui.applyButton
        running = self.isRunning()
        for name in RUN_INPUTS:
            getattr(self.ui, name).enabled = not running
        if running:
            button.text = _("Cancel")
            button.toolTip = _("Stop the segmentation; nothing is added to the scene.")
            button.enabled = True
            return
        button.text = _("Apply")
        params = self._parameterNode
        reason = ""
        if params is None:
            reason = _("No parameter node.")
        elif not params.inputVolume:
            reason = _("Select an input volume.")
        elif not self._modelCheck.ok:
            reason = _("Choose a valid model: {reason}").format(reason=self._modelCheck.message)
        button.enabled = not reason
        button.toolTip = reason or _("Segment the input volume with MORSE.")

    def _updateDeviceLabel(self, device: str = "", message: str = "") -> None:
        label = self.ui.deviceStatusLabel
        if message:
            label.text = _("Ran on {device}: {message}").format(device=device, message=message)
            label.setStyleSheet(WARN_STYLE)
        elif device:
            label.text = _("Ran on {device}.").format(device=device)
            label.setStyleSheet(OK_STYLE)
        else:
            chosen = self._parameterNode.device if self._parameterNode is not None else "auto"
            label.text = {
                "auto": _("A CUDA GPU if there is one (Apple GPU for 2D models), else the CPU."),
                "cpu": _("The CPU (slower, always available)."),
            }.get(
                chosen,
                _("{device} if available; otherwise MORSE falls back to the CPU and says so here.").format(
                    device=chosen.upper()
                ),
            )
            label.setStyleSheet("")

    def _showNotes(self, messages: list[str]) -> None:
        """The run's notes (domain, truncation, post-processing, device) in plain sight, not only in the log."""
        label = self.ui.resultNotesLabel
        if not messages:
            label.text = ""
            label.hide()
            return
        heading = _("Check this result (1 note):") if len(messages) == 1 else _("Check this result ({count} notes):")
        lines = [heading.format(count=len(messages))]
        lines += [f"• {text}" for text in messages]
        label.text = "\n".join(lines)
        label.setStyleSheet(WARN_STYLE)
        label.show()

    def log(self, text: str, level: int = logging.INFO) -> None:
        """Append to the log box (capped by the .ui's maximumBlockCount) and follow the newest line. Slicer's own
        log gets the logic's messages from the logic; the panel's own lines are logged here."""
        prefix = {logging.WARNING: _("Warning: "), logging.ERROR: _("Error: ")}.get(level, "")
        box = self.ui.logTextEdit
        box.appendPlainText(prefix + text)
        bar = box.verticalScrollBar()
        bar.value = bar.maximum

    def _panelLog(self, text: str, level: int = logging.INFO) -> None:
        logging.log(level, "MORSE: %s", text)
        self.log(text, level)

    # -- running ---------------------------------------------------------------------------------------------------

    def onApplyButton(self, _checked: bool = False) -> None:
        if self._flushingClicks:
            return  # a click meant for the run that has just ended (it said "Cancel" when it was made)
        if not self.isRunning():
            self.startRun()
        elif time.monotonic() - self._startedAt < self._doubleClickSeconds():
            return  # the second click of a double-click on Apply, not a Cancel
        else:
            self.cancelRun()

    @staticmethod
    def _doubleClickSeconds() -> float:
        interval = getattr(getattr(slicer, "app", None), "doubleClickInterval", None)
        return interval / 1000.0 if isinstance(interval, int) and interval > 0 else DOUBLE_CLICK_S

    def onInstallDependencies(self, _checked: bool = False) -> None:
        try:
            with slicer.util.tryWithErrorDisplay(_("Failed to install MORSE's Python packages."), waitCursor=True):
                installed = self.logic.dependencies.ensure()
                self._panelLog(
                    _("Installed {packages}").format(packages=", ".join(r.pipRequirement for r in installed))
                    if installed
                    else _("All Python packages MORSE needs are installed.")
                )
        except Exception as exc:
            self._panelLog(str(exc), logging.ERROR)
        self._validateModel()

    def startRun(self) -> None:
        """Check the input, then the packages (first use: ask, then install) and the model; hand the run to the
        logic. Errors before the start are shown in a dialog and the log."""
        try:
            # tryWithErrorDisplay shows the error in a dialog, then re-raises; the log keeps it too.
            with slicer.util.tryWithErrorDisplay(_("MORSE could not start the segmentation."), waitCursor=True):
                self._startRun(self._parameterNode)
        except Exception as exc:
            self._panelLog(str(exc), logging.ERROR)
        finally:
            self._checkCanApply()

    def _startRun(self, params) -> None:
        self.logic.resolveInputVolume(params.inputVolume)  # before anything is installed
        self._panelLog(_("Checking Python packages…"))
        self.logic.dependencies.ensure()  # asks before installing anything (first use only)
        self._validateModel()  # a full check now that torch is surely there
        if not self._modelCheck.ok:
            raise MorseError(self._modelCheck.message)
        self._showNotes([])
        self._progressValue = 0
        self.ui.progressBar.value = 0
        self.ui.progressBar.setFormat(_("starting") + " %p%")
        self.logic.startRun(
            RunOptions.fromParameterNode(params),
            onProgress=self._onRunProgress,
            onLog=self.log,
            onFinished=self._onRunFinished,
        )
        # From the end of the start: the second click of a double-click waits in the queue until the start is done.
        self._startedAt = time.monotonic()
        self.ui.progressBar.show()

    def cancelRun(self) -> None:
        if self.isRunning():
            self._panelLog(_("Cancelling…"))
            self.logic.cancelRun()

    def _onRunProgress(self, stage: str, overall: float) -> None:
        self._progressValue = max(self._progressValue, round(overall * PROGRESS_STEPS))  # never backwards
        self.ui.progressBar.value = self._progressValue
        self.ui.progressBar.setFormat(stageText(stage) + " %p%")
        if stage == "creating outputs":
            # The nodes are made on this thread: keep the panel alive, so that Cancel still works now.
            slicer.app.processEvents()

    def _onRunFinished(self, outcome) -> None:
        # Clicks queued while the run ended were aimed at its "Cancel": take them now, as no-ops, so that none of
        # them lands on the "Apply" the button is about to show.
        self._flushingClicks = True
        try:
            slicer.app.processEvents()
        finally:
            self._flushingClicks = False
        self.ui.progressBar.hide()
        if outcome.status == "done":
            self._showResult(outcome.outputs)
        elif outcome.status == "failed":
            slicer.util.errorDisplay(_("MORSE segmentation failed:") + "\n" + outcome.error)
        self._checkCanApply()

    def _showResult(self, outputs) -> None:
        slicer.util.setSliceViewerLayers(background=outputs.inputVolume, fit=False)
        self.ui.show3DButton.setSegmentationNode(outputs.segmentation)
        self._updateDeviceLabel(outputs.device)
        self._showNotes(list(outputs.messages))
        self._reviewVolumeID = outputs.inputVolume.GetID()
        self.showReview(outputs.reviewTable)

    # -- review ----------------------------------------------------------------------------------------------------

    def showReview(self, tableNode) -> None:
        """Show the review table node ``tableNode`` (None: nothing) and follow its changes and its removal."""
        if self._reviewTableNode is not None:
            self.removeObserver(self._reviewTableNode, vtk.vtkCommand.ModifiedEvent, self._onReviewTableModified)
        if self._reviewScene is not None:
            self.removeObserver(self._reviewScene, self._reviewScene.NodeRemovedEvent, self._onReviewTableModified)
            self._reviewScene = None
        if tableNode is not self._reviewTableNode:
            self._reviewRanks = []  # a selection in another table means nothing here
        self._reviewTableNode = tableNode
        if tableNode is not None:
            self.addObserver(tableNode, vtk.vtkCommand.ModifiedEvent, self._onReviewTableModified)
            if tableNode.GetScene() is not None:  # a removed node says nothing itself: the scene does
                self._reviewScene = tableNode.GetScene()
                self.addObserver(self._reviewScene, self._reviewScene.NodeRemovedEvent, self._onReviewTableModified)
        self._updateReview()

    def _reviewTable(self):
        """The shown review table node, while it is still in the scene."""
        node = self._reviewTableNode
        if node is None or node.GetScene() is None or not node.GetScene().IsNodePresent(node):
            return None
        return node

    def _onReviewTableModified(self, caller=None, event=None) -> None:
        if caller is self._reviewScene:
            if self._reviewTable() is None:
                self.showReview(None)  # the table was deleted (e.g. in the Data module)
            return  # else another node was removed
        self._updateReview()

    def _selectedRegionRank(self):
        row = self.ui.reviewRegionsTable.currentRow()
        return self._reviewRanks[row] if 0 <= row < len(self._reviewRanks) else None

    def _updateReview(self) -> None:
        """Fill the organ and region tables from the review table node (empty and disabled without one)."""
        ui = self.ui
        table = self._reviewTable()
        try:
            rows = self.logic.reviewList(table) if table is not None else []
        except ValueError as exc:  # edited (in the Tables module) into something that is no review table
            self._panelLog(str(exc), logging.ERROR)
            table, rows = None, []
        organs = [r for r in rows if r["entry"] == "organ"]
        regions = [r for r in rows if r["entry"] == "region"]
        selected = self._selectedRegionRank()
        self._updatingReview = True
        try:
            _fillTable(ui.reviewOrgansTable, [_organCells(o) for o in organs])
            _fillTable(
                ui.reviewRegionsTable,
                [_regionCells(r) for r in regions],
                [
                    _("Centre (RAS): {r:.1f}, {a:.1f}, {s:.1f} mm. Click to centre the slice views here.").format(
                        r=r["centroid_ras"][0], a=r["centroid_ras"][1], s=r["centroid_ras"][2]
                    )
                    for r in regions
                ],
            )
            self._reviewRanks = [r["rank"] for r in regions]
            if selected in self._reviewRanks:
                ui.reviewRegionsTable.setCurrentCell(self._reviewRanks.index(selected), 0)
        finally:
            self._updatingReview = False
        ui.reviewOrgansTable.enabled = bool(organs)
        ui.reviewRegionsTable.enabled = bool(regions)
        if table is None:
            ui.reviewSummaryLabel.text = _("No review yet: after a run, its organs and the regions to check are here.")
        elif not regions:
            ui.reviewSummaryLabel.text = _("{name}: no regions to check (they need the uncertainty map).").format(
                name=table.GetName()
            )
        else:
            counts = {status: sum(r["status"] == status for r in regions) for status in (REVIEWED, CORRECTED)}
            text = (
                _("{name}: 1 region to check, {reviewed} reviewed, {corrected} corrected.")
                if len(regions) == 1
                else _("{name}: {count} regions to check, {reviewed} reviewed, {corrected} corrected.")
            )
            text += " " + _("Click a region to centre the slice views on it.")
            ui.reviewSummaryLabel.text = text.format(
                name=table.GetName(), count=len(regions), reviewed=counts[REVIEWED], corrected=counts[CORRECTED]
            )
        self._updateReviewButtons()

    def _updateReviewButtons(self) -> None:
        if self._updatingReview:
            return
        enabled = self._selectedRegionRank() is not None and self._reviewTable() is not None
        for button in (self.ui.markReviewedButton, self.ui.markCorrectedButton, self.ui.markToReviewButton):
            button.enabled = enabled

    def onReviewRegionClicked(self, row: int, column: int = 0) -> None:
        """A click on a region: centre the slice views on it (through the logic)."""
        table = self._reviewTable()
        if table is None or not 0 <= row < len(self._reviewRanks):
            return
        try:
            self.logic.jumpToRegion(table, self._reviewRanks[row])
        except ValueError as exc:  # the table was edited into something else meanwhile
            self._panelLog(str(exc), logging.ERROR)
        self._updateReviewButtons()

    def onMarkRegion(self, status: str) -> None:
        """Set the selected region's status (through the logic; the table node's change redraws the panel)."""
        table, rank = self._reviewTable(), self._selectedRegionRank()
        if table is None or rank is None:
            return
        try:
            self.logic.setReviewStatus(table, rank, status)
        except ValueError as exc:
            self._panelLog(str(exc), logging.ERROR)

    # -- scene / teardown ------------------------------------------------------------------------------------------

    def onSceneStartClose(self) -> None:
        if self.isRunning():
            self.logic.cancelRun()
        # The button keeps its node after the scene forgets it; the nodes of a closed scene are not to be shown.
        self.ui.show3DButton.setSegmentationNode(None)
        self._showNotes([])
        self._reviewVolumeID = ""
        self.showReview(None)
        self.setParameterNode(None)
        self._checkCanApply()

    def cleanup(self) -> None:
        """Module cleanup: stop a run, end the logic's worker process, drop every observation."""
        self.onSceneStartClose()
        self.removeObservers()
        self.logic.cleanup()


def _fillTable(widget, rows: list, toolTips: list | None = None) -> None:
    """Replace the rows of a ``QTableWidget`` with ``rows`` (lists of cell texts), each row's cells with its tip."""
    widget.setRowCount(0)
    widget.setRowCount(len(rows))
    for index, cells in enumerate(rows):
        for column, text in enumerate(cells):
            item = qt.QTableWidgetItem(text)
            if toolTips:
                item.setToolTip(toolTips[index])
            widget.setItem(index, column, item)
    widget.resizeColumnsToContents()  # narrow numbers, whole names: the panel is narrow


def _firstImageVolume():
    for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
        if not node.IsA("vtkMRMLLabelMapVolumeNode"):
            return node
    return None
