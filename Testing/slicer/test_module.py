"""The module file itself: metadata, sample-data registration, parameter node, preferences, and the module's own
self-test (``MORSESegmentationTest``), run as Slicer's Self Tests module would run it."""

from __future__ import annotations

import sys
import types
from pathlib import Path

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


def test_an_old_slicer_is_refused_at_module_load_with_what_to_do(monkeypatch, caplog):
    app = FakeApp()
    app.majorVersion, app.minorVersion = 5, 6
    monkeypatch.setattr(slicer, "app", app, raising=False)
    parent = types.SimpleNamespace()
    module = MORSESegmentation.MORSESegmentation(parent)
    assert "needs 3D Slicer 5.8 or later; this is Slicer 5.6" in module.compatibilityProblem
    assert module.compatibilityProblem in parent.helpText and module.compatibilityProblem in caplog.text
    assert app.connections == []  # nothing else is set up


@pytest.mark.parametrize(
    ("slicerVersion", "pythonVersion", "expected"),
    [
        ((5, 8), (3, 9), ""),
        ((5, 10), (3, 12), ""),
        (None, (3, 11), ""),  # version unknown: not refused
        ((5, 7), (3, 9), "3D Slicer 5.8 or later; this is Slicer 5.7"),
        ((4, 11), (3, 6), "3D Slicer 5.8 or later; this is Slicer 4.11"),
        ((5, 8), (3, 8), "Python 3.9 or later; this Slicer runs Python 3.8"),
    ],
)
def test_compatibility_rule(slicerVersion, pythonVersion, expected):
    problem = MORSESegmentation.compatibilityProblem(slicerVersion, pythonVersion)
    assert (expected in problem) if expected else problem == ""


def test_minimum_matches_the_readme_and_the_python39_promise():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    major, minor = MORSESegmentation.MINIMUM_SLICER
    assert f"3D Slicer ({major}.{minor} or later" in readme
    assert MORSESegmentation.MINIMUM_PYTHON == (3, 9)  # what Testing/project/test_python39.py checks


def test_widget_needs_the_application():
    pytest.skip("Qt GUI: MORSESegmentationWidget builds Qt widgets from the .ui; needs the Slicer application")


@pytest.fixture
def fakeSampleData(monkeypatch):
    """Sample Data as Slicer's module behaves: sources kept per category; the logic (what downloadSample uses)
    downloads each URI with urllib and ignores customDownloader, which only its GUI buttons call."""
    registered = []
    sources = {}

    class SampleDataSource:
        def __init__(self, sampleName=None, uris=None, customDownloader=None, **kwargs):
            self.sampleName, self.uris, self.customDownloader = sampleName, [uris], customDownloader

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataSource(category="Custom", **kwargs):
            registered.append({"category": category, **kwargs})
            sources.setdefault(category, []).append(SampleDataSource(**kwargs))

        def sourceForSampleName(self, sampleName):
            return next((s for group in sources.values() for s in group if s.sampleName == sampleName), None)

        def downloadFromSource(self, source):
            import urllib.request

            for uri in source.uris:
                urllib.request.urlopen(uri)  # "morse-registry:..." is no URL: this raises, as in Slicer
            return []

        def downloadSamples(self, sampleName):
            source = self.sourceForSampleName(sampleName)
            return self.downloadFromSource(source) if source else []

    module = types.SimpleNamespace(SampleDataLogic=SampleDataLogic, SampleDataSource=SampleDataSource)
    module.downloadSample = lambda name: SampleDataLogic().downloadSamples(name)[0]
    monkeypatch.setitem(sys.modules, "SampleData", module)
    return registered


def test_scripted_download_sample_loads_the_volume(fakeSampleData):
    import SampleData

    MORSESegmentation.registerSampleData()
    MORSESegmentation.registerSampleData()  # a second registration (module reload) changes nothing
    try:
        node = SampleData.downloadSample("MORSEAbdomenCT")
    except FetchUnavailableError as exc:
        pytest.skip(f"registry sample data unavailable: {exc}")
    assert node.GetName() == "MORSE abdomen CT"
    assert slicer.util.arrayFromVolume(node).shape == (20, 512, 512)
    with pytest.raises(ValueError):  # other sources still take Sample Data's own path
        SampleData.SampleDataLogic().downloadFromSource(SampleData.SampleDataSource("x", uris="not a url"))


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
