"""The MRML nodes a MORSE run creates, how they are marked, and how a run takes them back.

Every node MORSE creates carries the attribute ``MORSE.Output`` (its role, see :class:`Role`), ``MORSE.RunID`` and
a node reference ``MORSEInputVolume`` to the segmented volume. That marking is what lets a later run replace *its
own* earlier outputs (and nothing else), and it survives saving and reloading the scene.

Arrays passed in here are KJI (``[k, j, i]``) on the grid of the 4×4 IJK→RAS matrix given with them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .volumeArrays import addVolumeFromArray

OUTPUT_ATTRIBUTE = "MORSE.Output"
RUN_ATTRIBUTE = "MORSE.RunID"
MODEL_ATTRIBUTE = "MORSE.Model"
SCALE_ATTRIBUTE = "MORSE.ValueScale"
INPUT_REFERENCE_ROLE = "MORSEInputVolume"
SEGMENT_OUTPUT_TAG = "MORSE.Output"
SEGMENT_RUN_TAG = "MORSE.RunID"

# Expert k is drawn in the k-th colour both as a segment and in its gating map, so the two views of one expert match.
EXPERT_COLORS = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.4, 1.0),
    (1.0, 1.0, 0.0),
    (0.0, 1.0, 1.0),
    (1.0, 0.0, 1.0),
)
# Map colour tables run from a light colour (low values) to a saturated one (high values), never from black: a map is
# drawn over the CT, and a dark end would blacken the tissue under every weak value (see mapColorNode).
UNCERTAINTY_COLORS = ((1.0, 1.0, 0.6), (1.0, 0.0, 0.0))  # pale yellow to red
EXPERT_TINT = 0.6  # the low end of expert k's ramp: its colour mixed with this much white
MAP_TABLE_SIZE = 256
COLOR_TABLE_ATTRIBUTE = "MORSE.ColorTable"
# Maps are drawn only from these values up (lower ones are transparent in the slice views). A gate below its fair share
# (1/N) says only that another expert leads. The uncertainty inside an organ the model is sure of is ≈ 0.05-0.15
# (0.1 at the median in the default model's organs on the sample CT), its borders and the organs it hesitates over are
# above 0.2: from 0.2 up, the map shows those and leaves the CT of the rest as it is.
UNCERTAINTY_VISIBLE_FROM = 0.2
RECTIFIED_COLOR = (1.0, 0.85, 0.0)
CHANGED_COLOR = (1.0, 0.0, 1.0)

UINT8_SCALE = 1.0 / 255.0  # = morse.inference.map_values.MAP_SCALE


class Role:
    """Values of the ``MORSE.Output`` attribute."""

    SEGMENTATION = "segmentation"
    EXPERTS = "experts"
    GATING = "gating"
    UNCERTAINTY = "uncertainty"
    RECTIFIED = "rectified"
    MAPS_FOLDER = "maps"
    ORGAN_SEGMENT = "organ"


@dataclass
class SegmentSpec:
    """One segment to create from a label map: voxels equal to ``value`` become segment ``name``."""

    value: int
    name: str
    color: tuple[float, float, float]
    terminology: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def terminologyEntry(info) -> str | None:
    """Slicer's ``TerminologyEntry`` tag of a :class:`LabelInfo` (SNOMED-CT category and type), or None.

    The format is the engine's (``morse segment`` writes the same tag into its ``.seg.nrrd``), in Slicer's own
    terminology contexts so that the Segment Editor recognises the codes:
    ``context~catScheme^catCode^catMeaning~typeScheme^typeCode^typeMeaning~^^~anatomicContext~^^~^^``.
    """
    from morse.inference.outputs import terminology_entry

    return terminology_entry(info) or None


def newRunID() -> str:
    return uuid.uuid4().hex[:12]


class SceneTransaction:
    """What one run adds to the scene, so that a failed or cancelled run can remove all of it.

    Nodes are recorded explicitly as they are created; :meth:`rollback` also removes every other node that
    appeared in the scene since the transaction started (display, storage and colour nodes created on the way).
    Outputs are created on the main thread in one go; the progress callback between them may let the GUI process a
    Cancel click, and the panel keeps its inputs locked during a run, so every node that appears meanwhile is the
    run's own. Segments added to a segmentation that existed before are removed one by one; that node stays.
    """

    def __init__(self, scene=None):
        self.scene = scene or slicer.mrmlScene
        self.nodeIDsBefore = {self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())}
        self.nodes: list = []
        self.folderItems: list[int] = []
        self.segments: list[tuple[object, str]] = []
        self.removedSegments: list[tuple[object, str, object, int]] = []
        self.geometryRestore: list[tuple[object, str]] = []

    def addNode(self, node):
        self.nodes.append(node)
        return node

    def addFolderItem(self, itemID: int) -> int:
        self.folderItems.append(itemID)
        return itemID

    def addSegment(self, segmentationNode, segmentID: str) -> None:
        self.segments.append((segmentationNode, segmentID))

    def removeSegment(self, segmentationNode, segmentID: str) -> None:
        """Remove a segment from a node that existed before, keeping a copy to put back on rollback."""
        segmentation = segmentationNode.GetSegmentation()
        backup = slicer.vtkSegment()
        backup.DeepCopy(segmentation.GetSegment(segmentID))
        index = segmentation.GetSegmentIndex(segmentID)
        self.removedSegments.append((segmentationNode, segmentID, backup, index))
        segmentation.RemoveSegment(segmentID)

    def setReferenceGeometry(self, segmentationNode, volumeNode) -> None:
        """Set a pre-existing segmentation's reference geometry, remembering the old one for rollback."""
        segmentation = segmentationNode.GetSegmentation()
        name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        self.geometryRestore.append((segmentationNode, segmentation.GetConversionParameter(name)))
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)

    def rollback(self) -> None:
        for segmentationNode, segmentID in reversed(self.segments):
            if segmentationNode.GetSegmentation().GetSegment(segmentID) is not None:
                segmentationNode.GetSegmentation().RemoveSegment(segmentID)
        for segmentationNode, segmentID, backup, index in reversed(self.removedSegments):
            segmentationNode.GetSegmentation().AddSegment(backup, segmentID)
            segmentationNode.GetSegmentation().SetSegmentIndex(segmentID, index)  # back in its place in the list
        name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        for segmentationNode, geometry in reversed(self.geometryRestore):
            segmentationNode.GetSegmentation().SetConversionParameter(name, geometry)
        shNode = self.scene.GetSubjectHierarchyNode()
        for node in reversed(self.nodes):
            removeNodeAndItem(node, self.scene)
        for itemID in reversed(self.folderItems):
            if shNode is not None and itemExists(shNode, itemID):
                shNode.RemoveItem(itemID, False, False)
        added = [
            self.scene.GetNthNode(i)
            for i in range(self.scene.GetNumberOfNodes())
            if self.scene.GetNthNode(i).GetID() not in self.nodeIDsBefore
        ]
        for node in reversed(added):
            removeNodeAndItem(node, self.scene)
        self.nodes.clear()
        self.folderItems.clear()
        self.segments.clear()
        self.removedSegments.clear()
        self.geometryRestore.clear()


