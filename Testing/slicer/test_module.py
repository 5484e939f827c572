"""The module file itself: metadata, sample-data registration, parameter node, preferences, and the module's own
self-test (``MORSESegmentationTest``), run as Slicer's Self Tests module would run it."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import slicer
import slicerStandIns
from conftest import needsDefaultModel
from morse.data.fetch import FetchUnavailableError
from MORSESegmentationLib import sampleData
from MORSESegmentationLib.parameters import DEVICE_CHOICES, MORSESegmentationParameterNode, Preferences

import MORSESegmentation
from MORSESegmentation import MORSESegmentationLogic

# (MORSESegmentationTest is used as MORSESegmentation.MORSESegmentationTest: imported by name, pytest would collect
# the unittest class a second time.)


class FakeApp:
    def __init__(self):
        self.connections = []

    def connect(self, signal, slot):
        self.connections.append((signal, slot))


def test_module_metadata(monkeypatch):
    app = FakeApp()
    monkeypatch.setattr(slicer, "app", app, raising=False)
    parent = types.SimpleNamespace()
    MORSESegmentation.MORSESegmentation(parent)
    assert parent.title == "MORSE Segmentation"
    assert parent.categories == ["Segmentation"]
    assert parent.contributors and all(isinstance(c, str) for c in parent.contributors)
    assert "#using-morse-in-3d-slicer" in parent.helpText and "<a href=" in parent.helpText
    assert "Implicit Anatomical Rendering" in parent.acknowledgementText and "MICCAI 2023" in parent.acknowledgementText
    # sample data is registered only once the application has started (SampleData is a Qt module)
    assert app.connections == [("startupCompleted()", MORSESegmentation.registerSampleData)]


def test_widget_needs_the_application():
    pytest.skip("Qt GUI: MORSESegmentationWidget builds Qt widgets from the .ui; needs the Slicer application")


@pytest.fixture
def fakeSampleData(monkeypatch):
    registered = []

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataSource(**kwargs):
            registered.append(kwargs)

    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=SampleDataLogic))
    return registered


def test_register_sample_data_with_registry_checksum_and_a_loader(fakeSampleData):
    from morse.data.sources import TOTALSEGMENTATOR

    MORSESegmentation.registerSampleData()
    (entry,) = fakeSampleData
    assert entry["category"] == "MORSE"
    assert entry["sampleName"] == "MORSEAbdomenCT"
    assert entry["checksums"] == f"SHA256:{TOTALSEGMENTATOR.sha256}"
    assert entry["nodeNames"] == "MORSE abdomen CT"
    assert entry["thumbnailFileName"].endswith("Resources/Icons/MORSEAbdomenCT.png")
    import os

    assert os.path.isfile(entry["thumbnailFileName"])
    try:
        node = entry["customDownloader"](None)  # what the Sample Data button calls
    except FetchUnavailableError as exc:
        pytest.skip(f"registry sample data unavailable: {exc}")
    assert node.GetName() == "MORSE abdomen CT"
    assert slicer.util.arrayFromVolume(node).shape == (20, 512, 512)
    np.testing.assert_allclose(node.GetSpacing(), (0.9765625, 0.9765625, 2.0))
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.GetItemParent(sh.GetItemByDataNode(node))
    assert sh.GetItemLevel(study) == "Study"


def test_parameter_node_defaults_and_choices():
    params = MORSESegmentationLogic().getParameterNode()
    assert isinstance(params, MORSESegmentationParameterNode)
    assert (params.model, params.device, params.refine, params.gating, params.uncertainty) == (
        "default",
        "auto",
        True,
        True,
        True,
    )
    assert params.replaceExisting is False
    assert params.inputVolume is None and params.outputSegmentation is None
    with pytest.raises(ValueError):
        params.device = "gpu"
    params.device = "cuda"
    assert MORSESegmentationLogic().getParameterNode().device == "cuda"  # one node per scene (singleton)
    assert tuple(DEVICE_CHOICES) == ("auto", "cpu", "cuda", "mps")


def test_preferences_persist_in_settings():
    prefs = Preferences()
    assert prefs.device == "auto" and prefs.lastModelFolder == ""
    prefs.device = "mps"
    prefs.lastModelFolder = "/models/pack"
    again = Preferences()  # a new session reads the same QSettings
    assert again.device == "mps" and again.lastModelFolder == "/models/pack"
    assert slicerStandIns._QSettings._store["MORSESegmentation/device"] == "mps"
    with pytest.raises(ValueError):
        again.device = "tpu"
    slicerStandIns._QSettings._store["MORSESegmentation/device"] = "something-old"
    assert Preferences().device == "auto"


def test_self_test_without_input_creates_nothing():
    case = MORSESegmentation.MORSESegmentationTest()
    case.setUp()
    case.test_MORSESegmentationNoInput()


@needsDefaultModel
def test_module_self_test_runs_and_passes():
    try:
        sampleData.loadSampleVolume()
    except FetchUnavailableError as exc:
        pytest.skip(f"registry sample data unavailable: {exc}")
    MORSESegmentation.MORSESegmentationTest().runTest()
