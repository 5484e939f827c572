"""Geometry of the outputs: the real logic and a trained model on oblique, LPS-stored, anisotropic volumes.

A transposed axis (IJK vs KJI), a lost flip or a wrong matrix puts the segmentation somewhere else than the bright
object, or gives an output node a grid other than the input's; these tests measure both.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
from MORSESegmentationLib.volumeArrays import (
    addVolumeFromArray,
    ijkToRasArray,
    segmentationGeometry,
    segmentLabelmapMatrix,
)

from MORSESegmentation import MORSESegmentationLogic


@pytest.fixture
def objectVolume():
    volume, ijkToRas, mask, centreRas = syntheticVolumes.brightObjectVolume()
    node = addVolumeFromArray(volume, ijkToRas, "Phantom")
    return node, mask, centreRas


def test_every_output_has_the_input_grid(objectVolume, brightPack):
    node, _, _ = objectVolume
    inputMatrix, inputShape = ijkToRasArray(node), slicer.util.arrayFromVolume(node).shape
    outputs = MORSESegmentationLogic().process(node, model=str(brightPack))
    created = outputs.createdNodes
    assert len(created) == 1 + 1 + 5 + 1 + 1 + 1  # organs, experts, 5 gating maps, uncertainty, rectified, review
    for out in created:
        if out.IsA("vtkMRMLTableNode"):
            continue  # the review table: positions in its rows (test_review.py), no grid of its own
        if out.IsA("vtkMRMLVolumeNode"):
            np.testing.assert_allclose(ijkToRasArray(out), inputMatrix, atol=1e-9, err_msg=out.GetName())
            assert slicer.util.arrayFromVolume(out).shape == inputShape, out.GetName()
        else:
            matrix, shape = segmentationGeometry(out)
            np.testing.assert_allclose(matrix, inputMatrix, atol=1e-9, err_msg=out.GetName())
            assert shape == inputShape, out.GetName()
            segmentation = out.GetSegmentation()
            for index in range(segmentation.GetNumberOfSegments()):
                segmentID = segmentation.GetNthSegmentID(index)
                np.testing.assert_allclose(segmentLabelmapMatrix(out, segmentID), inputMatrix, atol=1e-9)


def test_segmentation_lies_on_the_bright_object(objectVolume, brightPack):
    node, mask, centreRas = objectVolume
    outputs = MORSESegmentationLogic().process(node, model=str(brightPack))
    predicted = slicer.util.arrayFromSegmentBinaryLabelmap(outputs.segmentation, "object", node) > 0
    assert predicted.shape == mask.shape
    assert syntheticVolumes.dice(predicted, mask) >= 0.85
    # Centre of the segment in RAS (through the node's own matrix) vs the true centre.
    k, j, i = np.nonzero(predicted)
    centre = (ijkToRasArray(node) @ np.stack([i, j, k, np.ones_like(i)]).astype(float))[:3].mean(axis=1)
    assert np.linalg.norm(centre - centreRas) < 1.5  # mm; voxels are 0.8 × 1.1 × 2.5 mm
    # The rectified points sit on the object's boundary, where the coarse prediction is uncertain.
    rectified = slicer.util.arrayFromSegmentBinaryLabelmap(outputs.rectifiedSegmentation, "rectified points", node)
    assert rectified.sum() > 0


def test_same_anatomy_stored_differently_gives_the_same_segmentation(objectVolume, brightPack):
    """Swap the i and j axes and flip k of the stored array (adjusting IJK→RAS so every voxel keeps its physical
    place): the segmentation, compared on the original grid, must not change."""
    node, mask, _ = objectVolume
    volume = slicer.util.arrayFromVolume(node)
    m = ijkToRasArray(node)
    stored = np.ascontiguousarray(volume.transpose(0, 2, 1)[::-1])  # KJI → K'IJ: new i = old j, new j = old i
    K = volume.shape[0]
    # new (i', j', k') = (j, i, K-1-k)  ⇒  old (i, j, k) = (j', i', K-1-k')
    newToOld = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, K - 1], [0, 0, 0, 1]], dtype=float)
    other = addVolumeFromArray(stored, m @ newToOld, "Phantom restacked")
    assert not np.allclose(ijkToRasArray(other), m)
    logic = MORSESegmentationLogic()
    first = logic.process(node, model=str(brightPack))
    second = logic.process(other, model=str(brightPack))
    a = slicer.util.arrayFromSegmentBinaryLabelmap(first.segmentation, "object", node) > 0
    b = slicer.util.arrayFromSegmentBinaryLabelmap(second.segmentation, "object", node) > 0  # resampled onto node
    assert a.sum() > 0.5 * mask.sum()
    assert (a != b).mean() < 1e-3


def test_outputs_follow_the_input_parent_transform(objectVolume, tinyPack):
    """Under a rotating, shifting parent transform the outputs sit under the same transform and keep the input's own
    (local) grid: the reference geometry must not have the transform applied a second time."""
    node, _, _ = objectVolume
    inputMatrix, inputShape = ijkToRasArray(node), slicer.util.arrayFromVolume(node).shape
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "rotate and shift")
    angle = np.radians(30.0)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix[:3, 3] = (5.0, -3.0, 12.0)
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    node.SetAndObserveTransformNodeID(transform.GetID())
    outputs = MORSESegmentationLogic().process(node, model=str(tinyPack))
    transformable = [out for out in outputs.createdNodes if not out.IsA("vtkMRMLTableNode")]
    assert all(out.GetTransformNodeID() == transform.GetID() for out in transformable)
    for out in transformable:
        if out.IsA("vtkMRMLSegmentationNode"):
            geometry, shape = segmentationGeometry(out)
            np.testing.assert_allclose(geometry, inputMatrix, atol=1e-6, err_msg=out.GetName())
            assert shape == inputShape
        else:
            np.testing.assert_allclose(ijkToRasArray(out), inputMatrix, atol=1e-9, err_msg=out.GetName())
