"""The module's logic: input node → engine → output nodes, and the one owner of a background run. GUI-free.

Run contract (what the panel and the Python console use)::

    options = RunOptions.fromParameterNode(logic.getParameterNode())      # or RunOptions(inputVolume=node, ...)
    logic.startRun(options, onProgress=None, onLog=None, onFinished=None)  # returns at once
    logic.isRunning                # True from startRun until just before onFinished is called
    logic.cancelRun()              # any time; also while outputs are being created
    logic.waitForRun(timeout=None) # blocks (scripts, tests); returns the RunOutcome
    logic.shutdownWorker()         # end the warm worker (also done on scene close and in cleanup())

- ``startRun`` checks the input (before anything is installed), then the Python packages (first use: asks, then
  installs), captures the voxels and hands the run to the warm worker process. It raises :class:`MorseError`
  (``InputError``, ``DependencyError``...) for problems found before the run starts; after it returns, the outcome
  arrives only through ``onFinished``. It raises :class:`RunError` while another run is going.
- ``onProgress(stage, overall)``: ``overall`` in 0..1 for the whole run, never decreasing. ``onLog(text, level)``:
  each distinct text once per run (device fallback, engine warnings, worker start-up); ``level`` is a ``logging``
  level. ``onFinished(outcome)``: a :class:`RunOutcome` whose ``status`` is ``done``, ``cancelled`` or ``failed``;
  ``outcome.outputs`` (done) names every node created, ``outcome.error`` (failed) says why. The same three are also
  signals (``logic.progressChanged``, ``logic.logged``, ``logic.finished``) that listeners ``connect(callable)`` to.
- The run advances on a ``qt.QTimer`` owned by the logic (every 100 ms); without Qt (plain Python) call
  ``logic.pollRun()`` or ``logic.waitForRun()``. The output nodes are created on that thread, at the end; a cancel
  then (from a callback or a click the GUI processes meanwhile) removes what was created and ends ``cancelled``.
- The worker stays up between runs, with its model loaded: a second run skips starting Python, importing torch and
  MONAI and loading the network (``outcome.modelCached``). It is shut down on scene close, module cleanup, after
  15 minutes idle, or by :meth:`SegmentationLogic.shutdownWorker`; a cancel kills it (the next run starts a new one).

Blocking, in this process: :meth:`SegmentationLogic.process` (same options as keywords). Both paths hand the engine
the same arguments (:meth:`SegmentationRequest.engineArguments`) and import with the same code
(:mod:`.resultImport`), so they give the same nodes.

A run's steps, usable one by one:

1. :meth:`SegmentationLogic.captureRequest` (main thread): resolve the input (default: the active volume), check
   it, copy its voxels (KJI) and IJK→RAS matrix.
2. :meth:`SegmentationLogic.runEngine` (in this process) or the worker: :func:`morse.inference.pipeline
   .segment_volume`. The scene is not touched.
3. :meth:`SegmentationLogic.importResult` (main thread): create every output node in one transaction. If anything
   fails or the run is cancelled, everything created so far is removed and the scene is as it was.

Replacing earlier results (``replaceExisting=True``) removes only nodes that MORSE made for the same input volume
(marked with the ``MORSE.Output`` attribute and a reference to the input), and only after the new outputs exist,
so a failed re-run keeps the old results. Without it, a run adds new nodes named ``<input> MORSE 2`` etc.

A user's own segmentation chosen as ``outputSegmentation`` is never cleared: MORSE adds its organ segments to it and
leaves every other segment alone. With ``replaceExisting=True`` the organ segments of earlier MORSE runs in it
(tagged ``MORSE.Output``) are removed; hand-made segments never are.

Review (the panel's Review section calls the same)::

    outputs.reviewTable                                  # vtkMRMLTableNode "<input> MORSE review"
    logic.reviewList(outputs)                            # organs, then regions by rank: dicts with "status"
    logic.jumpToRegion(outputs.reviewTable, 1)           # centre every slice view on region 1
    logic.setReviewStatus(outputs.reviewTable, 1, "reviewed")   # or "corrected", "to review"

The review list is built by the engine with the result (both run paths), and stored in the table node with a
``status`` column that is saved with the scene. ``reviewList`` and the other calls also take the table node itself,
or an input volume (then the review of its latest run).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import slicer
from morse.errors import CancelledError, InputError, MorseError

from . import resultImport, reviewTable
from .backgroundRun import WarmWorker, WorkerRun
from .dependencies import DependencyInstaller
from .resultImport import SegmentationOutputs
from .runOptions import RunOptions, SegmentationRequest
from .volumeArrays import checkInputVolume, volumeToArray

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]
CancelCallback = Callable[[], bool]
POLL_INTERVAL_MS = 100

# Where each stage sits on the overall progress bar (fraction 0..1 within the stage maps into this range).
STAGE_RANGES = {
    "checking dependencies": (0.0, 0.01),
    "reading input": (0.01, 0.02),
    "starting": (0.02, 0.04),
    "loading model": (0.04, 0.07),
    "preprocessing": (0.07, 0.10),
    "segmenting": (0.10, 0.90),
    "finishing": (0.90, 0.93),
    "creating outputs": (0.93, 1.0),
}

__all__ = [
    "REVIEW_STATUSES",
    "RunOptions",
    "RunOutcome",
    "SegmentationLogic",
    "SegmentationOutputs",
    "SegmentationRequest",
]
REVIEW_STATUSES = reviewTable.STATUSES  # "to review", "reviewed", "corrected"


class RunError(MorseError):
    """A run cannot start now (another one is going)."""


def overallProgress(stage: str, fraction: float) -> float:
    """Position of ``(stage, fraction within stage)`` on a 0..1 progress bar; unknown stages keep 0."""
    low, high = STAGE_RANGES.get(stage, (0.0, 0.0))
    return low + (high - low) * min(1.0, max(0.0, float(fraction)))


def activeVolume():
    """The volume shown as background in the slice views (the application's active volume), or None."""
    selection = slicer.mrmlScene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    volumeID = selection.GetActiveVolumeID() if selection is not None else None
    return slicer.mrmlScene.GetNodeByID(volumeID) if volumeID else None


class Signal:
    """A list of listeners: ``connect(callable)``, ``disconnect(callable)``, ``emit(*args)`` (Qt-free)."""

    def __init__(self):
        self._listeners: list[Callable] = []

    def connect(self, listener: Callable) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def disconnect(self, listener: Callable) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, *args) -> None:
        for listener in list(self._listeners):
            listener(*args)


