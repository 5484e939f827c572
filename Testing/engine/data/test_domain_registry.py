"""Domain checks on the real registry scans: an MR, chest CTs, a CT angiogram and the abdominal CTs."""

from __future__ import annotations

import numpy as np
import pytest
from morse.data.cases import case_label_path, case_path
from morse.imageio import read_image
from morse.inference.domain import check_domain, intensity_stats
from morse.modelpack import load_model_pack

DOMAIN = {
    "modality": "CT",
    "body_region": "abdomen",
    "contrast_phases": ["portal-venous"],
    "craniocaudal_extent_mm": [282, 660],
}


@pytest.fixture(scope="module")
def labels_info():
    return load_model_pack("default").labels


def _check(name, labels_info, labels=None):
    image = read_image(case_path(name))
    if labels is None:
        labels = np.zeros(image.array.shape, np.uint8)
    return check_domain(image.array, image.ijk_to_ras, labels, labels_info, DOMAIN), image


def _notes(report, text):
    return [m for m in report.messages if text in m]


def test_mr_is_not_a_ct(registry_root, labels_info):
    """The MR's minimum is −47, so 'no negative values' misses it; air, fat and soft tissue do not."""
    report, image = _check("abdomen-mr-small", labels_info)
    assert image.array.min() < 0
    stats = report.stats["intensity"]
    assert stats["air"] == 0 and stats["fat"] < 0.005
    assert len(_notes(report, "do not look like a CT")) == 1


@pytest.mark.parametrize("name", ["chest-ct", "lung-ct"])
def test_chest_ct_is_outside_the_trained_region(registry_root, labels_info, name):
    report, _ = _check(name, labels_info)
    assert not _notes(report, "do not look like a CT")
    assert report.stats["chest_slices"] >= 0.5
    assert len(_notes(report, "looks like a chest scan")) == 1


@pytest.mark.parametrize("name", ["abdomen-ct", "abdomen-ct-small", "abdomen-ct-dicom"])
def test_abdominal_ct_passes_with_its_reference_organs(registry_root, labels_info, name):
    """The abdominal CTs and their reference organs (TotalSegmentator): a CT, not a chest, no organ in the chest;
    the organs the scan's edges cut are named."""
    reference = read_image(case_label_path(name)).array.astype(np.uint8)
    report, _ = _check(name, labels_info, reference)
    assert not _notes(report, "do not look like a CT") and not _notes(report, "chest")
    assert report.stats["chest_slices"] < 0.1
    assert "liver" in report.truncated and "top" in report.truncated["liver"]
    assert len(_notes(report, "cut by the edge of the scan")) == 1


def test_sample_ct_every_organ_is_cut(registry_root, labels_info):
    """The 20-slice sample CT (40 mm) cuts all five of its organs at the first or last slice."""
    reference = read_image(case_label_path("abdomen-ct-dicom")).array.astype(np.uint8)
    report, _ = _check("abdomen-ct-dicom", labels_info, reference)
    assert set(report.truncated) == {"aorta", "liver", "pancreas", "spleen", "stomach"}
    assert report.truncated["liver"] == ["bottom", "top"]
    assert report.stats["craniocaudal_extent_mm"] == pytest.approx(40.0)


def test_cta_arterial_phase_and_organs_in_the_chest(registry_root, labels_info):
    """The chest-abdomen CT angiogram: bright aortic blood (arterial phase), lungs in most slices, and a 'kidney'
    placed high in the chest is reported there."""
    image = read_image(case_path("cta-chest-abdomen"))
    assert intensity_stats(image.array)["air"] > 0.1
    from morse.geometry import AxisReorder

    reorder = AxisReorder.to_orientation(image.ijk_to_ras, image.array.shape, "LPS")
    vol = reorder.apply(image.array)
    labels = np.zeros(image.array.shape, np.uint8)
    lab = reorder.apply(labels)  # a view: writing it writes ``labels``
    z, y, x = vol.shape
    # an "aorta" made of the contrast-filled voxels (350–700 HU) of the lower third
    aorta = (vol > 350) & (vol < 700)
    aorta[z // 3 :] = False
    lab[aorta] = 1
    lab[int(0.7 * z) : int(0.7 * z) + 10, y // 2 - 5 : y // 2 + 5, x // 2 - 5 : x // 2 + 5] = 4  # kidney_right
    report = check_domain(image.array, image.ijk_to_ras, labels, labels_info, DOMAIN)
    assert report.stats["aorta_median_hu"] > 300
    assert len(_notes(report, "arterial phase")) == 1
    (note,) = _notes(report, "organs predicted in the chest")
    assert "kidney_right 3.4 ml" in note and "aorta" not in note
    assert len(_notes(report, "looks like a chest scan")) == 1
