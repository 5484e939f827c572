"""The review table of a run: the engine's review list in a vtkMRMLTableNode, its statuses, the console calls, the
slice views centred on a region, and the table kept through saving, re-runs and cancels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import slicer
import slicerModelPacks as modelPacks
import slicerSyntheticVolumes as syntheticVolumes
from morse.errors import CancelledError
from morse.modelpack import load_model_pack
from morse.uncertainty.review import build_review, settings_from_pack
from MORSESegmentationLib import reviewTable
from MORSESegmentationLib.volumeArrays import addVolumeFromArray

from MORSESegmentation import MORSESegmentationLogic


@pytest.fixture(scope="module")
def reviewPack(tinyPack, tmp_path_factory):
    """The tiny pack with a review calibration that leaves many ranked regions on the synthetic CT."""
    return modelPacks.withReviewCalibration(tinyPack, tmp_path_factory.mktemp("packs") / "review")


@pytest.fixture
def ct():
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(12, 40, 48))
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient"), "Study")
    sh.CreateItem(study, node)
    return node


@pytest.fixture
def sliceViews():
    """The three slice nodes of Slicer's default layout (the application creates them with its views)."""
    nodes = {}
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceNode", name)  # with the scene's orientation presets
        node.SetLayoutName(name)
        node.SetDimensions(256, 256, 1)
        node.SetFieldOfView(250.0, 250.0, 1.0)
        assert node.SetOrientation(orientation)
        nodes[name] = node
    return nodes


def expectedRows(review: dict) -> list[dict]:
    """What reviewList must give for the engine's review dict: organs, then regions in rank order, 'to review'."""
    rows = [
        {
            "entry": "organ",
            "rank": None,
            "organ": o["name"],
            "kind": None,
            "flags": o["flags"],
            "volume_ml": o["volume_ml"],
            "confidence": o["confidence"],
            "mean_uncertainty": None,
            "score": None,
            "centroid_ijk": None,
            "centroid_ras": None,
            "status": "to review",
        }
        for o in review["organs"]
    ]
    rows += [
        {
            "entry": "region",
            "rank": r["rank"],
            "organ": r["organ"],
            "kind": r["kind"],
            "flags": [],
            "volume_ml": r["volume_ml"],
            "confidence": None,
            "mean_uncertainty": r["mean_uncertainty"],
            "score": r["score"],
            "centroid_ijk": r["centroid_ijk"],
            "centroid_ras": r["centroid_ras"],
            "status": "to review",
        }
        for r in review["regions"]
    ]
    return rows


def reviewTables() -> list:
    return [n for n in slicer.util.getNodesByClass("vtkMRMLTableNode") if reviewTable.isReviewTable(n)]


def test_a_run_stores_the_engines_review_list_in_a_table_node(ct, reviewPack):
    logic = MORSESegmentationLogic()
    request = logic.prepareRequest(ct, None, str(reviewPack), "cpu")
    result = logic.runEngine(request)
    outputs = logic.importResult(request, result)

    review = build_review(result, "input", settings_from_pack(load_model_pack(reviewPack)))
    assert result.review == review  # built by the engine, for exactly this result
    regions = review["regions"]
    assert len(regions) >= 2 and [r["rank"] for r in regions] == list(range(1, len(regions) + 1))

    table = outputs.reviewTable
    assert table is not None and table in outputs.createdNodes
    assert table.IsA("vtkMRMLTableNode") and table.GetName() == "CT MORSE review"
    assert table.GetAttribute("MORSE.Output") == "review"
    assert table.GetAttribute("MORSE.RunID") == outputs.runID == outputs.segmentation.GetAttribute("MORSE.RunID")
    assert table.GetNodeReference("MORSEInputVolume") is ct
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.GetItemParent(sh.GetItemByDataNode(ct))
    assert sh.GetItemParent(sh.GetItemByDataNode(table)) == study  # beside the segmentation, in the input's study

    rows = logic.reviewList(outputs)
    assert rows == expectedRows(review)
    assert [r["organ"] for r in rows if r["entry"] == "organ"] == ["liver", "spleen", "aorta"]
    assert logic.reviewList(table) == rows == logic.reviewList(ct)  # the table itself, or the input volume
    assert table.GetTable().GetNumberOfRows() == len(review["organs"]) + len(regions)
    assert table.GetTable().GetNumberOfColumns() == len(reviewTable.COLUMNS)
    assert table.GetColumnUnitLabel("volume_ml") == "ml"


