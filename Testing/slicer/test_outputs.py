"""Content of every output node, compared with the engine's own result for the same input."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
import vtk
from MORSESegmentationLib import outputNodes
from MORSESegmentationLib.volumeArrays import addVolumeFromArray
from slicerModelPacks import TINY_LABELS

from MORSESegmentation import MORSESegmentationLogic


def tag(segment, name: str) -> str:
    value = vtk.reference("")
    assert segment.GetTag(name, value), f"segment {segment.GetName()} has no tag {name}"
    return str(value)


@pytest.fixture
def ctInStudy():
    """A synthetic CT placed under a patient/study in the subject hierarchy, as a DICOM import places it."""
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(12, 40, 48))
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient")
    study = sh.CreateStudyItem(patient, "Study")
    sh.CreateItem(study, node)
    return node, study


def runInSteps(logic, node, pack, **options):
    """process() in its three steps, keeping the engine result to compare the nodes with."""
    request = logic.prepareRequest(node, None, str(pack), "cpu", **options)
    result = logic.runEngine(request)
    return result, logic.importResult(request, result)


def test_organ_segments_have_names_colours_terminology_and_voxels(ctInStudy, tinyPack):
    node, _ = ctInStudy
    result, outputs = runInSteps(MORSESegmentationLogic(), node, tinyPack)
    segmentationNode = outputs.segmentation
    assert segmentationNode.GetName() == "CT MORSE"
    segmentation = segmentationNode.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(TINY_LABELS)
    assert outputs.segmentIDs == [label.name for label in TINY_LABELS]
    for label in TINY_LABELS:
        segment = segmentation.GetSegment(label.name)
        assert segment.GetName() == label.name
        np.testing.assert_allclose(segment.GetColor(), label.color, atol=1e-6)
        assert segment.GetLabelValue() == label.value
        assert tag(segment, "TerminologyEntry") == (
            "Segmentation category and type - 3D Slicer General Anatomy list"
            f"~SCT^123037004^Anatomical Structure~SCT^{label.type[1]}^{label.type[2]}~^^"
            "~Anatomic codes - DICOM master list~^^~^^"
        )
        assert tag(segment, outputNodes.SEGMENT_OUTPUT_TAG) == "organ"
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, label.name, node)
        np.testing.assert_array_equal(mask > 0, result.labels == label.value)
    assert segmentation.GetNumberOfLayers() == 1  # organs share one labelmap (memory)
    assert segmentationNode.GetAttribute("MORSE.Output") == "segmentation"
    assert segmentationNode.GetNodeReference("MORSEInputVolume") is node
    assert segmentationNode.GetAttribute("MORSE.Model") == "tiny-test 0.0.1"


def test_subject_hierarchy_places_outputs_in_the_input_study(ctInStudy, tinyPack):
    node, study = ctInStudy
    outputs = MORSESegmentationLogic().process(node, model=str(tinyPack))
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    for out in (outputs.segmentation, outputs.expertsSegmentation, outputs.rectifiedSegmentation):
        assert sh.GetItemParent(sh.GetItemByDataNode(out)) == study, out.GetName()
    folder = outputs.mapsFolderItemID
    assert sh.GetItemName(folder) == "CT MORSE maps"
    assert sh.GetItemParent(folder) == study
    children = vtk.vtkIdList()
    sh.GetItemChildren(folder, children)
    names = sorted(sh.GetItemName(children.GetId(i)) for i in range(children.GetNumberOfIds()))
    assert names == sorted([f"CT MORSE gating expert {k}" for k in range(1, 6)] + ["CT MORSE uncertainty"])


def test_experts_segmentation_partitions_by_dominant_expert(ctInStudy, tinyPack):
    node, _ = ctInStudy
    result, outputs = runInSteps(MORSESegmentationLogic(), node, tinyPack)
    experts = outputs.expertsSegmentation
    assert experts.GetName() == "CT MORSE experts"
    n = result.gating.shape[0]
    segmentation = experts.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(n)] == [f"expert {k + 1}" for k in range(n)]
    total = np.zeros(result.labels.shape, int)
    for k in range(n):
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(experts, f"expert {k + 1}", node) > 0
        np.testing.assert_array_equal(mask, result.gating.argmax(axis=0) == k)
        np.testing.assert_allclose(segmentation.GetSegment(f"expert {k + 1}").GetColor(), outputNodes.expertColor(k))
        total += mask
    assert (total == 1).all()  # every voxel belongs to exactly one expert
    assert not experts.GetDisplayNode().GetVisibility()  # shown on demand, it would hide the organs


def test_gating_and_uncertainty_volumes_uint8(ctInStudy, tinyPack):
    node, _ = ctInStudy
    result, outputs = runInSteps(MORSESegmentationLogic(), node, tinyPack)
    assert len(outputs.gatingVolumes) == result.gating.shape[0] == 5
    for k, volume in enumerate(outputs.gatingVolumes):
        assert volume.GetName() == f"CT MORSE gating expert {k + 1}"
        stored = slicer.util.arrayFromVolume(volume)
        assert stored.dtype == result.gating.dtype == np.uint8  # the engine quantises, as in the worker
        np.testing.assert_array_equal(stored, result.gating[k])
        display = volume.GetDisplayNode()
        assert not display.GetAutoWindowLevel()
        assert (display.GetWindow(), display.GetLevel()) == (255.0, 127.5)  # shows exactly 0..1
        assert display.GetColorNodeID() == outputNodes.expertColorNode(k).GetID()
        assert float(volume.GetAttribute("MORSE.ValueScale")) == pytest.approx(1 / 255)
        assert "multiply by 1/255" in volume.GetDescription()
        assert volume.GetAttribute("MORSE.Output") == "gating"
    # the stored weights still sum to ~1 over the experts (each rounded by at most 0.5/255)
    total = sum(slicer.util.arrayFromVolume(v).astype(int) for v in outputs.gatingVolumes) / 255.0
    assert np.abs(total - 1).max() <= 5 * 0.5 / 255 + 1e-9
    uncertainty = outputs.uncertaintyVolume
    assert uncertainty.GetName() == "CT MORSE uncertainty"
    assert result.uncertainty.dtype == np.uint8
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(uncertainty), result.uncertainty)
    assert uncertainty.GetDisplayNode().GetColorNodeID() == outputNodes.uncertaintyColorNode().GetID()


def test_maps_leave_the_ct_visible_where_they_say_nothing(ctInStudy, tinyPack):
    """Uncertainty below 0.2 (an organ's inside, where the model is sure) and gates below their fair share (1/5) are
    transparent: the slice view thresholds them."""
    node, _ = ctInStudy
    _, outputs = runInSteps(MORSESegmentationLogic(), node, tinyPack)
    uncertainty = outputs.uncertaintyVolume.GetDisplayNode()
    assert uncertainty.GetApplyThreshold()
    assert (uncertainty.GetLowerThreshold(), uncertainty.GetUpperThreshold()) == (0.2 * 255, 255.0)
    for volume in outputs.gatingVolumes:
        display = volume.GetDisplayNode()
        assert display.GetApplyThreshold()
        assert (display.GetLowerThreshold(), display.GetUpperThreshold()) == (255 / 5, 255.0)


def tableColors(colorNode) -> np.ndarray:
    """(N, 4) RGBA rows of a colour table node."""
    rgba = [0.0, 0.0, 0.0, 0.0]
    rows = []
    for index in range(colorNode.GetNumberOfColors()):
        colorNode.GetColor(index, rgba)
        rows.append(list(rgba))
    return np.array(rows)


def test_map_colours_tint_the_ct_and_never_darken_it(ctInStudy, tinyPack):
    """The maps are drawn over the CT: their tables run from a light colour to a saturated one, with no dark end (a
    ramp from black turns the tissue under every weak value dark), and each is one node shared by later runs."""
    node, _ = ctInStudy
    logic = MORSESegmentationLogic()
    _, outputs = runInSteps(logic, node, tinyPack)
    volumes = [*outputs.gatingVolumes, outputs.uncertaintyVolume]
    for volume in volumes:
        colorNode = volume.GetDisplayNode().GetColorNode()
        assert colorNode.GetAttribute("MORSE.ColorTable") == colorNode.GetName()
        rgba = tableColors(colorNode)
        assert len(rgba) == outputNodes.MAP_TABLE_SIZE
        np.testing.assert_allclose(rgba[:, :3].max(axis=1), 1.0)  # every entry at full brightness
        np.testing.assert_allclose(rgba[:, 3], 1.0)  # opaque: the threshold alone decides what is transparent
        assert rgba[0, :3].sum() > rgba[-1, :3].sum()  # light for weak values, saturated for strong ones
    for k, volume in enumerate(outputs.gatingVolumes):
        np.testing.assert_allclose(
            tableColors(volume.GetDisplayNode().GetColorNode())[-1, :3], outputNodes.expertColor(k)
        )
    _, again = runInSteps(logic, node, tinyPack)
    assert [v.GetDisplayNode().GetColorNodeID() for v in [*again.gatingVolumes, again.uncertaintyVolume]] == [
        v.GetDisplayNode().GetColorNodeID() for v in volumes
    ]


def test_float_maps_on_request(ctInStudy, tinyPack):
    node, _ = ctInStudy
    logic = MORSESegmentationLogic()
    logic.mapsAsUint8 = False
    result, outputs = runInSteps(logic, node, tinyPack)
    stored = slicer.util.arrayFromVolume(outputs.gatingVolumes[2])
    assert stored.dtype == np.float32
    np.testing.assert_allclose(stored, result.gating[2], atol=1e-6)
    display = outputs.gatingVolumes[2].GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1.0, 0.5)
    assert (display.GetLowerThreshold(), display.GetUpperThreshold()) == (0.2, 1.0)
    assert float(outputs.gatingVolumes[2].GetAttribute("MORSE.ValueScale")) == 1.0


def test_rectified_segmentation(ctInStudy, tinyPack):
    node, _ = ctInStudy
    result, outputs = runInSteps(MORSESegmentationLogic(), node, tinyPack)
    rectified = outputs.rectifiedSegmentation
    assert rectified.GetName() == "CT MORSE rectified"
    points = slicer.util.arrayFromSegmentBinaryLabelmap(rectified, "rectified points", node) > 0
    changed = slicer.util.arrayFromSegmentBinaryLabelmap(rectified, "changed labels", node) > 0
    np.testing.assert_array_equal(points, result.rectified > 0)
    np.testing.assert_array_equal(changed, result.labels != result.coarse_labels)
    assert points.sum() > 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"refine": False}, {"experts", "gating", "uncertainty", "review"}),
        ({"gating": False}, {"rectified", "uncertainty", "review"}),
        ({"uncertainty": False}, {"experts", "gating", "rectified", "review"}),
        ({"gating": False, "uncertainty": False, "refine": False}, {"review"}),  # the organs' review, always
    ],
)
def test_output_toggles(ctInStudy, tinyPack, options, expected):
    node, _ = ctInStudy
    outputs = MORSESegmentationLogic().process(node, model=str(tinyPack), **options)
    roles = {n.GetAttribute("MORSE.Output") for n in outputs.createdNodes} - {"segmentation"}
    assert roles == expected
    assert bool(outputs.mapsFolderItemID) == bool(expected & {"gating", "uncertainty"})


def test_active_volume_is_used_when_no_input_is_given(ctInStudy, tinyPack):
    node, _ = ctInStudy
    selection = slicer.mrmlScene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    selection.SetActiveVolumeID(node.GetID())
    outputs = MORSESegmentationLogic().process(model=str(tinyPack), gating=False, uncertainty=False, refine=False)
    assert outputs.inputVolume is node
    assert outputs.segmentation.GetNodeReference("MORSEInputVolume") is node
