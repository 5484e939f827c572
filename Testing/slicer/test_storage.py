"""Saving the outputs with Slicer's real storage nodes and reading them back."""

from __future__ import annotations

import numpy as np
import slicer
import slicerio
import slicerSyntheticVolumes as syntheticVolumes
import vtk
from MORSESegmentationLib.volumeArrays import addVolumeFromArray, ijkToRasArray
from slicerModelPacks import TINY_LABELS

from MORSESegmentation import MORSESegmentationLogic


def _tag(segment, name):
    value = vtk.reference("")
    segment.GetTag(name, value)
    return str(value)


def test_seg_nrrd_round_trip_keeps_names_colours_terminology_and_voxels(tmp_path, tinyPack):
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(12, 40, 48))
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    outputs = MORSESegmentationLogic().process(node, model=str(tinyPack), gating=False, uncertainty=False)
    saved = outputs.segmentation
    before = {label.name: slicer.util.arrayFromSegmentBinaryLabelmap(saved, label.name, node) for label in TINY_LABELS}

    path = tmp_path / "CT MORSE.seg.nrrd"
    saved.AddDefaultStorageNode()
    storage = saved.GetStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(saved) == 1

    slicer.mrmlScene.Clear(0)
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    loaded = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reloaded")
    reader = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    reader.SetFileName(str(path))
    assert reader.ReadData(loaded) == 1
    segmentation = loaded.GetSegmentation()
    assert [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())] == [
        label.name for label in TINY_LABELS
    ]
    for label in TINY_LABELS:
        segment = segmentation.GetSegment(label.name)
        assert segment.GetName() == label.name
        np.testing.assert_allclose(segment.GetColor(), label.color, atol=1e-6)
        assert f"SCT^{label.type[1]}^{label.type[2]}" in _tag(segment, "TerminologyEntry")
        assert _tag(segment, "MORSE.Output") == "organ"
        after = slicer.util.arrayFromSegmentBinaryLabelmap(loaded, label.name, node)
        np.testing.assert_array_equal(after, before[label.name])

    # The file is a standard Slicer segmentation: slicerio (no Slicer) reads the same names and geometry (LPS).
    content = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in content["segments"]] == [label.name for label in TINY_LABELS]
    ijkToLps = np.asarray(content["ijkToLPS"])
    np.testing.assert_allclose(np.diag([-1, -1, 1, 1]) @ ijkToLps[:, :3], ijkToRas[:, :3], atol=1e-6)  # directions


def test_gating_volume_nrrd_round_trip(tmp_path, tinyPack):
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(12, 40, 48))
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    outputs = MORSESegmentationLogic().process(node, model=str(tinyPack), refine=False, uncertainty=False)
    gate = outputs.gatingVolumes[0]
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "gate.nrrd"))
    assert storage.WriteData(gate) == 1
    loaded = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    reader = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    reader.SetFileName(str(tmp_path / "gate.nrrd"))
    assert reader.ReadData(loaded) == 1
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), slicer.util.arrayFromVolume(gate))
    np.testing.assert_allclose(ijkToRasArray(loaded), ijkToRas, atol=1e-6)
