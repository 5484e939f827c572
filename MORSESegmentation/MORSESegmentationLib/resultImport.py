"""Step 3 of a run: the engine's result (arrays on the input's KJI grid) becomes MRML nodes, all or nothing.

:func:`importResult` checks that the scene still holds what the run was started on, then creates the organ
segmentation, the experts segmentation, the gating and uncertainty map volumes, the rectified-points segmentation
and the review table (the engine's review list, :mod:`.reviewTable`) in one
:class:`~MORSESegmentationLib.outputNodes.SceneTransaction`. If anything fails or the run is cancelled, everything
created so far is removed and the scene is as it was; earlier results that a re-run replaces are removed only once
every new output exists.

A result from the worker process and one computed in this process are imported by the same code: maps may arrive
as uint8 0..255 or float32 0..1 and are stored as the request says (:func:`outputNodes.storedMap`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import slicer
from morse.errors import CancelledError, InputError, OutputError

from . import outputNodes as out  # noqa: N813  (short name: used on almost every line below)
from . import reviewTable
from .runOptions import SegmentationRequest

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]
CancelCallback = Callable[[], bool]


@dataclass
class SegmentationOutputs:
    """What one run created. Node attributes are the nodes themselves (``None`` when that output was not asked
    for or not available from the model).

    ``segmentation`` is the organ segmentation: a new node, or the ``outputSegmentation`` passed in (then
    ``segmentationCreated`` is False and ``segmentIDs`` are the segments added to it). ``reviewTable`` is the
    ``vtkMRMLTableNode`` "<input> MORSE review" (organs, ranked regions to check, their status), None when the
    result carries no review list.
    """

    inputVolume: object
    segmentation: object
    segmentationCreated: bool = True
    segmentIDs: list[str] = field(default_factory=list)
    expertsSegmentation: object = None
    gatingVolumes: list = field(default_factory=list)
    uncertaintyVolume: object = None
    rectifiedSegmentation: object = None
    reviewTable: object = None
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
        nodes.append(self.reviewTable)
        return [n for n in nodes if n is not None]

    @property
    def createdNodeNames(self) -> list[str]:
        return [n.GetName() for n in self.createdNodes]


@dataclass
class _Naming:
    """Names and provenance shared by every node of one run."""

    base: str
    runID: str
    modelText: str
    parentItem: int


def importResult(
    request: SegmentationRequest,
    result,
    report: ProgressCallback | None = None,
    isCancelled: CancelCallback | None = None,
) -> SegmentationOutputs:
    """Create the output nodes for ``result`` (a ``SegmentationResult`` on the request's grid). All or nothing.

    ``report("creating outputs", fraction)`` is called between the nodes; ``isCancelled()`` is checked at the same
    points, the last time before earlier results are removed (after that the run completes).
    """
    report = report or (lambda _s, _f: None)
    isCancelled = isCancelled or (lambda: False)
    scene = slicer.mrmlScene
    inputVolume, target = _nodesStillPresent(request, result, scene)
    previous = [n for n in (out.outputsOfVolume(inputVolume) if request.replaceExisting else []) if n is not target]
    naming = _naming(request, result, inputVolume, bool(previous), scene)
    outputs = SegmentationOutputs(
        inputVolume=inputVolume,
        segmentation=None,
        runID=naming.runID,
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

    transaction = out.SceneTransaction(scene)
    try:
        step(0.0)
        outputs.segmentation, outputs.segmentIDs, outputs.segmentationCreated = _organSegmentation(
            transaction, target, naming, inputVolume, result, request
        )
        step(0.3)
        if result.dominant_expert is not None and result.gating is not None:
            outputs.expertsSegmentation = _expertsSegmentation(transaction, naming, inputVolume, result, request)
        step(0.45)
        if result.gating is not None or result.uncertainty is not None:
            outputs.mapsFolderItemID = transaction.addFolderItem(
                out.createFolder(f"{naming.base} maps", naming.parentItem, out.Role.MAPS_FOLDER, naming.runID)
            )
        if result.gating is not None:
            count = result.gating.shape[0]
            for k in range(count):
                outputs.gatingVolumes.append(
                    _gatingVolume(transaction, naming, inputVolume, result, request, k, outputs.mapsFolderItemID)
                )
                step(0.45 + 0.35 * (k + 1) / count)
        if result.uncertainty is not None:
            outputs.uncertaintyVolume = _uncertaintyVolume(
                transaction, naming, inputVolume, result, request, outputs.mapsFolderItemID
            )
        step(0.85)
        if result.rectified is not None:
            outputs.rectifiedSegmentation = _rectifiedSegmentation(transaction, naming, inputVolume, result, request)
        if result.review is not None:
            outputs.reviewTable = _reviewTable(transaction, naming, inputVolume, result)
        step(0.95)
        step(1.0)  # the last point at which a cancel is honoured: after it the old results are removed
        # Everything new exists: only now remove what it replaces (a failed run above kept the old results).
        if request.replaceExisting:
            outputs.replacedNodeNames = _removePrevious(previous, target)
    except BaseException:
        transaction.rollback()
        raise
    log.info("MORSE created %s", ", ".join(outputs.createdNodeNames) or "segments only")
    return outputs


# -- checks and names --------------------------------------------------------------------------------------------------


def _nodesStillPresent(request: SegmentationRequest, result, scene):
    """The input volume and the chosen output segmentation (or None), as they are now; the run's result must fit."""
    inputVolume = scene.GetNodeByID(request.inputVolumeID)
    if inputVolume is None:
        raise InputError(f"the input volume '{request.inputName}' was removed from the scene during the run")
    if tuple(result.labels.shape) != tuple(request.volumeShape):
        raise OutputError(f"result shape {result.labels.shape} differs from the input {request.volumeShape}")
    target = scene.GetNodeByID(request.outputSegmentationID) if request.outputSegmentationID else None
    if request.outputSegmentationID and target is None:
        raise InputError("the chosen output segmentation was removed from the scene during the run")
    return inputVolume, target


def _naming(request: SegmentationRequest, result, inputVolume, replacing: bool, scene) -> _Naming:
    # When replacing, the new nodes get the plain names (the old ones are removed at the end); a clash only lasts
    # until then, so they are created with their final names straight away.
    suffix = "" if replacing else out.runSuffix(request.inputName, scene)
    return _Naming(
        base=f"{request.inputName} MORSE{suffix}",
        runID=out.newRunID(),
        modelText=f"{result.model_id} {result.model_version}".strip(),
        parentItem=out.parentItemOf(inputVolume),
    )


# -- the outputs -------------------------------------------------------------------------------------------------------


def _organSegmentation(transaction, target, naming: _Naming, inputVolume, result, request: SegmentationRequest):
    """One segment per organ: in a new node, or added to the user's ``target`` (its other segments kept)."""
    specs = [
        out.SegmentSpec(
            value=info.value,
            name=info.name,
            color=tuple(info.color),
            terminology=out.terminologyEntry(info),
            tags={out.SEGMENT_OUTPUT_TAG: out.Role.ORGAN_SEGMENT, out.SEGMENT_RUN_TAG: naming.runID},
        )
        for info in result.labels_info
    ]
    if target is None:
        node = transaction.addNode(out.createSegmentationNode(naming.base, inputVolume))
        out.markOutput(node, out.Role.SEGMENTATION, naming.runID, inputVolume, naming.modelText)
        out.placeUnder(node, naming.parentItem)
        ids = out.addLabelmapSegments(node, result.labels, request.ijkToRas, specs)
        return node, ids, True
    segmentation = target.GetSegmentation()
    if request.replaceExisting:
        for segmentID in _morseSegmentIDs(target):
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


def _morseSegmentIDs(segmentationNode) -> list[str]:
    segmentation = segmentationNode.GetSegmentation()
    return [
        segmentation.GetNthSegmentID(i)
        for i in range(segmentation.GetNumberOfSegments())
        if segmentation.GetNthSegment(i).HasTag(out.SEGMENT_OUTPUT_TAG)
    ]


def _expertsSegmentation(transaction, naming: _Naming, inputVolume, result, request: SegmentationRequest):
    node = transaction.addNode(out.createSegmentationNode(f"{naming.base} experts", inputVolume))
    out.markOutput(node, out.Role.EXPERTS, naming.runID, inputVolume, naming.modelText)
    out.placeUnder(node, naming.parentItem)
    count = result.gating.shape[0]
    specs = [out.SegmentSpec(k + 1, f"expert {k + 1}", out.expertColor(k)) for k in range(count)]
    out.addLabelmapSegments(node, result.dominant_expert, request.ijkToRas, specs)
    node.SetDescription(
        f"MORSE experts: segment k holds the voxels where expert k has the largest gate weight ({count} experts; "
        f"model {naming.modelText})."
    )
    node.GetDisplayNode().SetVisibility(False)  # a whole-image partition; shown on demand
    return node


def _gatingVolume(transaction, naming: _Naming, inputVolume, result, request: SegmentationRequest, k: int, folder):
    count = result.gating.shape[0]
    node = transaction.addNode(
        out.createMapVolume(
            f"{naming.base} gating expert {k + 1}",
            result.gating[k],
            request.ijkToRas,
            out.expertColorNode(k).GetID(),
            request.mapsAsUint8,
            f"MORSE gate weight of expert {k + 1} (0..1; the weights of all experts sum to 1 in each voxel). "
            f"Model {naming.modelText}.",
            inputVolume,
            visibleFrom=1.0 / count,
        )
    )
    out.markOutput(node, out.Role.GATING, naming.runID, inputVolume, naming.modelText)
    out.placeUnder(node, folder)
    return node


def _uncertaintyVolume(transaction, naming: _Naming, inputVolume, result, request: SegmentationRequest, folder):
    node = transaction.addNode(
        out.createMapVolume(
            f"{naming.base} uncertainty",
            result.uncertainty,
            request.ijkToRas,
            out.uncertaintyColorNode().GetID(),
            request.mapsAsUint8,
            "MORSE point uncertainty: 1 - (p_max - p_second) of the coarse class probabilities "
            f"(0 = certain, 1 = two classes equally likely). Model {naming.modelText}.",
            inputVolume,
            visibleFrom=out.UNCERTAINTY_VISIBLE_FROM,
        )
    )
    out.markOutput(node, out.Role.UNCERTAINTY, naming.runID, inputVolume, naming.modelText)
    out.placeUnder(node, folder)
    return node


def _rectifiedSegmentation(transaction, naming: _Naming, inputVolume, result, request: SegmentationRequest):
    node = transaction.addNode(out.createSegmentationNode(f"{naming.base} rectified", inputVolume))
    out.markOutput(node, out.Role.RECTIFIED, naming.runID, inputVolume, naming.modelText)
    out.placeUnder(node, naming.parentItem)
    out.addMaskSegment(node, result.rectified, request.ijkToRas, "rectified points", out.RECTIFIED_COLOR)
    out.addMaskSegment(
        node, result.labels != result.coarse_labels, request.ijkToRas, "changed labels", out.CHANGED_COLOR
    )
    node.SetDescription(
        "MORSE implicit rendering head: 'rectified points' are the voxels whose class scores the head re-predicted "
        "(the most uncertain ones); 'changed labels' are those where that changed the label."
    )
    node.GetDisplayNode().SetVisibility(False)
    return node


def _reviewTable(transaction, naming: _Naming, inputVolume, result):
    node = transaction.addNode(reviewTable.createReviewTable(f"{naming.base} review", result.review))
    out.markOutput(node, reviewTable.ROLE, naming.runID, inputVolume, naming.modelText)
    out.placeUnder(node, naming.parentItem)
    regions = len(result.review.get("regions", []))
    node.SetDescription(
        f"MORSE review: the organs (volume, confidence, flags) and {regions} {'region' if regions == 1 else 'regions'}"
        " to check, ranked by volume x "
        "mean uncertainty; the status column says which were reviewed or corrected. "
        f"Model {naming.modelText}."
    )
    return node


def _removePrevious(previous: list, keep) -> list[str]:
    """Remove the earlier outputs a re-run replaces (and their emptied maps folders); return their names."""
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
