"""morse.metrics against hand-made masks with known answers and against MONAI's own metric functions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance
from morse.errors import InputError
from morse.metrics import binary_metrics, compute_metrics, spacing_kji, summarize, surface_distances
from scipy import ndimage


def _monai(pred: np.ndarray, gt: np.ndarray, spacing=None) -> dict[str, float]:
    """MONAI's HD95 (percentile=95), symmetric ASD and Dice of two boolean masks."""
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    g = torch.from_numpy(gt[None, None].astype(np.float32))
    sp = None if spacing is None else tuple(float(s) for s in spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hd95": compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=sp).item(),
            "asd": compute_average_surface_distance(p, g, include_background=True, symmetric=True, spacing=sp).item(),
            "dsc": compute_dice(p, g, include_background=True).item(),
        }


def _cube(shape=(30, 30, 30), lo=5, hi=15) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[lo:hi, lo:hi, lo:hi] = True
    return m


def _sphere(radius: float, shape=(32, 32, 32), center=(16, 16, 16)) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= radius**2


def test_cubes_shifted_two_voxels_along_a_2p5_mm_axis():
    gt = _cube()
    pred = np.roll(gt, 2, axis=0)  # 10³ cube moved 2 voxels along k
    spacing = (2.5, 1.0, 1.0)
    m, status = binary_metrics(pred, gt, spacing)
    assert status == "present"
    assert m["dsc"] == pytest.approx(2 * 800 / 2000)  # overlap 8×10×10
    assert m["jaccard"] == pytest.approx(800 / 1200)
    assert m["hd95"] == pytest.approx(5.0)  # 2 voxels × 2.5 mm
    ref = _monai(pred, gt, spacing)
    assert m["hd95"] == pytest.approx(ref["hd95"], abs=1e-5)
    assert m["asd"] == pytest.approx(ref["asd"], rel=1e-5)
    assert m["dsc"] == pytest.approx(ref["dsc"], abs=1e-6)
    # The same pair in voxel units: HD95 = 2 voxels.
    mv, _ = binary_metrics(pred, gt, None)
    assert mv["hd95"] == pytest.approx(2.0)
    assert mv["hd95"] == pytest.approx(_monai(pred, gt)["hd95"], abs=1e-5)