def test_status_round_trip_and_clear_errors(ct, reviewPack):
    logic = MORSESegmentationLogic()
    outputs = logic.process(ct, model=str(reviewPack))
    table = outputs.reviewTable
    before = logic.reviewList(table)
    logic.setReviewStatus(table, 2, "reviewed")
    logic.setReviewStatus(outputs, 1, "corrected")
    logic.setReviewStatus(table, "liver", "reviewed")  # an organ, by name
    rows = logic.reviewList(table)
    status = {(r["entry"], r["rank"] or r["organ"]): r["status"] for r in rows}
    assert status[("region", 1)] == "corrected" and status[("region", 2)] == "reviewed"
    assert status[("organ", "liver")] == "reviewed"
    assert [r["status"] for r in rows[3:] if r["rank"] > 2] == ["to review"] * (len(rows) - 5)
    # nothing but the statuses changed
    strip = [{k: v for k, v in r.items() if k != "status"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "status"} for r in before]
    logic.setReviewStatus(table, 2, "to review")
    assert logic.reviewList(table)[4]["status"] == "to review"

    with pytest.raises(ValueError, match=r"unknown review status 'done'.*'to review', 'reviewed', 'corrected'"):
        logic.setReviewStatus(table, 1, "done")
    count = len(before) - 3
    with pytest.raises(ValueError, match=rf"no region ranked 999 in 'CT MORSE review' \(ranks 1 to {count}\)"):
        logic.setReviewStatus(table, 999, "reviewed")
    with pytest.raises(ValueError, match="no organ 'kidney'"):
        logic.setReviewStatus(table, "kidney", "reviewed")
    with pytest.raises(ValueError, match="not a MORSE review table"):
        logic.reviewList(outputs.segmentation)
    with pytest.raises(ValueError, match="not a MORSE review table"):
        logic.jumpToRegion(None, 1)
    assert logic.reviewList(table)[3]["status"] == "corrected"  # a refused call changes nothing


def test_saved_and_reloaded_scene_keeps_the_statuses(ct, reviewPack, tmp_path):
    logic = MORSESegmentationLogic()
    outputs = logic.process(ct, model=str(reviewPack), gating=False, refine=False)
    table = outputs.reviewTable
    logic.setReviewStatus(table, 1, "reviewed")
    logic.setReviewStatus(table, 2, "corrected")
    expected = logic.reviewList(table)

    # The table alone, through its own storage node (.tsv + .schema.tsv), as Save Data writes it.
    assert table.AddDefaultStorageNode() and table.GetStorageNode().IsA("vtkMRMLTableStorageNode")
    table.GetStorageNode().SetFileName(str(tmp_path / "CT MORSE review.tsv"))
    assert table.GetStorageNode().WriteData(table) == 1
    loaded = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "reloaded")
    reader = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableStorageNode")
    reader.SetFileName(str(tmp_path / "CT MORSE review.tsv"))
    assert reader.ReadData(loaded) == 1
    assert reviewTable.rows(loaded) == expected
    slicer.mrmlScene.RemoveNode(loaded)
    slicer.mrmlScene.RemoveNode(reader)

    # The whole scene (.mrml with the node's attributes and references, and every node's file), closed and opened.
    for node in outputs.createdNodes:
        if node is not table:
            slicer.mrmlScene.RemoveNode(node)
    ct.AddDefaultStorageNode()
    ct.GetStorageNode().SetFileName(str(tmp_path / "CT.nrrd"))
    assert ct.GetStorageNode().WriteData(ct) == 1
    scene = slicer.mrmlScene
    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit() == 1
    scene.Clear(0)
    assert reviewTables() == []
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Connect() == 1
    tables = reviewTables()
    assert len(tables) == 1 and tables[0].GetName() == "CT MORSE review"
    volume = slicer.util.getNode("CT")
    assert logic.reviewTableOf(volume) is tables[0]  # the input reference came back too
    assert logic.reviewList(volume) == expected
    logic.setReviewStatus(tables[0], 3, "reviewed")  # and it is still a review table to work with
    assert logic.reviewList(volume)[5]["status"] == "reviewed"  # 3 organs, then regions 1, 2, 3


