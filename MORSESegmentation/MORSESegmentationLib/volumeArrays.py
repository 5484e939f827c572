"""MRML volume nodes <-> numpy arrays with their geometry.

Conventions (the same as the engine's, see ``morse.geometry``):

- Arrays are indexed ``[k, j, i]`` (KJI): the order of ``slicer.util.arrayFromVolume``; i is the fastest axis.
- Geometry is the 4×4 IJK→RAS matrix of the node (``GetIJKToRASMatrix``): homogeneous column ``(i, j, k, 1)`` →
  RAS millimetres. It is the node's own (local) geometry; a parent transform, if any, is applied on top by Slicer,
  so outputs placed under the same transform line up with the input.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from morse.errors import InputError


def ijkToRasArray(volumeNode) -> np.ndarray:
    """(4, 4) float64 IJK→RAS matrix of a volume node (or any node with ``GetIJKToRASMatrix``)."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix).astype(np.float64)


def setIjkToRasFromArray(volumeNode, ijkToRas: np.ndarray) -> None:
    """Set spacing, origin and directions of a volume node from a 4×4 IJK→RAS matrix."""
    volumeNode.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(np.asarray(ijkToRas, dtype=np.float64)))


def checkInputVolume(volumeNode) -> None:
    """Raise :class:`InputError` (saying what to do) unless ``volumeNode`` is a single-component scalar volume
    with voxels."""
    if volumeNode is None:
        raise InputError("no input volume given")
    name = volumeNode.GetName()
    if not volumeNode.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError(f"'{name}' is a {volumeNode.GetClassName()}, not a scalar volume; select an image volume")
    if volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"'{name}' is a label map; select the image (e.g. the CT) to segment, not a label map")
    image = volumeNode.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"'{name}' holds no voxels (no image data); load the image again")
    components = image.GetNumberOfScalarComponents()
    if components != 1:
        raise InputError(
            f"'{name}' has {components} components per voxel (colour, vector or tensor image); MORSE segments "
            "single-component images. Convert it with the 'Vector to Scalar Volume' module first."
        )


def volumeToArray(volumeNode, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(array (K, J, I), ijkToRas (4, 4))`` of a scalar volume node.

    ``copy=True`` (the default) detaches the array from the node, so a run in the background is not affected if the
    user edits or deletes the volume meanwhile. The voxel type is kept (int16 CT stays int16).
    """
    checkInputVolume(volumeNode)
    array = slicer.util.arrayFromVolume(volumeNode)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    return (np.array(array, copy=True) if copy else array), ijkToRasArray(volumeNode)


def addVolumeFromArray(
    array: np.ndarray, ijkToRas: np.ndarray, name: str, nodeClassName: str = "vtkMRMLScalarVolumeNode"
):
    """A new volume node (in ``slicer.mrmlScene``, with a display node) holding a copy of ``array (K, J, I)`` on
    the grid given by ``ijkToRas``."""
    node = slicer.mrmlScene.AddNewNodeByClass(nodeClassName, name)
    setIjkToRasFromArray(node, ijkToRas)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.CreateDefaultDisplayNodes()
    return node


def segmentationGeometry(segmentationNode) -> tuple[np.ndarray, tuple[int, int, int]]:
    """``(ijkToRas (4, 4), shape (K, J, I))`` of a segmentation node's reference geometry (the voxel grid that
    editing and export use)."""
    geometry = segmentationNode.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    )
    matrix = vtk.vtkMatrix4x4()
    extent = [0, -1, 0, -1, 0, -1]
    if not geometry or not slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, matrix, extent):
        raise ValueError(f"segmentation '{segmentationNode.GetName()}' has no reference geometry")
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    return slicer.util.arrayFromVTKMatrix(matrix).astype(np.float64), shape


def segmentLabelmapMatrix(segmentationNode, segmentID: str) -> np.ndarray:
    """IJK→RAS (4, 4) of the binary labelmap that stores a segment's voxels."""
    segment = segmentationNode.GetSegmentation().GetSegment(segmentID)
    labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix).astype(np.float64)