def itemExists(shNode, itemID: int) -> bool:
    """True if the subject hierarchy has this item (asking for a missing item's name logs an error)."""
    items = vtk.vtkIdList()
    shNode.GetItemChildren(shNode.GetSceneItemID(), items, True)
    return items.IsId(itemID) >= 0


def removeNodeAndItem(node, scene=None) -> None:
    """Remove a node and its subject-hierarchy item (without the Qt plugins nothing removes the item for us)."""
    scene = scene or slicer.mrmlScene
    if not scene.IsNodePresent(node):
        return
    shNode = scene.GetSubjectHierarchyNode()
    itemID = shNode.GetItemByDataNode(node) if shNode is not None and node is not shNode else 0
    if itemID:
        shNode.RemoveItem(itemID, False, False)  # the item only; the node goes next
    if scene.IsNodePresent(node):
        scene.RemoveNode(node)


# ----------------------------------------------------------------------------------------------------------------------
# marking and finding outputs


def markOutput(node, role: str, runID: str, inputVolume, model: str = "") -> None:
    node.SetAttribute(OUTPUT_ATTRIBUTE, role)
    node.SetAttribute(RUN_ATTRIBUTE, runID)
    if model:
        node.SetAttribute(MODEL_ATTRIBUTE, model)
    node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, inputVolume.GetID())


def outputsOfVolume(inputVolume, scene=None) -> list:
    """Every node MORSE created for ``inputVolume`` (any run), in scene order."""
    scene = scene or slicer.mrmlScene
    found = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        if node.GetAttribute(OUTPUT_ATTRIBUTE) and node.GetNodeReferenceID(INPUT_REFERENCE_ROLE) == inputVolume.GetID():
            found.append(node)
    return found


