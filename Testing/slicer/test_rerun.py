"""Running again on the same volume: new nodes by default, replacement only when asked, user data never touched."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
from MORSESegmentationLib import outputNodes
from MORSESegmentationLib.volumeArrays import addVolumeFromArray

from MORSESegmentation import MORSESegmentationLogic


@pytest.fixture
def ct():
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(12, 40, 48))
    return addVolumeFromArray(volume, ijkToRas, "CT")


def nodeIDs():
    scene = slicer.mrmlScene
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def segmentMasks(segmentationNode, reference):
    segmentation = segmentationNode.GetSegmentation()
    return {
        segmentation.GetNthSegmentID(i): slicer.util.arrayFromSegmentBinaryLabelmap(
            segmentationNode, segmentation.GetNthSegmentID(i), reference
        ).copy()
        for i in range(segmentation.GetNumberOfSegments())
    }


def test_second_run_adds_new_uniquely_named_nodes(ct, tinyPack):
    logic = MORSESegmentationLogic()
    first = logic.process(ct, model=str(tinyPack))
    firstIDs = [n.GetID() for n in first.createdNodes]
    firstMasks = segmentMasks(first.segmentation, ct)
    second = logic.process(ct, model=str(tinyPack))
    assert second.segmentation.GetName() == "CT MORSE 2"
    assert second.expertsSegmentation.GetName() == "CT MORSE 2 experts"
    assert second.rectifiedSegmentation.GetName() == "CT MORSE 2 rectified"
    assert second.uncertaintyVolume.GetName() == "CT MORSE 2 uncertainty"
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    assert sh.GetItemName(second.mapsFolderItemID) == "CT MORSE 2 maps"
    # the first run's nodes are all still there, unchanged
    assert all(slicer.mrmlScene.GetNodeByID(i) is not None for i in firstIDs)
    assert first.segmentation.GetName() == "CT MORSE"
    for segmentID, mask in segmentMasks(first.segmentation, ct).items():
        np.testing.assert_array_equal(mask, firstMasks[segmentID])
    assert second.replacedNodeNames == []
    assert len(logic.outputsOfVolume(ct)) == 2 * len(first.createdNodes)


def test_replace_existing_replaces_only_this_volumes_morse_nodes(ct, tinyPack):
    logic = MORSESegmentationLogic()
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(10, 32, 40), seed=3)
    otherVolume = addVolumeFromArray(volume, ijkToRas, "Other")
    first = logic.process(ct, model=str(tinyPack))
    firstIDs = {n.GetID() for n in first.createdNodes}
    other = logic.process(otherVolume, model=str(tinyPack))
    otherIDs = {n.GetID() for n in other.createdNodes}
    userSegmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CT MORSE my copy")

    replaced = logic.process(ct, model=str(tinyPack), replaceExisting=True)
    ids = nodeIDs()
    assert not (firstIDs & ids)  # the old outputs of CT are gone
    assert otherIDs <= ids  # the other volume's outputs stay
    assert userSegmentation.GetID() in ids  # a node merely named like an output is not MORSE's
    assert replaced.segmentation.GetName() == "CT MORSE"  # the new ones take the plain names
    assert replaced.uncertaintyVolume.GetName() == "CT MORSE uncertainty"
    assert sorted(replaced.replacedNodeNames) == sorted(n for n in first.createdNodeNames)
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    folders = [sh.GetItemName(i) for i in (replaced.mapsFolderItemID, other.mapsFolderItemID)]
    assert folders == ["CT MORSE maps", "Other MORSE maps"]
    assert not outputNodes.itemExists(sh, first.mapsFolderItemID)  # the old, now empty, maps folder was removed


def test_user_segmentation_is_extended_never_cleared(ct, tinyPack):
    user = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My segmentation")
    user.CreateDefaultDisplayNodes()
    user.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    tumour = np.zeros(slicer.util.arrayFromVolume(ct).shape, np.uint8)
    tumour[4:8, 10:20, 12:30] = 1
    tumourID = user.GetSegmentation().AddEmptySegment("tumour", "tumour", [1.0, 0.0, 0.0])
    slicer.util.updateSegmentBinaryLabelmapFromArray(tumour, user, tumourID, ct)

    logic = MORSESegmentationLogic()
    outputs = logic.process(ct, outputSegmentation=user, model=str(tinyPack))
    assert outputs.segmentation is user and not outputs.segmentationCreated
    assert user not in outputs.createdNodes
    segmentation = user.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 4
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(user, tumourID, ct), tumour)
    assert user.GetAttribute("MORSE.Output") is None  # the node stays the user's

    logic.process(ct, outputSegmentation=user, model=str(tinyPack))  # no replace: MORSE's segments added again
    assert segmentation.GetNumberOfSegments() == 7
    logic.process(ct, outputSegmentation=user, model=str(tinyPack), replaceExisting=True)
    assert segmentation.GetNumberOfSegments() == 4  # MORSE's earlier segments replaced, the tumour kept
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(user, tumourID, ct), tumour)
    assert segmentation.GetSegment(tumourID).GetName() == "tumour"


def test_empty_user_segmentation_gets_the_input_geometry(ct, tinyPack):
    from MORSESegmentationLib.volumeArrays import ijkToRasArray, segmentationGeometry

    user = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Empty")
    MORSESegmentationLogic().process(ct, outputSegmentation=user, model=str(tinyPack), gating=False)
    matrix, shape = segmentationGeometry(user)
    np.testing.assert_allclose(matrix, ijkToRasArray(ct), atol=1e-9)
    assert shape == slicer.util.arrayFromVolume(ct).shape
