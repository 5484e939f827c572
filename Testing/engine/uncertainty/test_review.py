"""The review list: regions ranked by uncertain volume, the boundary rim ignored, positions in IJK and RAS."""

import csv
import io
import json

import numpy as np
from morse.inference.result import SegmentationResult
from morse.labels import LabelInfo
from morse.uncertainty.components import _opening_in_box, disc, label_components, uncertain_regions
from morse.uncertainty.review import (
    ReviewSettings,
    build_review,
    find_regions,
    organ_table,
    review_csv,
    write_review,
)

INFO = [LabelInfo(1, "liver", (1, 0, 0)), LabelInfo(2, "spleen", (0, 1, 0)), LabelInfo(3, "stomach", (0, 0, 1))]
# KJI array: k along S (2 mm), j along P (1 mm), i along L (1 mm), origin (10, 20, 30) in LPS → RAS (-10, -20, 30)
M = np.array([[-1.0, 0, 0, -10], [0, -1.0, 0, -20], [0, 0, 2.0, 30], [0, 0, 0, 1]])


def _scene():
    """Labels with a liver cube whose boundary carries a one-voxel rim of high uncertainty, a thick uncertain blob in
    the spleen (the error region, 8×8×6 voxels at 0.7) and a smaller, more uncertain blob (4×4×4 at 0.95)."""
    labels = np.zeros((20, 60, 60), np.uint8)
    labels[2:18, 5:25, 5:25] = 1
    labels[4:14, 30:50, 30:50] = 2
    u = np.zeros(labels.shape, np.float32)
    inner = np.zeros_like(labels, bool)
    inner[2:18, 6:24, 6:24] = True
    u[(labels == 1) & ~inner] = 0.99  # the rim: every boundary voxel, one voxel thick
    u[6:12, 36:44, 34:42] = 0.7  # the error region: 6 slices × 8 × 8 voxels
    u[3:7, 52:56, 52:56] = 0.95  # smaller: 4 × 4 × 4 voxels
    return labels, u


def test_the_thick_error_region_ranks_first_and_the_rim_is_not_a_region():
    labels, u = _scene()
    rows = find_regions(labels, u, M, INFO, ReviewSettings(threshold=0.5, opening_mm=1.0, min_region_ml=0.001))
    assert [r["rank"] for r in rows] == [1, 2]
    first, second = rows
    # the 1 mm opening (a cross) takes the 4 corners of each slice: 6 × 60 voxels of 2 µl = 0.72 ml, × 0.7 = 0.504;
    # the small blob: 4 × 12 voxels = 0.096 ml, × 0.95 = 0.0912 — smaller although more uncertain
    assert first["organ"] == "spleen" and first["volume_ml"] == 0.72 and first["score"] == 0.504
    assert second["organ"] == "background" and second["volume_ml"] == 0.096 and second["score"] == 0.0912
    # centroid of k 6..11, j 36..43, i 34..41 → (i, j, k) = (37.5, 39.5, 8.5); RAS = M @ ijk
    assert first["centroid_ijk"] == [37.5, 39.5, 8.5]
    assert first["centroid_ras"] == [-47.5, -59.5, 47.0]
    assert first["box_ijk_min"] == [34, 36, 6] and first["box_ijk_max"] == [41, 43, 11]


def test_without_the_opening_the_rim_would_rank_first():
    labels, u = _scene()
    rows = find_regions(labels, u, M, INFO, ReviewSettings(threshold=0.5, opening_mm=0.0, min_region_ml=0.001))
    assert rows[0]["organ"] == "liver"  # the shell around the liver is the largest uncertain component


def test_head_disagreement_outside_uncertain_regions_is_listed():
    labels, u = _scene()
    coarse = labels.copy()
    coarse[15:17, 40:44, 40:44] = 3  # the coarse head said stomach here: 32 voxels
    coarse[7:9, 38:40, 36:38] = 3  # inside the uncertain spleen region: part of that region, not listed again
    rows = find_regions(labels, u, M, INFO, ReviewSettings(threshold=0.5, opening_mm=1.0, min_region_ml=0.001), coarse)
    kinds = [(r["kind"], r["volume_ml"]) for r in rows]
    assert kinds.count(("head disagreement", 0.064)) == 1 and len(rows) == 3


def test_regions_are_found_in_axial_slices_whatever_the_array_order():
    labels, u = _scene()
    # the same scene stored with k and i swapped (a sagittal acquisition): same regions, same RAS centroid
    m2 = M[:, [2, 1, 0, 3]]
    rows = find_regions(
        labels.transpose(2, 1, 0).copy(),
        u.transpose(2, 1, 0).copy(),
        m2,
        INFO,
        ReviewSettings(threshold=0.5, opening_mm=1.0, min_region_ml=0.001),
    )
    assert rows[0]["organ"] == "spleen" and rows[0]["centroid_ras"] == [-47.5, -59.5, 47.0]
    assert rows[0]["centroid_ijk"] == [8.5, 39.5, 37.5]


