"""The Review section on real Qt, after a real run in the worker process: the organ and region lists, a click on a
region centring the slice views, and the status buttons writing into the review table node."""

from __future__ import annotations

import numpy as np
import panelSession
import pytest
import qtHarness
import slicer
import slicerModelPacks as modelPacks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def defaultIsReviewPack(tinyPack, tmp_path_factory):
    """The tiny pack with a review calibration (many ranked regions), installed as the bundled default model."""
    from morse.modelpack import DEFAULT_MODEL_ID

    models = tmp_path_factory.mktemp("review-models")
    modelPacks.withReviewCalibration(tinyPack, models / DEFAULT_MODEL_ID)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MORSE_MODELS", str(models))
        yield models


@pytest.fixture(scope="module")
def session(defaultIsReviewPack):
    slicer.mrmlScene.Clear(0)
    with pytest.MonkeyPatch.context() as patch:
        qtHarness.activate(patch)
        panelSession.addCt()
        s = panelSession.Session()
        yield s
        s.close()
    slicer.mrmlScene.Clear(0)


def addSliceViews() -> dict:
    """The slice nodes of the default layout (the application makes them with its views)."""
    nodes = {}
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceNode", name)
        node.SetLayoutName(name)
        node.SetDimensions(256, 256, 1)
        node.SetFieldOfView(250.0, 250.0, 1.0)
        node.SetOrientation(orientation)
        nodes[name] = node
    return nodes


def cells(table, row: int) -> list[str]:
    return [table.item(row, column).text() for column in range(table.columnCount)]


def test_review_section_lists_the_run_and_follows_clicks(session):
    ui = session.ui
    assert ui.reviewCollapsibleButton.text == "Review" and not ui.reviewCollapsibleButton.collapsed
    assert ui.reviewRegionsTable.rowCount == 0 and not ui.reviewRegionsTable.enabled
    assert not ui.markReviewedButton.enabled and ui.reviewSummaryLabel.text.startswith("No review yet")
    views = addSliceViews()

    session.click(ui.applyButton)
    outcome = session.waitForOutcome(1, timeout=400)  # a cold worker: Python, torch, the model
    assert outcome.status == "done", outcome.error
    table = outcome.outputs.reviewTable
    assert table is not None and table.GetName() == "CT MORSE review"
    rows = session.logic.reviewList(outcome.outputs)
    organs = [r for r in rows if r["entry"] == "organ"]
    regions = [r for r in rows if r["entry"] == "region"]
    assert len(regions) >= 2

    # Both lists, as the review table node holds them (volumes in ml to 0.1).
    assert ui.reviewOrgansTable.rowCount == len(organs) and ui.reviewRegionsTable.rowCount == len(regions)
    assert ui.reviewOrgansTable.columnCount == 4 and ui.reviewRegionsTable.columnCount == 6
    for row, organ in enumerate(organs):
        texts = cells(ui.reviewOrgansTable, row)
        assert texts[:2] == [organ["organ"], f"{organ['volume_ml']:.1f}"]
        assert texts[3] == ", ".join(organ["flags"])
    for row, region in enumerate(regions):
        texts = cells(ui.reviewRegionsTable, row)
        assert texts == [
            str(row + 1),
            region["organ"],
            region["kind"],
            f"{region['volume_ml']:.1f}",
            f"{region['mean_uncertainty']:.2f}",
            "to review",
        ]
    assert ui.reviewRegionsTable.enabled
    assert f"{len(regions)} regions to check, 0 reviewed" in ui.reviewSummaryLabel.text

    # A click on the second region's row centres every slice view on that region.
    session.clickCell(ui.reviewRegionsTable, 1, 1)
    session.pump(0.05)
    centre = regions[1]["centroid_ras"]
    for name, node in views.items():
        sliceToRas = slicer.util.arrayFromVTKMatrix(node.GetSliceToRAS())
        np.testing.assert_allclose(sliceToRas[:3, 3], centre, atol=1e-6, err_msg=name)
    assert ui.reviewRegionsTable.currentRow() == 1 and ui.markReviewedButton.enabled

    # "Mark reviewed" writes into the table node; the panel shows it, keeping the row selected.
    session.click(ui.markReviewedButton)
    session.pump(0.05)
    assert session.logic.reviewList(table)[len(organs) + 1]["status"] == "reviewed"
    assert cells(ui.reviewRegionsTable, 1)[-1] == "reviewed" and ui.reviewRegionsTable.currentRow() == 1
    session.clickCell(ui.reviewRegionsTable, 0, 0)
    session.click(ui.markCorrectedButton)
    session.pump(0.05)
    statuses = [r["status"] for r in session.logic.reviewList(table)[len(organs) :]]
    assert statuses[:2] == ["corrected", "reviewed"] and set(statuses[2:]) <= {"to review"}
    assert "1 reviewed, 1 corrected" in ui.reviewSummaryLabel.text
    np.testing.assert_allclose(
        slicer.util.arrayFromVTKMatrix(views["Red"].GetSliceToRAS())[:3, 3], regions[0]["centroid_ras"], atol=1e-6
    )

    # From the Python console: the panel follows the table node.
    session.logic.setReviewStatus(table, 1, "to review")
    session.pump(0.05)
    assert cells(ui.reviewRegionsTable, 0)[-1] == "to review"
    session.logic.shutdownWorker()