def runSuffix(inputName: str, scene=None) -> str:
    """``""`` for the first run on a volume, then ``" 2"``, ``" 3"``...: the first suffix whose names are all free,
    so that the outputs of one run share one recognisable name (``CT MORSE 2``, ``CT MORSE 2 experts``...)."""
    scene = scene or slicer.mrmlScene
    shNode = scene.GetSubjectHierarchyNode()
    items = vtk.vtkIdList()
    shNode.GetItemChildren(shNode.GetSceneItemID(), items, True)
    itemNames = {shNode.GetItemName(items.GetId(i)) for i in range(items.GetNumberOfIds())}
    number = 1
    while True:
        suffix = "" if number == 1 else f" {number}"
        base = f"{inputName} MORSE{suffix}"
        names = [base] + [f"{base} {what}" for what in ("experts", "rectified", "uncertainty", "gating expert 1")]
        if f"{base} maps" not in itemNames and not any(scene.GetFirstNodeByName(n) for n in names):
            return suffix
        number += 1


# ----------------------------------------------------------------------------------------------------------------------
# subject hierarchy


def parentItemOf(node) -> int:
    """Subject-hierarchy parent of ``node`` (its study when loaded from DICOM), or the scene item."""
    shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
    itemID = shNode.GetItemByDataNode(node)
    parent = shNode.GetItemParent(itemID) if itemID else 0
    return parent or shNode.GetSceneItemID()


def placeUnder(node, parentItemID: int) -> int:
    """Put ``node`` under ``parentItemID`` in the subject hierarchy (creating its item where the application has
    not, e.g. without the Qt subject-hierarchy plugins); return the node's item."""
    shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
    itemID = shNode.GetItemByDataNode(node)
    if itemID:
        shNode.SetItemParent(itemID, parentItemID)
    else:
        itemID = shNode.CreateItem(parentItemID, node)
    return itemID


def createFolder(name: str, parentItemID: int, role: str, runID: str) -> int:
    shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
    itemID = shNode.CreateFolderItem(parentItemID, name)
    shNode.SetItemAttribute(itemID, OUTPUT_ATTRIBUTE, role)
    shNode.SetItemAttribute(itemID, RUN_ATTRIBUTE, runID)
    return itemID


# ----------------------------------------------------------------------------------------------------------------------
# segmentations


def createSegmentationNode(name: str, referenceVolume):
    """An empty segmentation node with display nodes, whose reference geometry is ``referenceVolume``'s grid (so
    that editing and DICOM SEG export use the input's voxels)."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    # Transform first: the geometry is computed from the volume's grid into the segmentation's own coordinates, so
    # under the same parent transform it is the input's local grid; set before, the transform would count twice.
    node.SetAndObserveTransformNodeID(referenceVolume.GetTransformNodeID())
    node.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    return node


def orientedImageFromArray(array: np.ndarray, ijkToRas: np.ndarray):
    """A ``vtkOrientedImageData`` (uint8) holding ``array (K, J, I)`` on the grid of ``ijkToRas``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    image.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(np.asarray(ijkToRas, dtype=np.float64)))
    return image


def addLabelmapSegments(segmentationNode, labels: np.ndarray, ijkToRas: np.ndarray, specs: list[SegmentSpec]) -> list:
    """Add one segment per spec to ``segmentationNode``, all sharing one binary-labelmap layer built from
    ``labels (K, J, I)`` (segment = voxels whose value is ``spec.value``; absent values give empty segments).

    Segment IDs are the segment names where free (``liver``), else made unique by Slicer. Returns the new IDs.
    """
    segmentation = segmentationNode.GetSegmentation()
    shared = orientedImageFromArray(labels, ijkToRas)
    representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    ids = []
    for spec in specs:
        segment = slicer.vtkSegment()
        segment.SetName(spec.name)
        segment.SetColor(*[float(c) for c in spec.color])
        segment.SetLabelValue(int(spec.value))
        segment.AddRepresentation(representation, shared)
        if spec.terminology:
            segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), spec.terminology)
        for key, value in spec.tags.items():
            segment.SetTag(key, str(value))
        segmentID = segmentation.GenerateUniqueSegmentID(spec.name)
        segmentation.AddSegment(segment, segmentID)
        ids.append(segmentID)
    return ids


def addMaskSegment(segmentationNode, mask: np.ndarray, ijkToRas: np.ndarray, name: str, color) -> str:
    """Add a segment from a (K, J, I) mask, in its own labelmap layer (masks may overlap other segments)."""
    return addLabelmapSegments(
        segmentationNode, (np.asarray(mask) != 0).astype(np.uint8), ijkToRas, [SegmentSpec(1, name, color)]
    )[0]