def test_organ_table_flags():
    labels, u = _scene()
    post = {"removed": {"spleen": {"fragments": 2, "fragments_ml": 3.0}, "liver": {"outside_body_ml": 1.0}}}
    domain = {"truncated": {"liver": ["top"]}, "stats": {}}
    rows = {r["name"]: r for r in organ_table(labels, u, (1.0, 1.0, 2.0), INFO, post, domain, 0.9)}
    assert rows["liver"]["flags"] == ["truncated", "low confidence", "implausible region"]
    # liver: 1216 rim voxels of 6400 at 0.99 → confidence 0.812; spleen: 384 of 4000 at 0.7 → 0.9328
    assert rows["liver"]["confidence"] == 0.8119 and rows["spleen"]["confidence"] == 0.9328
    assert rows["spleen"]["flags"] == ["fragmented"]
    assert rows["stomach"]["flags"] == ["absent"] and rows["stomach"]["volume_ml"] == 0.0
    assert rows["liver"]["volume_ml"] == 16 * 20 * 20 * 0.002


def test_organ_confidence_is_the_mean_of_one_minus_uncertainty():
    labels = np.zeros((4, 10, 10), np.uint8)
    labels[:, :5] = 1
    u = np.zeros(labels.shape, np.float32)
    u[:2, :5] = 0.5  # half the organ at 0.5
    rows = organ_table(labels, u, (1.0, 1.0, 1.0), INFO[:1], {}, {}, 0.8)
    assert rows[0]["confidence"] == 0.75 and rows[0]["flags"] == ["low confidence"]
    rows = organ_table(labels, (u * 255).astype(np.uint8), (1.0, 1.0, 1.0), INFO[:1], {}, {}, 0.7)
    assert abs(rows[0]["confidence"] - (1 - 127 / 255 / 2)) < 1e-4 and rows[0]["flags"] == []


def test_review_files_round_trip(tmp_path):
    labels, u = _scene()
    result = SegmentationResult(
        labels=labels, coarse_labels=labels, ijk_to_ras=M, labels_info=INFO, uncertainty=u, model_id="m"
    )
    review = build_review(result, "scan.nii.gz", ReviewSettings(threshold=0.5, opening_mm=1.0, min_region_ml=0.001))
    write_review(tmp_path, review)
    loaded = json.loads((tmp_path / "review.json").read_text())
    assert loaded["schema"] == "morse-review/1" and loaded["regions"][0]["organ"] == "spleen"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "review.csv").read_text())))
    assert [r["entry"] for r in rows] == ["organ"] * 3 + ["region"] * 2
    assert rows[3]["rank"] == "1" and float(rows[3]["centroid_i"]) == 37.5 and float(rows[3]["score"]) == 0.504
    assert review_csv(review) == (tmp_path / "review.csv").read_text()


def test_components_and_structuring_element():
    lab = np.zeros((3, 9, 9), np.uint8)
    lab[0, 0, 0] = 1
    lab[2, 8, 8] = 1  # not touching: two pieces
    lab[1, 4, 4] = 2
    comps = label_components(lab)
    assert sorted((c.value, c.voxels) for c in comps) == [(1, 1), (1, 1), (2, 1)]
    assert disc((1.0, 1.0))[0].sum() == 5 and disc((2.0, 1.0)).shape == (1, 5, 3)
    u = np.zeros((1, 9, 9), np.float32)
    u[0, 2:7, 2:7] = 1.0
    u[0, 0, :] = 1.0  # a one-voxel line: removed by the opening
    regions = uncertain_regions(u, 0.5, (1.0, 1.0, 1.0), 1.0, 1)
    assert len(regions) == 1 and regions[0].voxels == 21  # the 5×5 square opened by a cross loses its 4 corners


def test_opening_on_the_bounding_box_equals_scipy_on_the_whole_volume():
    """The review opens only the bounding box of the uncertain voxels; on masks that touch the volume's edges, hold
    thin lines and blobs, the result must equal scipy's opening of the whole array voxel for voxel."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    for trial in range(20):
        mask = np.zeros((6, 40, 48), bool)
        for _ in range(rng.integers(1, 6)):
            z, y, x = rng.integers(0, (6, 40, 48))
            h, w = rng.integers(1, 12, size=2)
            mask[z : z + 2, y : y + h, x : x + w] = True
        mask |= rng.random(mask.shape) < 0.01  # isolated voxels, some on the borders
        structure = disc((rng.uniform(1, 3), rng.uniform(1, 3)))
        expected = ndimage.binary_opening(mask, structure=structure)
        np.testing.assert_array_equal(_opening_in_box(mask, structure), expected, err_msg=f"trial {trial}")
    assert not _opening_in_box(np.zeros((2, 5, 5), bool), disc((1.0, 1.0))).any()
