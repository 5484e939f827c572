"""Anatomical post-processing rules on synthetic volumes whose answer is known voxel for voxel."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from morse import pack_limits
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
    settings_from_pack,
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
    s = settings_from_dict({"min_ml": {"liver": 100}, "body": False, "min_confidence": 0.5})
    assert s.minimum_ml("liver") == 100.0 and s.minimum_ml("spleen") == 1.0 and not s.body
    assert s.min_confidence == 0.5 and s.largest_component and s.enabled
    bad_settings = (
        {"min_ml": {"liver": -1}},
        {"min_ml": [100]},
        {"body": "yes"},
        {"sizes": {}},
        [1],
        {"body_threshold_hu": float("nan")},
        {"min_confidence": 1.5},
        {"min_confidence": True},
        {"default_min_ml": "1"},
    )
    for bad in bad_settings:
        with pytest.raises(ModelPackError):
            settings_from_dict(bad)


def test_one_validation_path_for_the_settings():
    """What anatomy accepts is what a model pack is checked for when it loads: the same keys, the same problems."""
    assert set(pack_limits.POSTPROCESS_KEYS) == {f.name for f in dataclasses.fields(PostprocessSettings)}
    bad = {"min_confidence": -0.1, "min_ml": {"liver": 1e9}, "largest_component": 1}
    problems = pack_limits.check_postprocess(bad)
    assert len(problems) == 3
    assert pack_limits.check_inference({"batch_size": 4, "postprocess": bad}) == problems  # a pack refuses them
    with pytest.raises(ModelPackError) as err:
        settings_from_dict(bad, where="inference.postprocess")
    assert str(err.value) == "; ".join(problems)
    assert pack_limits.check_postprocess(True) == [] and pack_limits.check_postprocess(None) == []


def test_min_ml_must_name_the_models_organs():
    pack = SimpleNamespace(meta={"inference": {"postprocess": {"min_ml": {"livr": 100}}}}, labels=INFOS, path="p")
    with pytest.raises(ModelPackError, match="livr"):
        settings_from_pack(pack)
    pack.meta["inference"]["postprocess"]["min_ml"] = {"liver": 100}
    assert settings_from_pack(pack).minimum_ml("liver") == 100


def _two_livers():
    """A liver of 800 voxels the network was unsure of (uncertainty 0.8) and one of 200 it was sure of (0.1)."""
    labels = np.zeros((20, 64, 64), np.uint8)
    uncertainty = np.zeros(labels.shape, np.float32)
    labels[2:10, 10:20, 10:20] = LIVER
    uncertainty[2:10, 10:20, 10:20] = 0.8
    labels[12:14, 30:40, 30:40] = LIVER
    uncertainty[12:14, 30:40, 30:40] = 0.1
    return labels, uncertainty


@pytest.mark.parametrize("stored", ["float", "uint8"])
def test_unsure_piece_is_dropped_before_the_largest_is_kept(stored):
    labels, uncertainty = _two_livers()
    if stored == "uint8":  # the Slicer module's maps: round(value·255)
        uncertainty = np.round(uncertainty * 255).astype(np.uint8)
    plain = labels.copy()
    postprocess_labels(plain, SPACING, INFOS, PostprocessSettings(default_min_ml=0.0), None, uncertainty)
    assert np.count_nonzero(plain) == 800  # min_confidence 0: the rule is off, the largest piece wins
    settings = PostprocessSettings(default_min_ml=0.0, min_confidence=0.5)
    changes = postprocess_labels(labels, SPACING, INFOS, settings, None, uncertainty)
    assert np.count_nonzero(labels) == 200 and labels[12:14, 30:40, 30:40].all()  # the sure one stays
    c = changes["liver"]
    assert c.low_confidence_pieces == 1 and c.low_confidence_ml == pytest.approx(800 * 0.002)
    assert c.fragments == 0 and c.removed_ml == pytest.approx(1.6)
    (message,) = describe_changes(changes)
    assert "liver: 1.6 ml in 1 low-confidence piece" in message


def test_confidence_is_the_mean_over_the_piece():
    """Half of the piece at uncertainty 0.2, half at 0.6: mean confidence 0.6, kept below it, dropped above."""
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[2:6, 5:15, 5:15] = KIDNEY_L  # 400 voxels
    uncertainty = np.zeros(labels.shape, np.float32)
    uncertainty[2:4, 5:15, 5:15] = 0.2
    uncertainty[4:6, 5:15, 5:15] = 0.6
    for threshold, kept in ((0.55, 400), (0.65, 0)):
        out = labels.copy()
        settings = PostprocessSettings(default_min_ml=0.0, min_confidence=threshold)
        changes = postprocess_labels(out, SPACING, INFOS, settings, None, uncertainty)
        assert np.count_nonzero(out == KIDNEY_L) == kept
        assert changes["kidney_left"].low_confidence_ml == pytest.approx((400 - kept) * 0.002)


def test_confidence_rule_without_largest_piece_rule_and_without_a_map():
    labels, uncertainty = _two_livers()
    labels[15:17, 50:55, 50:55] = LIVER  # a third, sure piece: both sure ones stay when only the confidence rule is on
    settings = PostprocessSettings(default_min_ml=0.0, min_confidence=0.5, largest_component=False)
    out = labels.copy()
    postprocess_labels(out, SPACING, INFOS, settings, None, uncertainty)
    assert np.count_nonzero(out) == 200 + 50
    out = labels.copy()
    postprocess_labels(out, SPACING, INFOS, settings, None, None)  # no map: the rule cannot apply
    assert np.array_equal(out, labels)


def test_volume_rules_read_the_uncertainty_map_in_its_own_layout():
    ct = _ct()
    labels, uncertainty = _two_livers()
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (SPACING[2], SPACING[1], SPACING[0]), np.eye(3).ravel())
    layout = AxisReorder(transpose=(2, 1, 0), flip=(True, False, True), shape=ct.shape)

    def stored(a):
        return np.ascontiguousarray(layout.apply(a))

    out = stored(labels)
    settings = PostprocessSettings(default_min_ml=0.0, min_confidence=0.5)
    post = postprocess_volume(stored(ct), layout.reoriented_ijk_to_ras(m), [out], INFOS, settings,
                              uncertainty=stored(uncertainty))  # fmt: skip
    assert np.count_nonzero(out) == 200 and post.changes["liver"].low_confidence_pieces == 1
