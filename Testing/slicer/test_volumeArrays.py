"""MRML volume node ↔ numpy array (KJI) and IJK→RAS, on real slicer-core nodes."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
import vtk
from morse.errors import InputError
from MORSESegmentationLib.volumeArrays import (
    addVolumeFromArray,
    checkInputVolume,
    ijkToRasArray,
    setIjkToRasFromArray,
    volumeToArray,
)


def test_array_axes_are_kji_and_match_vtk_ijk():
    """array[k, j, i] is the voxel VTK stores at (i, j, k): a transposition would put other values there."""
    shape = (3, 4, 5)  # K, J, I all different
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    array = (100 * k + 10 * j + i).astype(np.int16)
    node = addVolumeFromArray(array, syntheticVolumes.obliqueLpsMatrix(), "axes")
    image = node.GetImageData()
    assert image.GetDimensions() == (5, 4, 3)
    for ii, jj, kk in [(0, 0, 0), (4, 0, 0), (0, 3, 0), (0, 0, 2), (4, 3, 2), (1, 2, 1)]:
        assert image.GetScalarComponentAsDouble(ii, jj, kk, 0) == 100 * kk + 10 * jj + ii
    back, _ = volumeToArray(node)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.int16


def test_oblique_matrix_round_trips_exactly_and_maps_voxels_to_ras():
    m = syntheticVolumes.obliqueLpsMatrix(spacing=(0.7, 1.3, 3.0), origin=(-12.5, 40.0, 7.25), degrees=23.0)
    node = addVolumeFromArray(np.zeros((4, 5, 6), np.float32), m, "oblique")
    np.testing.assert_allclose(ijkToRasArray(node), m, atol=1e-12)
    np.testing.assert_allclose(node.GetSpacing(), (0.7, 1.3, 3.0), atol=1e-12)
    # Slicer's own IJK→RAS transform of a voxel equals our matrix product.
    vtkMatrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(vtkMatrix)
    assert np.allclose(vtkMatrix.MultiplyPoint((5, 4, 3, 1))[:3], (m @ [5, 4, 3, 1])[:3])
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    setIjkToRasFromArray(other, m)
    np.testing.assert_allclose(ijkToRasArray(other), m, atol=1e-12)


def test_volume_to_array_copies_by_default():
    node = addVolumeFromArray(np.ones((2, 3, 4), np.int16), np.eye(4), "copy")
    array, _ = volumeToArray(node)
    array[:] = 7
    assert slicer.util.arrayFromVolume(node).max() == 1  # the node's voxels did not change


def test_input_checks_say_what_is_wrong():
    with pytest.raises(InputError, match="no input volume"):
        checkInputVolume(None)
    labelmap = addVolumeFromArray(np.zeros((2, 3, 4), np.uint8), np.eye(4), "labels", "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="label map"):
        checkInputVolume(labelmap)
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no voxels"):
        checkInputVolume(empty)
    rgb = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(rgb, np.zeros((2, 3, 4, 3), np.uint8))
    with pytest.raises(InputError, match=r"3 components.*Vector to Scalar"):
        checkInputVolume(rgb)
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    with pytest.raises(InputError, match="not a scalar volume"):
        checkInputVolume(segmentation)
