"""Anatomical post-processing rules on synthetic volumes whose answer is known voxel for voxel."""

from __future__ import annotations

import numpy as np
import pytest
from morse.errors import ModelPackError
from morse.geometry import AxisReorder, ijk_to_ras_from_lps
from morse.inference.anatomy import (
    OrganChange,
    PostprocessSettings,
    body_mask,
    describe_changes,
    postprocess_labels,
    postprocess_volume,
    settings_from_dict,
)
from morse.inference.result import LabelInfo

LIVER, KIDNEY_L, KIDNEY_R = 1, 2, 3
INFOS = [
    LabelInfo(LIVER, "liver", (1, 0, 0)),
    LabelInfo(KIDNEY_L, "kidney_left", (0, 1, 0)),
    LabelInfo(KIDNEY_R, "kidney_right", (0, 0, 1)),
]
SPACING = (2.0, 1.0, 1.0)  # mm per (z, y, x): 2 µl per voxel


def _ct(shape=(20, 64, 64)) -> np.ndarray:
    """Air (−1000 HU) around an elliptic-cylinder body of soft tissue (40 HU) with a lung-like air hole inside."""
    _, y, x = np.indices(shape)
    ct = np.full(shape, -1000.0, np.float32)
    body = ((y - 32) / 26.0) ** 2 + ((x - 32) / 28.0) ** 2 <= 1
    ct[body] = 40.0
    ct[body & ((y - 32) ** 2 + (x - 20) ** 2 <= 25)] = -850.0  # an air pocket inside the body (lung, gas)
    return ct


def test_largest_component_is_kept_per_organ_and_per_side():
    labels = np.zeros((20, 64, 64), np.uint8)
    labels[2:10, 10:20, 10:20] = LIVER  # 800 voxels: the liver
    labels[15:17, 40:43, 40:43] = LIVER  # 18 voxels: a detached fragment
    labels[5:9, 30:34, 10:14] = KIDNEY_L  # 64 voxels
    labels[5:9, 30:34, 50:54] = KIDNEY_R  # 64 voxels, detached from the left one: both stay
    changes = postprocess_labels(labels, SPACING, INFOS, PostprocessSettings(default_min_ml=0.0))
    assert np.count_nonzero(labels == LIVER) == 800
    assert not labels[15:17, 40:43, 40:43].any()
    assert np.count_nonzero(labels == KIDNEY_L) == 64 and np.count_nonzero(labels == KIDNEY_R) == 64
    assert changes["liver"].fragments == 1
    assert changes["liver"].fragments_ml == pytest.approx(18 * 0.002)
    assert changes["liver"].before_ml == pytest.approx(818 * 0.002)
    assert changes["kidney_left"].removed_ml == 0


def test_diagonal_contact_is_one_piece():
    """26-connectivity: two blocks that touch at one corner are the same organ."""
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:3, 0:3, 0:3] = LIVER
    labels[3:5, 3:5, 3:5] = LIVER
    postprocess_labels(labels, SPACING, INFOS, PostprocessSettings(default_min_ml=0.0))
    assert np.count_nonzero(labels == LIVER) == 27 + 8


def test_organ_below_its_minimum_size_is_removed():
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[1:3, 1:6, 1:6] = LIVER  # 50 voxels = 0.1 ml
    labels[1:6, 10:20, 10:20] = KIDNEY_L  # 500 voxels = 1.0 ml
    settings = PostprocessSettings(default_min_ml=0.5, min_ml={"kidney_left": 1.5})
    changes = postprocess_labels(labels, SPACING, INFOS, settings)
    assert not labels.any()  # the liver is below the default 0.5 ml, the kidney below its own 1.5 ml
    assert changes["liver"].too_small_ml == pytest.approx(0.1)
    assert changes["kidney_left"].too_small_ml == pytest.approx(1.0)
    labels[1:6, 10:20, 10:20] = KIDNEY_L
    postprocess_labels(labels, SPACING, INFOS, PostprocessSettings(default_min_ml=0.5, min_ml={"kidney_left": 0.9}))
    assert np.count_nonzero(labels == KIDNEY_L) == 500


def test_organ_cut_by_the_first_or_last_slice_keeps_its_small_part():
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[0:2, 1:6, 1:6] = LIVER  # 50 voxels = 0.1 ml touching the first slice: the scan shows only part of it
    labels[8:10, 10:15, 10:15] = KIDNEY_L  # the same at the last slice
    labels[4:6, 10:15, 10:15] = KIDNEY_R  # the same inside: removed
    postprocess_labels(labels, SPACING, INFOS, PostprocessSettings(default_min_ml=0.5))
    assert np.count_nonzero(labels == LIVER) == 50 and np.count_nonzero(labels == KIDNEY_L) == 50
    assert not (labels == KIDNEY_R).any()


def test_body_mask_fills_holes_and_drops_the_table():
    ct = _ct()
    ct[:, 62:64, 5:60] = 200.0  # a table below the body, not touching it
    body = body_mask(ct, SPACING)
    assert body.step == (2, 2)  # 1 mm in-plane: the mask is computed on a 2 mm grid
    full = body.box(slice(0, 20), slice(0, 64), slice(0, 64))
    assert full[:, 32, 20].all()  # the air pocket inside the body is body
    assert not full[:, 62:, 30].any()  # the table is not
    assert not full[:, 32, 1].any() and full[:, 32, 32].all()
    assert body.threshold == -500 and not body.clipped