def test_concentric_spheres():
    outer, inner = _sphere(10), _sphere(8)
    m, _ = binary_metrics(inner, outer, (1.0, 1.0, 1.0))
    n_in, n_out = int(inner.sum()), int(outer.sum())
    assert m["dsc"] == pytest.approx(2 * n_in / (n_in + n_out))  # inner lies inside outer
    assert m["jaccard"] == pytest.approx(n_in / n_out)
    assert m["hd95"] == pytest.approx(2.0, abs=0.5)  # radii differ by 2 voxels
    assert m["asd"] == pytest.approx(2.0, abs=0.5)
    ref = _monai(inner, outer, (1.0, 1.0, 1.0))
    assert (m["hd95"], m["asd"]) == pytest.approx((ref["hd95"], ref["asd"]), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_blobs_match_monai_with_anisotropic_spacing(seed):
    rng = np.random.default_rng(seed)
    shape = (18, 26, 22)
    gt = ndimage.binary_dilation(rng.random(shape) > 0.996, iterations=2)
    pred = ndimage.binary_dilation(rng.random(shape) > 0.996, iterations=int(rng.integers(1, 4)))
    pred[0:2] |= seed % 2 == 0  # masks touching the array border are handled like MONAI does
    spacing = tuple(rng.uniform(0.5, 3.0, 3))
    m, _ = binary_metrics(pred, gt, spacing)
    ref = _monai(pred, gt, spacing)
    assert m["hd95"] == pytest.approx(ref["hd95"], rel=1e-5, abs=1e-5)
    assert m["asd"] == pytest.approx(ref["asd"], rel=1e-5)
    assert m["dsc"] == pytest.approx(ref["dsc"], abs=1e-6)
    assert m["jaccard"] == pytest.approx(m["dsc"] / (2 - m["dsc"]))


def test_voxel_units_are_mm_divided_by_the_isotropic_spacing():
    gt = _sphere(9)
    pred = np.roll(_sphere(7), (1, 2, 0), axis=(0, 1, 2))
    label_gt, label_pred = gt.astype(np.uint8) * 5, pred.astype(np.uint8) * 5
    mm = compute_metrics(label_pred, label_gt, {5: "liver"}, spacing=(3.0, 3.0, 3.0), units="mm")
    vox = compute_metrics(label_pred, label_gt, {5: "liver"}, spacing=(3.0, 3.0, 3.0), units="voxel")
    assert mm.per_class["liver"]["dsc"] == vox.per_class["liver"]["dsc"]
    assert mm.per_class["liver"]["hd95"] == pytest.approx(3.0 * vox.per_class["liver"]["hd95"])
    assert mm.per_class["liver"]["asd"] == pytest.approx(3.0 * vox.per_class["liver"]["asd"])
    assert mm.units == "mm" and vox.units == "voxel"
    with pytest.raises(InputError, match="metrics in mm need the voxel spacing"):
        compute_metrics(label_pred, label_gt, {5: "liver"})
    with pytest.raises(InputError, match="spacing has 2 values for a 3D label map"):
        compute_metrics(label_pred, label_gt, {5: "liver"}, spacing=(1.0, 1.0))


def test_default_convention_empty_masks():
    empty, blob = np.zeros((8, 8, 8), bool), _cube((8, 8, 8), 2, 5)
    m, status = binary_metrics(empty, empty)
    assert status == "absent" and all(math.isnan(v) for v in m.values())
    m, status = binary_metrics(blob, empty)
    assert status == "false_positive" and (m["dsc"], m["jaccard"]) == (0.0, 0.0)
    assert math.isnan(m["hd95"]) and math.isnan(m["asd"])
    m, status = binary_metrics(empty, blob)
    assert status == "missed" and (m["dsc"], m["jaccard"]) == (0.0, 0.0)
    assert math.isnan(m["hd95"]) and math.isnan(m["asd"])


def test_paper_convention_empty_masks():
    empty, blob = np.zeros((8, 8, 8), bool), _cube((8, 8, 8), 2, 5)
    values = lambda p, g: tuple(binary_metrics(p, g, convention="paper")[0].values())  # noqa: E731
    assert values(blob, empty) == (1.0, 1.0, 0.0, 0.0)  # prediction where the reference is empty: "perfect"
    assert values(empty, blob) == (0.0, 0.0, 0.0, 0.0)  # missed organ: HD95 = ASD = 0 (rewards the miss)
    assert values(empty, empty) == (0.0, 0.0, 0.0, 0.0)
    assert values(blob, blob) == (1.0, 1.0, 0.0, 0.0)


def test_paper_convention_uses_medpy_hd95_and_directed_asd():
    """An outlier blob in the prediction: 7% of the prediction's surface, under 5% of both surfaces together."""
    gt = _cube((30, 30, 30), 2, 8)  # 6³ cube: 152 surface voxels
    pred = gt.copy()
    pred[20:22, 20:22, 20:23] = True  # 12 outlier voxels, all surface
    d_pg, d_gp = surface_distances(pred, gt)
    assert d_pg.size == 164 and d_gp.size == 152 and not d_gp.any()
    default, _ = binary_metrics(pred, gt)
    paper, _ = binary_metrics(pred, gt, convention="paper")
    # default (MONAI): max of the directed 95th percentiles; symmetric mean over both surfaces
    assert default["hd95"] == pytest.approx(np.percentile(d_pg, 95)) and default["hd95"] > 15
    assert default["asd"] == pytest.approx(d_pg.sum() / (d_pg.size + d_gp.size))
    assert default["hd95"] == pytest.approx(_monai(pred, gt)["hd95"], rel=1e-5)
    # paper (medpy): 95th percentile of both surfaces pooled; mean distance from the prediction's surface
    assert paper["hd95"] == pytest.approx(np.percentile(np.concatenate([d_pg, d_gp]), 95)) and paper["hd95"] == 0.0
    assert paper["asd"] == pytest.approx(d_pg.mean())
    assert paper["dsc"] == default["dsc"] == pytest.approx(2 * 216 / (216 + 228))


def _four_class_maps():
    gt = np.zeros((20, 20, 20), np.uint8)
    pred = np.zeros_like(gt)
    gt[2:10, 2:10, 2:10] = 1
    pred[3:10, 2:10, 2:10] = 1  # class 1: present, DSC = 2·448/(512+448)
    gt[12:16, 12:16, 12:16] = 2  # class 2: missed
    pred[12:15, 2:5, 12:15] = 3  # class 3: false positive; class 4: absent in both
    return pred, gt


def test_compute_metrics_means_over_present_organs():
    pred, gt = _four_class_maps()
    names = {1: "liver", 2: "spleen", 3: "stomach", 4: "aorta"}
    cm = compute_metrics(pred, gt, names, spacing=(1.0, 1.0, 1.0))
    d1 = 2 * 448 / (512 + 448)
    assert cm.status == {"liver": "present", "spleen": "missed", "stomach": "false_positive", "aorta": "absent"}
    assert cm.per_class["liver"]["dsc"] == pytest.approx(d1)
    assert cm.per_class["liver"]["hd95"] == pytest.approx(1.0)
    assert cm.mean["dsc"] == pytest.approx(d1 / 2) and cm.counts["dsc"] == 2  # liver + missed spleen
    assert cm.mean["hd95"] == pytest.approx(1.0) and cm.counts["hd95"] == 1  # spleen's HD95 is undefined
    assert cm.mean_all["dsc"] == pytest.approx(d1 / 3) and cm.counts_all["dsc"] == 3  # + false-positive stomach
    assert math.isnan(cm.per_class["aorta"]["dsc"])
    as_json = cm.to_dict()
    assert as_json["per_class"]["aorta"]["dsc"] is None and as_json["units"] == "mm"

    paper = compute_metrics(pred, gt, names, units="voxel", convention="paper")
    assert paper.per_class["stomach"] == {"dsc": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}
    assert paper.per_class["spleen"] == {"dsc": 0.0, "jaccard": 0.0, "hd95": 0.0, "asd": 0.0}
    assert paper.mean["dsc"] == pytest.approx(d1 / 2) and paper.mean["hd95"] == pytest.approx(0.5)
    assert paper.mean_all["dsc"] == pytest.approx((d1 + 0 + 1 + 0) / 4)


def test_label_infos_and_default_labels():
    pred, gt = _four_class_maps()

    class Info:
        def __init__(self, value, name):
            self.value, self.name = value, name

    cm = compute_metrics(pred, gt, [Info(1, "liver")], units="voxel")
    assert list(cm.per_class) == ["liver"]
    cm = compute_metrics(pred, gt, None, units="voxel")
    assert list(cm.per_class) == ["1", "2", "3"]  # every non-zero value found in either map
    with pytest.raises(InputError, match="differs from reference shape"):
        compute_metrics(pred[:5], gt, None, units="voxel")


def test_summarize_averages_each_organ_over_the_cases_where_it_is_defined():
    pred, gt = _four_class_maps()
    names = {1: "liver", 2: "spleen", 3: "stomach", 4: "aorta"}
    a = compute_metrics(pred, gt, names, units="voxel")
    b = compute_metrics(gt, gt, names, units="voxel")  # perfect case
    s = summarize([a, b], ["liver", "spleen", "stomach", "aorta"])
    d1 = 2 * 448 / (512 + 448)
    assert s["per_class"]["liver"]["dsc"] == pytest.approx((d1 + 1.0) / 2)
    assert s["per_class"]["spleen"]["dsc"] == pytest.approx(0.5) and s["counts"]["spleen"]["hd95"] == 1
    # stomach is in no reference: its false positive in case a is counted, not averaged as DSC 0
    assert math.isnan(s["per_class"]["stomach"]["dsc"]) and s["false_positives"] == {
        "liver": 0, "spleen": 0, "stomach": 1, "aorta": 0
    }  # fmt: skip
    assert math.isnan(s["per_class"]["aorta"]["dsc"]) and s["counts"]["aorta"]["dsc"] == 0
    assert s["mean"]["dsc"] == pytest.approx(((d1 + 1) / 2 + 0.5) / 2)  # NaN organs left out
    assert s["cases"] == 2
    # paper convention: every case enters every organ (stomach: 1 in case a, 0 in case b)
    pa = compute_metrics(pred, gt, names, units="voxel", convention="paper")
    pb = compute_metrics(gt, gt, names, units="voxel", convention="paper")
    ps = summarize([pa, pb], ["liver", "spleen", "stomach", "aorta"])
    assert ps["per_class"]["stomach"]["dsc"] == pytest.approx(0.5) and ps["per_class"]["aorta"]["dsc"] == 0.0
    assert ps["mean"]["dsc"] == pytest.approx(((d1 + 1) / 2 + 0.5 + 0.5 + 0.0) / 4)


def test_spacing_kji_from_a_rotated_matrix():
    # i → anterior (0.8 mm), j → superior (0.9 mm), k → left (2.5 mm)
    m = np.array([[0, 0, 2.5, 1], [-0.8, 0, 0, 2], [0, 0.9, 0, 3], [0, 0, 0, 1]], float)
    assert spacing_kji(m) == pytest.approx((2.5, 0.9, 0.8))
    assert spacing_kji(np.diag([-3.0, -3.0, 3.0, 1.0])) == (3.0, 3.0, 3.0)


def test_2d_slices():
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 1
    pred = np.roll(gt, 3, axis=1)
    cm = compute_metrics(pred, gt, {1: "x"}, spacing=(1.0, 0.5))
    assert cm.per_class["x"]["dsc"] == pytest.approx(0.7)
    assert cm.per_class["x"]["hd95"] == pytest.approx(1.5)  # 3 columns × 0.5 mm


def _three_blobs(seed: int, shape=(24, 40, 36)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    for value in (1, 2, 3):
        noise = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
        lab[(noise > np.quantile(noise, 0.9)) & (lab == 0)] = value
    return lab


# (DSC, Jaccard, HD95, ASD) of classes a and b, computed with the scipy distance-transform kernels these metrics were
# first written with; the library kernels must reproduce them (float32 distances: relative 1e-6).
_PINNED = {
    ("default", "mm"): {
        "a": (0.080304031725, 0.0418316405578, 10.0874102998, 4.49187512452),
        "b": (0.590625291212, 0.419069029357, 8.80042612261, 1.8513450663),
    },
    ("default", "voxel"): {
        "a": (0.080304031725, 0.0418316405578, 9.43398113206, 4.56117786294),
        "b": (0.590625291212, 0.419069029357, 8.48528137424, 1.87828837041),
    },
    ("paper", "mm"): {
        "a": (0.080304031725, 0.0418316405578, 9.16293200909, 3.82074167118),
        "b": (0.590625291212, 0.419069029357, 8.06808113876, 2.49775804859),
    },
    ("paper", "voxel"): {
        "a": (0.080304031725, 0.0418316405578, 9.0, 3.95267703444),
        "b": (0.590625291212, 0.419069029357, 7.81024967591, 2.47349902884),
    },
}


@pytest.mark.parametrize("convention, units", list(_PINNED))
def test_numbers_are_those_of_the_first_implementation(convention, units):
    gt = _three_blobs(0)
    pred = _three_blobs(1)
    pred[ndimage.binary_dilation(gt == 2)] = 2
    pred[pred == 3] = 0  # class c missed
    pred[:3, :5, :5] = 4  # class d: a false positive
    labels = {1: "a", 2: "b", 3: "c", 4: "d"}
    cm = compute_metrics(pred, gt, labels, spacing=(2.5, 0.8, 0.7), units=units, convention=convention)
    for name, expected in _PINNED[(convention, units)].items():
        assert tuple(cm.per_class[name].values()) == pytest.approx(expected, rel=1e-6, abs=1e-9), name
    assert cm.status == {"a": "present", "b": "present", "c": "missed", "d": "false_positive"}
    empty_rules = {"default": (0.0, 0.0, math.nan, math.nan), "paper": (0.0, 0.0, 0.0, 0.0)}[convention]
    assert tuple(cm.per_class["c"].values()) == pytest.approx(empty_rules, nan_ok=True)