def test_jump_to_region_centres_every_slice_view_on_it(ct, reviewPack, sliceViews):
    logic = MORSESegmentationLogic()
    outputs = logic.process(ct, model=str(reviewPack))
    regions = [r for r in logic.reviewList(outputs) if r["entry"] == "region"]
    for rank in (2, 1):
        centre = regions[rank - 1]["centroid_ras"]
        point = logic.jumpToRegion(outputs.reviewTable, rank)
        np.testing.assert_allclose(point, centre, atol=1e-9)
        for name, node in sliceViews.items():
            sliceToRas = slicer.util.arrayFromVTKMatrix(node.GetSliceToRAS())
            np.testing.assert_allclose(sliceToRas[:3, 3], centre, atol=1e-6, err_msg=name)  # the view's centre
            # the slice through it: the offset along the slice normal
            assert node.GetSliceOffset() == pytest.approx(float(np.dot(sliceToRas[:3, 2], centre))), name
        assert sliceViews["Red"].GetSliceOffset() == pytest.approx(centre[2])  # axial: the S of the centre
    with pytest.raises(ValueError, match="no region ranked 0"):
        logic.jumpToRegion(outputs.reviewTable, 0)


def test_jump_follows_the_input_parent_transform(ct, reviewPack, sliceViews):
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = np.eye(4)
    shift[:3, 3] = (5.0, -3.0, 12.0)
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    ct.SetAndObserveTransformNodeID(transform.GetID())
    logic = MORSESegmentationLogic()
    outputs = logic.process(ct, model=str(reviewPack), gating=False)
    centre = np.asarray(logic.reviewList(outputs)[3]["centroid_ras"])  # the input's own (local) RAS
    point = logic.jumpToRegion(outputs.reviewTable, 1)
    np.testing.assert_allclose(point, centre + shift[:3, 3], atol=1e-6)
    assert sliceViews["Red"].GetSliceOffset() == pytest.approx(centre[2] + 12.0)


def test_reruns_add_or_replace_the_review_table(ct, reviewPack):
    logic = MORSESegmentationLogic()
    first = logic.process(ct, model=str(reviewPack), gating=False)
    logic.setReviewStatus(first.reviewTable, 1, "reviewed")
    second = logic.process(ct, model=str(reviewPack), gating=False)
    assert second.reviewTable.GetName() == "CT MORSE 2 review"
    assert reviewTables() == [first.reviewTable, second.reviewTable]
    assert logic.reviewTableOf(ct) is second.reviewTable  # the latest run's
    assert logic.reviewList(first.reviewTable)[3]["status"] == "reviewed"  # the first run's review is untouched
    replaced = logic.process(ct, model=str(reviewPack), gating=False, replaceExisting=True)
    assert reviewTables() == [replaced.reviewTable]
    assert replaced.reviewTable.GetName() == "CT MORSE review"
    assert {"CT MORSE review", "CT MORSE 2 review"} <= set(replaced.replacedNodeNames)
    assert [r["status"] for r in logic.reviewList(ct)] == ["to review"] * len(logic.reviewList(ct))


def test_cancel_after_the_review_table_leaves_none(ct, reviewPack):
    logic = MORSESegmentationLogic()
    scene = slicer.mrmlScene
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    made = []

    def progress(stage, overall):
        if stage == "creating outputs" and overall >= 0.99:  # past the table (step 0.95 of the import)
            made.extend(reviewTables())

    with pytest.raises(CancelledError):
        logic.process(ct, model=str(reviewPack), progressCallback=progress, cancelCallback=lambda: bool(made))
    assert made and made[0].GetName() == "CT MORSE review"  # it existed when the cancel came
    assert reviewTables() == []
    assert {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())} == before


def test_review_of_a_run_without_the_uncertainty_map_lists_the_organs_only(ct, reviewPack):
    logic = MORSESegmentationLogic()
    outputs = logic.process(ct, model=str(reviewPack), uncertainty=False)
    rows = logic.reviewList(outputs)
    assert [r["entry"] for r in rows] == ["organ"] * 3
    assert all(r["confidence"] is None and not math.isnan(r["volume_ml"]) for r in rows)
    with pytest.raises(ValueError, match=r"no region ranked 1 .*\(no regions\)"):
        logic.jumpToRegion(outputs.reviewTable, 1)