def test_organ_outside_the_body_is_removed():
    ct = _ct()
    labels = np.zeros(ct.shape, np.uint8)
    labels[4:8, 28:36, 28:36] = LIVER  # 256 voxels inside
    labels[4:8, 1:4, 28:36] = LIVER  # 96 voxels in the air in front of the body, touching nothing
    labels[4:8, 28:36, 3:8] = LIVER  # 160 voxels across the skin line at x = 4: only the outside part goes
    body = body_mask(ct, SPACING)
    inside = body.box(slice(4, 8), slice(28, 36), slice(3, 8))
    settings = PostprocessSettings(largest_component=False, default_min_ml=0.0)
    changes = postprocess_labels(labels, SPACING, INFOS, settings, body)
    outside = 96 + int(np.count_nonzero(~inside))
    assert 0 < np.count_nonzero(~inside) < 160
    assert changes["liver"].outside_body_ml == pytest.approx(outside * 0.002)
    assert np.count_nonzero(labels == LIVER) == 256 + 160 - (outside - 96)
    assert not labels[4:8, 1:4].any()


def test_clipped_ct_uses_its_lowest_value_as_the_body_threshold():
    """A CT stored in the −125..275 HU window has no air: everything above −125 is tissue."""
    ct = np.clip(_ct(), -125, 275)
    body = body_mask(ct, SPACING)
    assert body.clipped and body.threshold == -125
    full = body.box(slice(0, 20), slice(0, 64), slice(0, 64))
    assert full[:, 32, 32].all() and not full[:, 1, 1].any()


def test_volume_in_any_orientation_and_both_label_arrays():
    """postprocess_volume reorients to LPS itself and treats refined and coarse labels alike."""
    ct = _ct()
    refined = np.zeros(ct.shape, np.uint8)
    refined[2:10, 20:30, 30:40] = LIVER
    refined[15:18, 2:5, 30:33] = LIVER  # outside the body
    coarse = refined.copy()
    coarse[12:14, 40:44, 40:44] = LIVER  # detached, inside
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (SPACING[2], SPACING[1], SPACING[0]), np.eye(3).ravel())
    layout = AxisReorder(transpose=(2, 1, 0), flip=(True, False, True), shape=ct.shape)  # sagittal-major, flipped
    m_stored = layout.reoriented_ijk_to_ras(m)

    def stored(a):
        return np.ascontiguousarray(layout.apply(a))

    ref_r, ref_c = refined.copy(), coarse.copy()
    post_ref = postprocess_volume(ct, m, [ref_r, ref_c], INFOS, PostprocessSettings(default_min_ml=0.0))
    arr_r, arr_c = stored(refined), stored(coarse)
    post = postprocess_volume(stored(ct), m_stored, [arr_r, arr_c], INFOS, PostprocessSettings(default_min_ml=0.0))
    assert np.array_equal(arr_r, stored(ref_r)) and np.array_equal(arr_c, stored(ref_c))
    assert np.count_nonzero(ref_r) == 800 and np.count_nonzero(ref_c) == 800
    assert post.changes["liver"].outside_body_ml == pytest.approx(27 * 0.002)
    assert post_ref.changes["liver"].removed_ml == pytest.approx(post.changes["liver"].removed_ml)
    assert post.messages == []  # 0.1 ml removed: below the 1 ml worth a message


def test_message_names_what_was_removed_and_why():
    changes = {
        "liver": OrganChange(before_ml=900, outside_body_ml=2.0, fragments_ml=248.04, fragments=3),
        "spleen": OrganChange(before_ml=0.4, too_small_ml=0.4),
        "stomach": OrganChange(before_ml=300, fragments_ml=0.5, fragments=1),
    }
    (message,) = describe_changes(changes, min_ml=0.3)
    assert "liver: 2.0 ml outside the body, 248.0 ml in 3 fragments apart from its largest piece" in message
    assert "spleen: all of it (0.4 ml, below the organ's plausible size)" in message
    assert "stomach: 0.5 ml in 1 fragment apart" in message
    assert describe_changes(changes, min_ml=1000) == []


def test_disabled_changes_nothing():
    ct = _ct()
    labels = np.zeros(ct.shape, np.uint8)
    labels[15:18, 2:5, 30:33] = LIVER
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3).ravel())
    post = postprocess_volume(ct, m, [labels], INFOS, PostprocessSettings(enabled=False))
    assert np.count_nonzero(labels) == 27 and post.changes == {} and post.messages == []


def test_settings_from_the_model_pack():
    assert settings_from_dict(None) == PostprocessSettings()
    assert settings_from_dict(False).enabled is False
    s = settings_from_dict({"min_ml": {"liver": 100}, "body": False})
    assert s.minimum_ml("liver") == 100.0 and s.minimum_ml("spleen") == 1.0 and not s.body
    for bad in ({"min_ml": {"liver": -1}}, {"body": "yes"}, {"sizes": {}}, [1], {"body_threshold_hu": float("nan")}):
        with pytest.raises(ModelPackError):
            settings_from_dict(bad)