# ----------------------------------------------------------------------------------------------------------------------
# map volumes


def expertColor(k: int) -> tuple[float, float, float]:
    """The colour of expert ``k`` (0-based): its segment and its gating map."""
    return EXPERT_COLORS[k % len(EXPERT_COLORS)]


def mapColorNode(name: str, low, high, scene=None):
    """The colour table ``name`` for a map shown on the window 0..1: from colour ``low`` (at 0) to ``high`` (at 1),
    linearly, opaque. One node per name, marked with ``MORSE.ColorTable``, shared by every run in the scene.

    In a slice view a map voxel is either drawn (at the foreground layer's opacity) or transparent: the display node
    keeps the table's opacity only as zero or not, so which voxels show is the threshold's business
    (:func:`createMapVolume`), and how much they say is the colour's. Slicer's own ramps start at black (Red, Green,
    Iron...): blended over the CT, every voxel just above the threshold would darken the tissue under it. These run
    from light to saturated instead, so a weak value tints the CT and a strong one colours it.
    """
    scene = scene or slicer.mrmlScene
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLColorTableNode")
        if node.GetAttribute(COLOR_TABLE_ATTRIBUTE) == name:
            return node
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    node.SetTypeToUser()
    node.SetNumberOfColors(MAP_TABLE_SIZE)
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    for index in range(MAP_TABLE_SIZE):
        red, green, blue = low + (high - low) * (index / (MAP_TABLE_SIZE - 1))
        node.SetColor(index, float(red), float(green), float(blue), 1.0)
    node.SetAttribute(COLOR_TABLE_ATTRIBUTE, name)
    return node


def expertColorNode(k: int, scene=None):
    """The colour table of expert ``k``'s gating map: from a light tint of the expert's colour to the colour."""
    color = np.asarray(expertColor(k), dtype=float)
    tint = color + (1.0 - color) * EXPERT_TINT
    return mapColorNode(f"MORSE expert {k % len(EXPERT_COLORS) + 1}", tuple(tint), tuple(color), scene)


def uncertaintyColorNode(scene=None):
    """The colour table of the uncertainty map: pale yellow (low) to red (high)."""
    return mapColorNode("MORSE uncertainty", *UNCERTAINTY_COLORS, scene=scene)


def storedMap(values: np.ndarray, asUint8: bool) -> np.ndarray:
    """A map in [0, 1] as stored in its volume node: uint8 0..255 (value × 255, rounded) or float32 0..1.

    ``values`` are uint8 0..255 when the engine was asked for ``maps_uint8`` (the worker and an in-process run
    both ask for it unless float maps are wanted) and are kept as they are; float values in 0..1 are quantised
    here, so either kind of result gives the same node.
    """
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values if asUint8 else values.astype(np.float32) * np.float32(UINT8_SCALE)
    if asUint8:
        from morse.inference.map_values import quantize_unit  # numpy only: the engine's one quantiser

        return quantize_unit(values)
    return np.clip(values, 0.0, 1.0).astype(np.float32, copy=False)


def createMapVolume(
    name: str,
    values: np.ndarray,
    ijkToRas: np.ndarray,
    colorNodeID: str,
    asUint8: bool,
    description: str,
    referenceVolume,
    visibleFrom: float = 0.0,
):
    """A scalar volume for a map in [0, 1] with a colour table and a window covering exactly 0..1; values below
    ``visibleFrom`` (0..1) are transparent in the slice views (the display node's threshold).

    With ``asUint8`` the voxels hold round(value × 255) (a quarter of the float32 memory; resolution 1/255 ≈ 0.004,
    far below what the eye or a threshold would use); the scale is written into the node description and the
    ``MORSE.ValueScale`` attribute (multiply stored values by it to get 0..1).
    """
    stored = storedMap(values, asUint8)
    node = addVolumeFromArray(stored, ijkToRas, name)
    node.SetAndObserveTransformNodeID(referenceVolume.GetTransformNodeID())
    scale = UINT8_SCALE if asUint8 else 1.0
    node.SetAttribute(SCALE_ATTRIBUTE, repr(scale))
    if asUint8:
        description += " Stored as 8-bit integers: value 0..255 means 0..1 (multiply by 1/255)."
    node.SetDescription(description)
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(colorNodeID)
    display.SetAutoWindowLevel(False)
    full = 255.0 if asUint8 else 1.0
    display.SetWindowLevelMinMax(0.0, full)
    if visibleFrom > 0:
        display.SetApplyThreshold(True)
        display.SetThreshold(visibleFrom * full, full)
    return node
