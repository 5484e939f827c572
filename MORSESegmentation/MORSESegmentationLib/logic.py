"""The module's logic: input node → engine → output nodes. GUI-free; usable from the Python console.

A run has three steps, so that the widget can run the middle one in a worker process:

1. :meth:`SegmentationLogic.prepareRequest` (main thread): resolve the input (default: the active volume), check
   it, copy its voxels (KJI) and IJK→RAS matrix.
2. :meth:`SegmentationLogic.runEngine`: :func:`morse.inference.pipeline.segment_volume` in this process (the
   widget uses :class:`~MORSESegmentationLib.backgroundRun.WorkerRun` instead). The scene is not touched.
3. :meth:`SegmentationLogic.importResult` (main thread): create every output node in one transaction. If anything
   fails or the run is cancelled, everything created so far is removed and the scene is as it was.

Replacing earlier results (``replaceExisting=True``) removes only nodes that MORSE made for the same input volume
(marked with the ``MORSE.Output`` attribute and a reference to the input), and only after the new outputs exist,
so a failed re-run keeps the old results. Without it, a run adds new nodes named ``<input> MORSE 2`` etc.

A user's own segmentation chosen as ``outputSegmentation`` is never cleared: MORSE adds its organ segments to it and
leaves every other segment alone. With ``replaceExisting=True`` the organ segments of earlier MORSE runs in it
(tagged ``MORSE.Output``) are removed; hand-made segments never are. To start from an empty node, choose "Create new
segmentation" (no ``outputSegmentation``) or clear the node yourself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import slicer
from morse.errors import CancelledError, InputError, OutputError

from . import outputNodes as out  # noqa: N813  (short name: used on almost every line below)
from .dependencies import DependencyInstaller
from .volumeArrays import checkInputVolume, volumeToArray

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]
CancelCallback = Callable[[], bool]

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


def overallProgress(stage: str, fraction: float) -> float:
    """Position of ``(stage, fraction within stage)`` on a 0..1 progress bar; unknown stages keep 0."""
    low, high = STAGE_RANGES.get(stage, (0.0, 0.0))
    return low + (high - low) * min(1.0, max(0.0, float(fraction)))


@dataclass
class SegmentationRequest:
    """Everything a run needs, captured on the main thread. ``volume`` is a KJI copy of the input's voxels (the
    widget drops it once the worker has its own copy); ``volumeShape`` is its (K, J, I) shape."""

    inputVolumeID: str
    inputName: str
    volume: np.ndarray | None
    ijkToRas: np.ndarray
    volumeShape: tuple = ()
    model: str = "default"
    device: str = "auto"
    refine: bool = True
    gating: bool = True
    uncertainty: bool = True
    outputSegmentationID: str | None = None
    replaceExisting: bool = False


@dataclass
class SegmentationOutputs:
    """What one run created. Node attributes are the nodes themselves (``None`` when that output was not asked
    for or not available from the model).

    ``segmentation`` is the organ segmentation: a new node, or the ``outputSegmentation`` passed in (then
    ``segmentationCreated`` is False and ``segmentIDs`` are the segments added to it).
    """

    inputVolume: object
    segmentation: object
    segmentationCreated: bool = True
    segmentIDs: list[str] = field(default_factory=list)
    expertsSegmentation: object = None
    gatingVolumes: list = field(default_factory=list)
    uncertaintyVolume: object = None
    rectifiedSegmentation: object = None
    mapsFolderItemID: int = 0
    runID: str = ""
    modelId: str = ""
    modelVersion: str = ""
    device: str = ""
    timings: dict = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    replacedNodeNames: list[str] = field(default_factory=list)

    @property
    def createdNodes(self) -> list:
        """Every node this run added to the scene (not the reused ``outputSegmentation``)."""
        nodes = [self.segmentation] if self.segmentationCreated else []
        nodes += [self.expertsSegmentation, *self.gatingVolumes, self.uncertaintyVolume, self.rectifiedSegmentation]
        return [n for n in nodes if n is not None]

    @property
    def createdNodeNames(self) -> list[str]:
        return [n.GetName() for n in self.createdNodes]


def activeVolume():
    """The volume shown as background in the slice views (the application's active volume), or None."""
    selection = slicer.mrmlScene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    volumeID = selection.GetActiveVolumeID() if selection is not None else None
    return slicer.mrmlScene.GetNodeByID(volumeID) if volumeID else None


class SegmentationLogic:
    """MORSE segmentation of a volume node into segmentation and map nodes. See the module docstring.

    Example (Slicer Python console)::

        logic = slicer.util.getModuleLogic("MORSESegmentation")
        outputs = logic.process(slicer.util.getNode("CT"))
        print(outputs.createdNodeNames)

    ``mapsAsUint8`` (default True) stores gating and uncertainty maps as 8-bit (value × 255); set it to False for
    float32 maps in 0..1 (4× the memory).
    """

    def __init__(self, dependencies: DependencyInstaller | None = None):
        self.dependencies = dependencies or DependencyInstaller()
        self.mapsAsUint8 = True
        self._cancelEvent = threading.Event()

    # -- cancel ----------------------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the running :meth:`process` to stop at the next check; it then removes what it created and raises
        :class:`CancelledError`. (From a blocked console run, call it from ``progressCallback``.)"""
        self._cancelEvent.set()

    def _cancelCheck(self, cancelCallback: CancelCallback | None) -> CancelCallback:
        def check() -> bool:
            if cancelCallback is not None and cancelCallback():
                self._cancelEvent.set()
            return self._cancelEvent.is_set()

        return check

    # -- the whole run ---------------------------------------------------------------------------------------------

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
    ) -> SegmentationOutputs:
        """Segment ``inputVolume`` and create the output nodes; blocks until done.

        :param inputVolume: a scalar volume node; None = the active volume of the slice views.
        :param outputSegmentation: None = create ``<input> MORSE``; or a segmentation node to add the organ
            segments to (its other segments are kept).
        :param model: ``"default"``, a bundled model id, or a model-pack folder.
        :param device: ``auto``/``cpu``/``cuda``/``mps``; an unavailable one falls back to the CPU, with the reason
            in ``outputs.messages`` and the log.
        :param refine / gating / uncertainty: rendering-head refinement; expert gating maps (and the experts
            segmentation); the uncertainty map.
        :param progressCallback: ``progressCallback(stage, overall)``, ``overall`` in 0..1 for the whole run.
        :param cancelCallback: polled during the run; returning True cancels it (as does :meth:`cancel`).
        :param replaceExisting: replace earlier MORSE outputs of this volume instead of adding new ones.
        :returns: :class:`SegmentationOutputs` naming every node created.
        :raises CancelledError: cancelled (nothing is left in the scene).
        :raises MorseError: bad input, bad model, missing dependencies... (message says what to do).
        """
        self._cancelEvent.clear()
        isCancelled = self._cancelCheck(cancelCallback)

        def report(stage: str, fraction: float) -> None:
            if progressCallback is not None:
                progressCallback(stage, overallProgress(stage, fraction))

        report("checking dependencies", 0.0)
        self.dependencies.ensure()
        report("reading input", 0.0)
        request = self.prepareRequest(
            inputVolume, outputSegmentation, model, device, refine, gating, uncertainty, replaceExisting
        )
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
    ) -> SegmentationRequest:
        inputVolume = self.resolveInputVolume(inputVolume)
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
            model=str(model or "default"),
            device=str(device or "auto"),
            refine=bool(refine),
            gating=bool(gating),
            uncertainty=bool(uncertainty),
            outputSegmentationID=outputSegmentation.GetID() if outputSegmentation is not None else None,
            replaceExisting=bool(replaceExisting),
        )

    # -- step 2 ----------------------------------------------------------------------------------------------------

    def runEngine(self, request: SegmentationRequest, report: ProgressCallback | None = None, isCancelled=None):
        """Run the engine in this process (blocking); returns a :class:`SegmentationResult`."""
        from morse.inference.pipeline import segment_volume  # imports torch: only now, never at module load

        result = segment_volume(
            request.volume,
            request.ijkToRas,
            model=request.model,
            device=request.device,
            refine=request.refine,
            gating=request.gating,
            uncertainty=request.uncertainty,
            progress=report,
            cancel=isCancelled,
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
        """Create the output nodes for ``result`` (arrays on the input's KJI grid). All or nothing."""
        report = report or (lambda _s, _f: None)
        isCancelled = isCancelled or (lambda: False)
        scene = slicer.mrmlScene
        inputVolume = scene.GetNodeByID(request.inputVolumeID)
        if inputVolume is None:
            raise InputError(f"the input volume '{request.inputName}' was removed from the scene during the run")
        if tuple(result.labels.shape) != tuple(request.volumeShape):
            raise OutputError(f"result shape {result.labels.shape} differs from the input {request.volumeShape}")
        target = scene.GetNodeByID(request.outputSegmentationID) if request.outputSegmentationID else None
        if request.outputSegmentationID and target is None:
            raise InputError("the chosen output segmentation was removed from the scene during the run")

        previous = out.outputsOfVolume(inputVolume) if request.replaceExisting else []
        previous = [n for n in previous if n is not target]
        transaction = out.SceneTransaction(scene)
        runID = out.newRunID()
        # With replaceExisting the new nodes get the plain names (the old ones are removed below); a clash only
        # lasts until then, so they are created with final names straight away when replacing.
        suffix = "" if previous else out.runSuffix(request.inputName, scene)
        base = f"{request.inputName} MORSE{suffix}"
        modelText = f"{result.model_id} {result.model_version}".strip()
        ijk = request.ijkToRas
        parentItem = out.parentItemOf(inputVolume)
        outputs = SegmentationOutputs(
            inputVolume=inputVolume,
            segmentation=None,
            runID=runID,
            modelId=result.model_id,
            modelVersion=result.model_version,
            device=result.device,
            timings=dict(result.timings),
            messages=list(result.messages),
        )

        def step(fraction: float) -> None:
            report("creating outputs", fraction)
            if isCancelled():
                raise CancelledError()

        try:
            step(0.0)
            outputs.segmentation, outputs.segmentIDs, outputs.segmentationCreated = self._organSegmentation(
                transaction, target, base, inputVolume, result, runID, modelText, parentItem, request
            )
            step(0.3)
            if result.dominant_expert is not None and result.gating is not None:
                outputs.expertsSegmentation = self._expertsSegmentation(
                    transaction, f"{base} experts", inputVolume, result, ijk, runID, modelText, parentItem
                )
            step(0.45)
            mapsWanted = result.gating is not None or result.uncertainty is not None
            if mapsWanted:
                outputs.mapsFolderItemID = transaction.addFolderItem(
                    out.createFolder(f"{base} maps", parentItem, out.Role.MAPS_FOLDER, runID)
                )
            if result.gating is not None:
                for k in range(result.gating.shape[0]):
                    colorID = out.EXPERT_RAMPS[k % len(out.EXPERT_RAMPS)][0]
                    node = transaction.addNode(
                        out.createMapVolume(
                            f"{base} gating expert {k + 1}",
                            result.gating[k],
                            ijk,
                            colorID,
                            self.mapsAsUint8,
                            f"MORSE gate weight of expert {k + 1} (0..1; the weights of all experts sum to 1 in each "
                            f"voxel). Model {modelText}.",
                            inputVolume,
                            visibleFrom=1.0 / result.gating.shape[0],
                        )
                    )
                    out.markOutput(node, out.Role.GATING, runID, inputVolume, modelText)
                    out.placeUnder(node, outputs.mapsFolderItemID)
                    outputs.gatingVolumes.append(node)
                    step(0.45 + 0.35 * (k + 1) / result.gating.shape[0])
            if result.uncertainty is not None:
                node = transaction.addNode(
                    out.createMapVolume(
                        f"{base} uncertainty",
                        result.uncertainty,
                        ijk,
                        out.UNCERTAINTY_COLOR_NODE_ID,
                        self.mapsAsUint8,
                        "MORSE point uncertainty: 1 - (p_max - p_second) of the coarse class probabilities "
                        f"(0 = certain, 1 = two classes equally likely). Model {modelText}.",
                        inputVolume,
                        visibleFrom=out.UNCERTAINTY_VISIBLE_FROM,
                    )
                )
                out.markOutput(node, out.Role.UNCERTAINTY, runID, inputVolume, modelText)
                out.placeUnder(node, outputs.mapsFolderItemID)
                outputs.uncertaintyVolume = node
            step(0.85)
            if result.rectified is not None:
                outputs.rectifiedSegmentation = self._rectifiedSegmentation(
                    transaction, f"{base} rectified", inputVolume, result, ijk, runID, modelText, parentItem
                )
            step(0.95)
            step(1.0)  # the last point at which a cancel is honoured: after it the old results are removed
            # Everything new exists: only now remove what it replaces (a failed run above kept the old results).
            if request.replaceExisting:
                outputs.replacedNodeNames = self._removePrevious(previous, target)
        except BaseException:
            transaction.rollback()
            raise
        log.info("MORSE created %s", ", ".join(outputs.createdNodeNames) or "segments only")
        return outputs

    # -- output builders -------------------------------------------------------------------------------------------

    def _organSegmentation(self, transaction, target, name, inputVolume, result, runID, modelText, parentItem, request):
        specs = [
            out.SegmentSpec(
                value=info.value,
                name=info.name,
                color=tuple(info.color),
                terminology=out.terminologyEntry(info),
                tags={out.SEGMENT_OUTPUT_TAG: out.Role.ORGAN_SEGMENT, out.SEGMENT_RUN_TAG: runID},
            )
            for info in result.labels_info
        ]
        if target is None:
            node = transaction.addNode(out.createSegmentationNode(name, inputVolume))
            out.markOutput(node, out.Role.SEGMENTATION, runID, inputVolume, modelText)
            out.placeUnder(node, parentItem)
            ids = out.addLabelmapSegments(node, result.labels, request.ijkToRas, specs)
            return node, ids, True
        # A segmentation chosen by the user: add segments, keep everything that is there.
        segmentation = target.GetSegmentation()
        if request.replaceExisting:
            for segmentID in self._morseSegmentIDs(target):
                transaction.removeSegment(target, segmentID)  # MORSE's own earlier segments only; restored on failure
        geometryName = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        if not segmentation.GetConversionParameter(geometryName) and segmentation.GetNumberOfSegments() == 0:
            transaction.setReferenceGeometry(target, inputVolume)  # an empty node: make it the input's grid
        if target.GetDisplayNode() is None:
            target.CreateDefaultDisplayNodes()
        ids = out.addLabelmapSegments(target, result.labels, request.ijkToRas, specs)
        for segmentID in ids:
            transaction.addSegment(target, segmentID)
        return target, ids, False

    @staticmethod
    def _morseSegmentIDs(segmentationNode) -> list[str]:
        segmentation = segmentationNode.GetSegmentation()
        ids = []
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            if segment.HasTag(out.SEGMENT_OUTPUT_TAG):
                ids.append(segmentation.GetNthSegmentID(i))
        return ids

    def _expertsSegmentation(self, transaction, name, inputVolume, result, ijkToRas, runID, modelText, parentItem):
        node = transaction.addNode(out.createSegmentationNode(name, inputVolume))
        out.markOutput(node, out.Role.EXPERTS, runID, inputVolume, modelText)
        out.placeUnder(node, parentItem)
        count = result.gating.shape[0]
        specs = [
            out.SegmentSpec(k + 1, f"expert {k + 1}", out.EXPERT_RAMPS[k % len(out.EXPERT_RAMPS)][1])
            for k in range(count)
        ]
        out.addLabelmapSegments(node, result.dominant_expert, ijkToRas, specs)
        node.SetDescription(
            f"MORSE experts: segment k holds the voxels where expert k has the largest gate weight ({count} experts; "
            f"model {modelText})."
        )
        node.GetDisplayNode().SetVisibility(False)  # a whole-image partition; shown on demand
        return node

    def _rectifiedSegmentation(self, transaction, name, inputVolume, result, ijkToRas, runID, modelText, parentItem):
        node = transaction.addNode(out.createSegmentationNode(name, inputVolume))
        out.markOutput(node, out.Role.RECTIFIED, runID, inputVolume, modelText)
        out.placeUnder(node, parentItem)
        out.addMaskSegment(node, result.rectified, ijkToRas, "rectified points", out.RECTIFIED_COLOR)
        out.addMaskSegment(node, result.labels != result.coarse_labels, ijkToRas, "changed labels", out.CHANGED_COLOR)
        node.SetDescription(
            "MORSE implicit rendering head: 'rectified points' are the voxels whose class scores the head re-predicted "
            "(the most uncertain ones); 'changed labels' are those where that changed the label."
        )
        node.GetDisplayNode().SetVisibility(False)
        return node

    def _removePrevious(self, previous: list, keep) -> list[str]:
        scene = slicer.mrmlScene
        shNode = scene.GetSubjectHierarchyNode()
        names, folders = [], set()
        for node in previous:
            if node is keep or not scene.IsNodePresent(node):
                continue
            item = shNode.GetItemByDataNode(node)
            parent = shNode.GetItemParent(item) if item else 0
            if parent and shNode.GetItemAttribute(parent, out.OUTPUT_ATTRIBUTE) == out.Role.MAPS_FOLDER:
                folders.add(parent)
            names.append(node.GetName())
            out.removeNodeAndItem(node, scene)
        for folder in folders:
            if shNode.GetNumberOfItemChildren(folder) == 0:
                shNode.RemoveItem(folder, False, False)
        return names

    # -- convenience -----------------------------------------------------------------------------------------------

    def outputsOfVolume(self, inputVolume) -> list:
        """Every node MORSE created for ``inputVolume`` (all runs)."""
        return out.outputsOfVolume(inputVolume)