@dataclass
class RunOutcome:
    """How a background run ended.

    status:          ``done``, ``cancelled`` or ``failed``.
    outputs:         :class:`SegmentationOutputs` when done.
    error:           the message when failed (what went wrong and what to do).
    seconds:         from :meth:`SegmentationLogic.startRun` to the end (s).
    workerPid:       the worker process that ran it.
    modelCached:     the worker already held the network (no start-up, no model load).
    startupSeconds:  the worker's Python start-up and torch/engine import (s); None on a warm worker.
    modelSeconds:    building the network in the worker (s; ≈0 when cached).
    timings:         the engine's seconds per stage, plus ``import`` (creating the nodes).
    """

    status: str
    outputs: SegmentationOutputs | None = None
    error: str = ""
    seconds: float = 0.0
    workerPid: int | None = None
    modelCached: bool = False
    startupSeconds: float | None = None
    modelSeconds: float | None = None
    timings: dict = field(default_factory=dict)


class _BackgroundRun:
    """The state of the one run in progress (owned by the logic)."""

    def __init__(self, request: SegmentationRequest, job: WorkerRun, onProgress, onLog, onFinished):
        self.request = request
        self.job = job
        self.onProgress = onProgress
        self.onLog = onLog
        self.onFinished = onFinished
        self.started = time.monotonic()
        self.importing = False
        self.cancelRequested = False
        self.overall = 0.0
        self.shown: list[str] = []
        self.startupSeconds: float | None = None


