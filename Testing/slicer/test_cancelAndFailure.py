"""A cancelled or failed run leaves the scene exactly as it was: same nodes (IDs), same subject hierarchy, same
segments in the user's nodes; and earlier results survive a failed re-run."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
import vtk
from morse.errors import CancelledError, InputError, ModelPackError
from MORSESegmentationLib import outputNodes
from MORSESegmentationLib.volumeArrays import addVolumeFromArray

from MORSESegmentation import MORSESegmentationLogic


def sceneState():
    """Node IDs, subject-hierarchy item names, and the segments of every segmentation node."""
    scene = slicer.mrmlScene
    sh = scene.GetSubjectHierarchyNode()  # created on first use: before listing the nodes
    ids = tuple(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))
    items = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), items, True)
    itemNames = tuple(sorted(sh.GetItemName(items.GetId(i)) for i in range(items.GetNumberOfIds())))
    segments = {}
    for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode"):
        segmentation = node.GetSegmentation()
        segments[node.GetID()] = tuple(
            segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())
        )
    return ids, itemNames, segments


@pytest.fixture
def ct():
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(12, 40, 48))
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    sh.CreateItem(sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "P"), "S"), node)
    return node


def cancelAt(stageToCancel: str, afterCalls: int = 1):
    """A cancel callback that turns True once ``stageToCancel`` has been reported ``afterCalls`` times."""
    seen = {"stage": None, "count": 0}

    def progress(stage, fraction):
        seen["stage"] = stage
        if stage == stageToCancel:
            seen["count"] += 1

    return progress, (lambda: seen["count"] >= afterCalls)


@pytest.mark.parametrize(("stage", "after"), [("segmenting", 1), ("creating outputs", 1), ("creating outputs", 6)])
def test_cancel_leaves_the_scene_as_it_was(ct, tinyPack, stage, after):
    logic = MORSESegmentationLogic()
    logic.process(ct, model=str(tinyPack))  # an earlier run, whose results must survive
    before = sceneState()
    progress, cancel = cancelAt(stage, after)
    with pytest.raises(CancelledError):
        logic.process(ct, model=str(tinyPack), progressCallback=progress, cancelCallback=cancel, replaceExisting=True)
    assert sceneState() == before


def test_logic_cancel_from_a_progress_callback(ct, tinyPack):
    logic = MORSESegmentationLogic()
    before = sceneState()

    def progress(stage, fraction):
        if stage == "creating outputs" and fraction > 0.95:
            logic.cancel()

    with pytest.raises(CancelledError):
        logic.process(ct, model=str(tinyPack), progressCallback=progress)
    assert sceneState() == before
    # the flag is cleared by the next run
    assert logic.process(ct, model=str(tinyPack), gating=False).segmentation is not None


def test_cancel_keeps_the_users_segments(ct, tinyPack):
    user = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Mine")
    user.GetSegmentation().AddEmptySegment("lesion")
    logic = MORSESegmentationLogic()
    logic.process(ct, outputSegmentation=user, model=str(tinyPack), gating=False)
    before = sceneState()
    masks = {s: slicer.util.arrayFromSegmentBinaryLabelmap(user, s, ct).copy() for s in ("liver", "spleen", "aorta")}
    progress, cancel = cancelAt("creating outputs", 3)
    with pytest.raises(CancelledError):
        logic.process(
            ct,
            outputSegmentation=user,
            model=str(tinyPack),
            replaceExisting=True,
            progressCallback=progress,
            cancelCallback=cancel,
        )
    assert sceneState() == before  # MORSE's earlier segments in it were put back, the lesion never left
    for segmentID, mask in masks.items():
        np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(user, segmentID, ct), mask)
    assert any(mask.any() for mask in masks.values())


def test_bad_model_fails_before_touching_the_scene(ct, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not a pickle, and never unpickled")
    before = sceneState()
    with pytest.raises(ModelPackError, match="pickle"):
        MORSESegmentationLogic().process(ct, model=str(tmp_path / "model.pt"))
    assert sceneState() == before


def test_failure_while_creating_outputs_rolls_back_and_keeps_earlier_results(ct, tinyPack, monkeypatch):
    logic = MORSESegmentationLogic()
    earlier = logic.process(ct, model=str(tinyPack))
    earlierMask = slicer.util.arrayFromSegmentBinaryLabelmap(earlier.segmentation, "liver", ct).copy()
    before = sceneState()
    real = outputNodes.createMapVolume
    calls = {"n": 0}

    def failingOnThird(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("simulated: no memory for the third map")
        return real(*args, **kwargs)

    monkeypatch.setattr(outputNodes, "createMapVolume", failingOnThird)
    with pytest.raises(MemoryError):
        logic.process(ct, model=str(tinyPack), replaceExisting=True)
    assert sceneState() == before
    np.testing.assert_array_equal(
        slicer.util.arrayFromSegmentBinaryLabelmap(earlier.segmentation, "liver", ct), earlierMask
    )


def test_input_removed_during_a_background_run(ct, tinyPack):
    logic = MORSESegmentationLogic()
    request = logic.prepareRequest(ct, model=str(tinyPack), gating=False)
    result = logic.runEngine(request)
    slicer.mrmlScene.RemoveNode(ct)
    before = sceneState()
    with pytest.raises(InputError, match="removed from the scene during the run"):
        logic.importResult(request, result)
    assert sceneState() == before


def test_no_input_and_wrong_inputs(tinyPack):
    logic = MORSESegmentationLogic()
    before = sceneState()
    with pytest.raises(InputError, match="No input volume"):
        logic.process(model=str(tinyPack))
    labelmap = addVolumeFromArray(np.zeros((4, 8, 8), np.uint8), np.eye(4), "labels", "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="label map"):
        logic.process(labelmap, model=str(tinyPack))
    volume = addVolumeFromArray(np.zeros((4, 8, 8), np.int16), np.eye(4), "CT")
    with pytest.raises(InputError, match="give a segmentation node"):
        logic.process(volume, outputSegmentation=labelmap, model=str(tinyPack))
    elsewhere = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Elsewhere")
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    elsewhere.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="under a different transform"):
        logic.process(volume, outputSegmentation=elsewhere, model=str(tinyPack))
    assert elsewhere.GetSegmentation().GetNumberOfSegments() == 0
    assert sceneState()[0] == before[0] + (
        labelmap.GetID(),
        labelmap.GetDisplayNode().GetID(),
        volume.GetID(),
        volume.GetDisplayNode().GetID(),
        elsewhere.GetID(),
        transform.GetID(),
    )


def _outputReports(logic, ct, tinyPack) -> int:
    """How many times a run reports the "creating outputs" stage (one cancellation point each)."""
    seen = []
    logic.process(ct, model=str(tinyPack), progressCallback=lambda s, f: seen.append(s))
    return seen.count("creating outputs")


@pytest.mark.parametrize("how", ["cancelCallback", "progressCallback"])
def test_cancelled_replace_at_every_output_step_keeps_the_previous_results(ct, tinyPack, how):
    logic = MORSESegmentationLogic()
    steps = _outputReports(logic, ct, tinyPack)  # also the earlier run whose results must survive
    assert steps >= 5
    before = sceneState()
    for after in range(1, steps + 1):
        progress, cancel = cancelAt("creating outputs", after)
        if how == "progressCallback":
            report = progress

            def progress(stage, fraction, report=report, cancel=cancel):
                report(stage, fraction)
                if cancel():
                    raise CancelledError()

            cancel = None
        with pytest.raises(CancelledError):
            logic.process(
                ct, model=str(tinyPack), progressCallback=progress, cancelCallback=cancel, replaceExisting=True
            )
        assert sceneState() == before, f"cancel at output step {after} of {steps}"