class SegmentationLogic:
    """MORSE segmentation of a volume node into segmentation and map nodes. See the module docstring.

    Example (Slicer Python console)::

        logic = slicer.util.getModuleLogic("MORSESegmentation")
        outputs = logic.process(slicer.util.getNode("CT"))              # blocking
        print(outputs.createdNodeNames)
        logic.startRun(RunOptions(inputVolume=slicer.util.getNode("CT")),
                       onFinished=lambda outcome: print(outcome.status))  # in the background

    ``mapsAsUint8`` (default True) stores gating and uncertainty maps as 8-bit (value × 255); set it to False for
    float32 maps in 0..1 (4× the memory). ``workerFactory()`` builds the warm worker (tests pass a launcher).
    """

    def __init__(self, dependencies: DependencyInstaller | None = None, workerFactory: Callable | None = None):
        self.dependencies = dependencies or DependencyInstaller()
        self.mapsAsUint8 = True
        self.workerFactory = workerFactory or WarmWorker
        self.progressChanged = Signal()
        self.logged = Signal()
        self.finished = Signal()
        self.lastOutcome: RunOutcome | None = None
        self._cancelEvent = threading.Event()
        self._worker: WarmWorker | None = None
        self._run: _BackgroundRun | None = None
        self._polling = False
        self._timer = None
        self._sceneObservation = None
        self._observeSceneClose()

    # -- blocking run in this process ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the running :meth:`process` to stop at the next check; it then removes what it created and raises
        :class:`CancelledError`. (From a blocked console run, call it from ``progressCallback``.) A background run
        is stopped by :meth:`cancelRun`."""
        self._cancelEvent.set()

    def _cancelCheck(self, cancelCallback: CancelCallback | None) -> CancelCallback:
        def check() -> bool:
            if cancelCallback is not None and cancelCallback():
                self._cancelEvent.set()
            return self._cancelEvent.is_set()

        return check

    def process(
        self,
        inputVolume=None,
        outputSegmentation=None,
        model: str = "default",
        device: str = "auto",
        refine: bool = True,
        gating: bool = True,
        uncertainty: bool = True,
        progressCallback: ProgressCallback | None = None,
        cancelCallback: CancelCallback | None = None,
        replaceExisting: bool = False,
        postprocess: bool | None = True,
    ) -> SegmentationOutputs:
        """Segment ``inputVolume`` in this process and create the output nodes; blocks until done.

        The options are those of :class:`RunOptions` (``postprocess``: the engine's anatomical post-processing);
        ``progressCallback(stage, overall)`` gets ``overall`` in 0..1 for the whole run; ``cancelCallback()`` is
        polled during the run and returning True cancels it (as does :meth:`cancel`).

        :returns: :class:`SegmentationOutputs` naming every node created.
        :raises CancelledError: cancelled (nothing is left in the scene).
        :raises MorseError: bad input, bad model, missing dependencies... (message says what to do).
        """
        options = RunOptions(
            inputVolume=inputVolume,
            outputSegmentation=outputSegmentation,
            model=model,
            device=device,
            refine=refine,
            gating=gating,
            uncertainty=uncertainty,
            postprocess=postprocess,
            replaceExisting=replaceExisting,
            mapsAsUint8=self.mapsAsUint8,
        )
        self._cancelEvent.clear()
        isCancelled = self._cancelCheck(cancelCallback)

        def report(stage: str, fraction: float) -> None:
            if progressCallback is not None:
                progressCallback(stage, overallProgress(stage, fraction))

        options.inputVolume = self.resolveInputVolume(options.inputVolume)  # before anything is installed (own copy)
        report("checking dependencies", 0.0)
        self.dependencies.ensure()
        report("reading input", 0.0)
        request = self.captureRequest(options)
        if isCancelled():
            raise CancelledError()
        result = self.runEngine(request, report, isCancelled)
        return self.importResult(request, result, report, isCancelled)

    # -- step 1 ----------------------------------------------------------------------------------------------------

    def resolveInputVolume(self, inputVolume=None):
        if inputVolume is None:
            inputVolume = activeVolume()
            if inputVolume is None:
                raise InputError(
                    "No input volume: select one in the module, or pass inputVolume=..., or show a volume in the "
                    "slice views (the active volume is used when none is given)."
                )
        checkInputVolume(inputVolume)
        return inputVolume

    def captureRequest(self, options: RunOptions) -> SegmentationRequest:
        """Check ``options`` against the scene and copy the input's voxels and geometry (main thread)."""
        inputVolume = self.resolveInputVolume(options.inputVolume)
        outputSegmentation = options.outputSegmentation
        if outputSegmentation is not None and not outputSegmentation.IsA("vtkMRMLSegmentationNode"):
            raise InputError(
                f"outputSegmentation '{outputSegmentation.GetName()}' is a {outputSegmentation.GetClassName()}; "
                "give a segmentation node, or None to create one"
            )
        if (
            outputSegmentation is not None
            and outputSegmentation.GetTransformNodeID() != inputVolume.GetTransformNodeID()
        ):
            # Segments are written in the input's local (pre-transform) coordinates; under another transform they
            # would be displaced.
            raise InputError(
                f"the output segmentation '{outputSegmentation.GetName()}' is under a different transform than "
                f"'{inputVolume.GetName()}'; choose 'Create new segmentation', or put both under the same transform"
            )
        volume, ijkToRas = volumeToArray(inputVolume)
        return SegmentationRequest(
            inputVolumeID=inputVolume.GetID(),
            inputName=inputVolume.GetName(),
            volume=volume,
            ijkToRas=ijkToRas,
            volumeShape=tuple(volume.shape),
            model=str(options.model or "default"),
            device=str(options.device or "auto"),
            refine=bool(options.refine),
            gating=bool(options.gating),
            uncertainty=bool(options.uncertainty),
            outputSegmentationID=outputSegmentation.GetID() if outputSegmentation is not None else None,
            replaceExisting=bool(options.replaceExisting),
            postprocess=None if options.postprocess is None else bool(options.postprocess),
            mapsAsUint8=bool(options.mapsAsUint8),
        )

    def prepareRequest(
        self,
        inputVolume=None,
        outputSegmentation=None,
        model: str = "default",
        device: str = "auto",
        refine: bool = True,
        gating: bool = True,
        uncertainty: bool = True,
        replaceExisting: bool = False,
        postprocess: bool | None = True,
    ) -> SegmentationRequest:
        """:meth:`captureRequest` with the options as arguments."""
        return self.captureRequest(
            RunOptions(
                inputVolume,
                outputSegmentation,
                model,
                device,
                refine,
                gating,
                uncertainty,
                postprocess,
                replaceExisting,
                self.mapsAsUint8,
            )
        )

    # -- step 2 ----------------------------------------------------------------------------------------------------

    def runEngine(self, request: SegmentationRequest, report: ProgressCallback | None = None, isCancelled=None):
        """Run the engine in this process (blocking); returns a :class:`SegmentationResult` (maps as the worker
        gives them: uint8 0..255 unless ``request.mapsAsUint8`` is False)."""
        from morse.inference.pipeline import segment_volume  # imports torch: only now, never at module load

        result = segment_volume(
            request.volume, request.ijkToRas, progress=report, cancel=isCancelled, **request.engineArguments()
        )
        for message in result.messages:
            log.warning("MORSE: %s", message)
        return result

    # -- step 3 ----------------------------------------------------------------------------------------------------

    def importResult(
        self,
        request: SegmentationRequest,
        result,
        report: ProgressCallback | None = None,
        isCancelled: CancelCallback | None = None,
    ) -> SegmentationOutputs:
        """Create the output nodes for ``result`` (arrays on the input's KJI grid). All or nothing; see
        :func:`.resultImport.importResult`."""
        return resultImport.importResult(request, result, report, isCancelled)

    # -- background run --------------------------------------------------------------------------------------------

    @property
    def isRunning(self) -> bool:
        """True from :meth:`startRun` until just before ``onFinished`` is called."""
        return self._run is not None

    def startRun(
        self,
        options: RunOptions,
        onProgress: ProgressCallback | None = None,
        onLog: Callable[[str, int], None] | None = None,
        onFinished: Callable[[RunOutcome], None] | None = None,
    ) -> None:
        """Start a segmentation in the warm worker and return at once; see the module docstring for the contract."""
        if self._run is not None:
            raise RunError("a MORSE segmentation is already running; cancel it or wait for it to finish")
        inputVolume = self.resolveInputVolume(options.inputVolume)  # before anything is installed
        self.dependencies.ensure()
        request = self.captureRequest(
            dataclasses.replace(options, inputVolume=inputVolume, mapsAsUint8=options.mapsAsUint8 and self.mapsAsUint8)
        )
        if self._worker is None or not self._worker.isAlive():
            self._worker = self.workerFactory()
        job = WorkerRun(request.volume, request.ijkToRas, worker=self._worker, **_workerArguments(request))
        job.start()
        request.volume = None  # the worker has its copy on disk; do not hold the voxels twice during the run
        self._run = _BackgroundRun(request, job, onProgress, onLog, onFinished)
        self._progress(self._run, "starting", 0.0)
        self._log(
            self._run,
            f"Segmenting '{request.inputName}' with model '{request.model}' on '{request.device}'…",
            logging.INFO,
        )
        self._startTimer()

    def cancelRun(self) -> None:
        """Stop the background run: the worker is killed, or the outputs being created are taken back. The outcome
        (``cancelled``) is delivered through ``onFinished``, at once unless output creation is in progress."""
        run = self._run
        if run is None:
            return
        run.cancelRequested = True
        if not run.importing:
            run.job.cancel()
            if not self._polling:
                self.pollRun()

    def pollRun(self) -> bool:
        """Advance the background run (the logic's timer calls this); True while a run is in progress."""
        run = self._run
        if run is None:
            self._stopTimer()
            return False
        if self._polling:
            return True  # re-entered from a callback that processed GUI events
        self._polling = True
        try:
            for event in run.job.poll():
                self._handleEvent(run, event)
            if not run.job.isRunning():
                self._finish(run)
        finally:
            self._polling = False
        return self._run is not None

    def waitForRun(self, timeout: float | None = None) -> RunOutcome | None:
        """Block until the background run ends (scripts, tests); returns its outcome (the last one if none runs)."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.pollRun():
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"the MORSE segmentation did not finish within {timeout} s")
            time.sleep(0.02)
        return self.lastOutcome

    def shutdownWorker(self) -> None:
        """Cancel a background run, and end the warm worker (its memory goes back to the system)."""
        self.cancelRun()
        if self._worker is not None:
            self._worker.shutdown()
            self._worker = None

    @property
    def workerPid(self) -> int | None:
        """The warm worker's process ID, or None when none is up."""
        return self._worker.pid if self._worker is not None and self._worker.isAlive() else None

    def cleanup(self) -> None:
        """Module cleanup: stop any run, end the worker, stop observing the scene."""
        self.shutdownWorker()
        self._stopTimer()
        if self._sceneObservation is not None:
            scene, tag = self._sceneObservation
            scene.RemoveObserver(tag)
            self._sceneObservation = None

    # -- background run: internals ---------------------------------------------------------------------------------

    def _handleEvent(self, run: _BackgroundRun, event) -> None:
        kind = event.kind
        if kind == "ready":
            run.startupSeconds = float(event.data.get("seconds", 0.0))
            self._log(
                run,
                f"Worker process {event.data.get('pid', '?')} started; Python, PyTorch and the engine loaded in "
                f"{run.startupSeconds:.1f} s.",
                logging.INFO,
            )
            self._progress(run, "starting", 1.0)
        elif kind == "model":
            cached = bool(event.data.get("cached"))
            self._log(
                run,
                f"Model cached in worker process {run.job.pid}: no start-up or model load."
                if cached
                else f"Model loaded in {float(event.data.get('seconds', 0.0)):.1f} s.",
                logging.INFO,
            )
            self._progress(run, "loading model", 1.0)
        elif kind == "progress":
            self._progress(run, event.stage, event.fraction)
        elif (kind == "device" and event.text) or kind == "message":
            self._log(run, event.text, logging.WARNING)
        elif kind == "log" and event.text.strip():
            level = logging.WARNING if event.data.get("level") in ("WARNING", "ERROR", "CRITICAL") else logging.INFO
            self._log(run, event.text, level)

    def _progress(self, run: _BackgroundRun, stage: str, fraction: float) -> None:
        run.overall = max(run.overall, overallProgress(stage, fraction))
        if run.onProgress is not None:
            run.onProgress(stage, run.overall)
        self.progressChanged.emit(stage, run.overall)

    def _log(self, run: _BackgroundRun, text: str, level: int) -> None:
        text = text.strip()
        # One line per fact: the engine's warnings reach us as a message and as a log record ("input: " + message).
        if not text or any(text == seen or text.endswith(": " + seen) or seen.endswith(text) for seen in run.shown):
            return
        run.shown.append(text)
        log.log(level, "MORSE: %s", text)
        if run.onLog is not None:
            run.onLog(text, level)
        self.logged.emit(text, level)

    def _finish(self, run: _BackgroundRun) -> None:
        job = run.job
        outcome = RunOutcome("failed", workerPid=job.pid, modelCached=bool(job.modelCached))
        outcome.startupSeconds = run.startupSeconds
        outcome.modelSeconds = job.modelSeconds
        try:
            result = job.result()
            outcome.timings = dict(result.timings)
            run.importing = True
            started = time.perf_counter()
            outputs = self.importResult(
                run.request,
                result,
                lambda stage, fraction: self._progress(run, stage, fraction),
                lambda: run.cancelRequested,
            )
            outcome.timings["import"] = time.perf_counter() - started
            outcome.status, outcome.outputs = "done", outputs
        except CancelledError:
            outcome.status = "cancelled"
            self._log(run, "Cancelled; nothing was added to the scene.", logging.INFO)
        except MorseError as exc:
            outcome.error = str(exc)
            self._log(run, outcome.error, logging.ERROR)
        except Exception as exc:  # a bug: keep the traceback in the log rather than lose it in a timer callback
            log.exception("MORSE segmentation failed")
            outcome.error = f"unexpected error: {exc}"
            self._log(run, outcome.error, logging.ERROR)
        finally:
            job.cleanup()
            self._run = None
            self._stopTimer()
        outcome.seconds = time.monotonic() - run.started
        if outcome.status == "done":
            self._log(
                run,
                f"Done in {outcome.seconds:.1f} s on {outcome.outputs.device}: "
                + ", ".join(outcome.outputs.createdNodeNames)
                + (
                    f"; replaced {', '.join(outcome.outputs.replacedNodeNames)}"
                    if outcome.outputs.replacedNodeNames
                    else ""
                ),
                logging.INFO,
            )
        self.lastOutcome = outcome
        if run.onFinished is not None:
            run.onFinished(outcome)
        self.finished.emit(outcome)

    def _startTimer(self) -> None:
        if self._timer is None:
            try:
                import qt

                timer = qt.QTimer()
                timer.setInterval(POLL_INTERVAL_MS)
                timer.connect("timeout()", self.pollRun)
            except Exception:  # no Qt (plain Python): the caller polls
                return
            self._timer = timer
        self._timer.start()

    def _stopTimer(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    def _observeSceneClose(self) -> None:
        scene = getattr(slicer, "mrmlScene", None)
        if scene is None:
            return
        selfRef = weakref.ref(self)  # the scene must not keep a discarded logic (and its worker) alive

        def onClose(caller, event):
            logic = selfRef()
            if logic is not None:
                logic.shutdownWorker()

        self._sceneObservation = (scene, scene.AddObserver(scene.StartCloseEvent, onClose))

    # -- convenience -----------------------------------------------------------------------------------------------

    def outputsOfVolume(self, inputVolume) -> list:
        """Every node MORSE created for ``inputVolume`` (all runs)."""
        from . import outputNodes

        return outputNodes.outputsOfVolume(inputVolume)

    # -- review ----------------------------------------------------------------------------------------------------

    def reviewTableOf(self, outputsOrNode):
        """The review table node of ``outputsOrNode``: a :class:`SegmentationOutputs`, the table node itself, or an
        input volume (the review table of its latest run; None when it has none).

        :raises ValueError: anything else (the message says what was given).
        """
        if isinstance(outputsOrNode, SegmentationOutputs):
            if outputsOrNode.reviewTable is None:
                raise ValueError("this run has no review table (its result carried no review list)")
            return outputsOrNode.reviewTable
        if reviewTable.isReviewTable(outputsOrNode):
            return outputsOrNode
        if hasattr(outputsOrNode, "IsA") and outputsOrNode.IsA("vtkMRMLScalarVolumeNode"):
            tables = [n for n in self.outputsOfVolume(outputsOrNode) if reviewTable.isReviewTable(n)]
            return tables[-1] if tables else None
        raise ValueError(
            f"{outputsOrNode!r} is not a MORSE review table; give the outputs of a run, its review table node "
            "('<input> MORSE review') or the input volume"
        )

    def _presentReviewTable(self, outputsOrNode):
        table = self.reviewTableOf(outputsOrNode)
        if table is None:
            raise ValueError(f"'{outputsOrNode.GetName()}' has no MORSE review table: run a segmentation on it first")
        if table.GetScene() is None or not table.GetScene().IsNodePresent(table):
            raise ValueError(f"the review table '{table.GetName()}' is no longer in the scene")
        return table

    def reviewList(self, outputsOrTableNode) -> list[dict]:
        """The review of a run: one dict per organ, then one per region in rank order (1 = check first).

        Keys: ``entry`` (``"organ"`` or ``"region"``), ``rank`` (regions), ``organ``, ``kind`` (regions:
        ``"uncertain"`` or ``"head disagreement"``), ``flags`` (organs: absent, truncated, fragmented, low confidence,
        implausible region), ``volume_ml``, ``confidence`` (organs, 0..1), ``mean_uncertainty`` and ``score``
        (regions), ``centroid_ijk`` and ``centroid_ras`` (regions: voxel index and RAS mm of the input), ``status``
        (:data:`REVIEW_STATUSES`). What does not apply to a row is None. ``outputsOrTableNode``: see
        :meth:`reviewTableOf`.
        """
        return reviewTable.rows(self._presentReviewTable(outputsOrTableNode))

    def setReviewStatus(self, tableNode, rank, status: str) -> None:
        """Mark region ``rank`` (or the organ named ``rank``) ``"reviewed"``, ``"corrected"`` or ``"to review"``;
        the status is saved with the scene.

        :raises ValueError: an unknown status, or no region with that rank (the message lists what there is).
        """
        reviewTable.setStatus(self._presentReviewTable(tableNode), rank, status)

    def jumpToRegion(self, tableNode, rank: int) -> tuple[float, float, float]:
        """Centre every slice view on the centre of region ``rank``; returns that point (RAS mm, world: the input's
        parent transform applied)."""
        table = self._presentReviewTable(tableNode)
        r, a, s = reviewTable.regionCentroid(table, rank)
        slicer.vtkMRMLSliceNode.JumpAllSlices(table.GetScene(), r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        return r, a, s


def _workerArguments(request: SegmentationRequest) -> dict:
    """:class:`WorkerRun`'s keywords from the engine arguments (the same dict ``runEngine`` passes)."""
    args = request.engineArguments()
    return {
        "model": args["model"],
        "device": args["device"],
        "refine": args["refine"],
        "gating": args["gating"],
        "uncertainty": args["uncertainty"],
        "postprocess": args["postprocess"],
        "mapsUint8": args["maps_uint8"],
        "review": args["review"],
    }
