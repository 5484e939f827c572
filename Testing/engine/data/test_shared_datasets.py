"""The nnU-Net reader on the real BTCV (Synapse-8) and CHAOS data in ``../shared/data``: case lists, splits, label ids
and anatomical orientation. Skipped with a reason on a clone without the shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from morse.data.readers import dataset_labels, load_case, read_nnunet, select_split

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
BTCV = SHARED / "btcv-synapse8"
CHAOS = SHARED / "chaos-mr-t2"
SYNAPSE8 = {
    "aorta": 1,
    "gallbladder": 2,
    "kidney_left": 3,
    "kidney_right": 4,
    "liver": 5,
    "pancreas": 6,
    "spleen": 7,
    "stomach": 8,
}
TEST_CASES = [f"btcv_{i:04d}" for i in (1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38)]

needs_btcv = pytest.mark.skipif(not BTCV.is_dir(), reason=f"BTCV data not present at {BTCV} (shared data only)")
needs_chaos = pytest.mark.skipif(not CHAOS.is_dir(), reason=f"CHAOS data not present at {CHAOS} (shared data only)")


def _centroid_ras(mask: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    kji = np.argwhere(mask).mean(axis=0)
    ijk1 = np.array([kji[2], kji[1], kji[0], 1.0])
    return (ijk_to_ras @ ijk1)[:3]


@needs_btcv
def test_btcv_split_is_transunets():
    cases = read_nnunet(BTCV)
    assert len(cases) == 30
    assert sorted(c.name for c in select_split(cases, "test")) == TEST_CASES
    assert len(select_split(cases, "train")) == 18
    labels = dataset_labels(BTCV)
    assert {k: v for k, v in labels.items() if v} == SYNAPSE8


@needs_btcv
def test_btcv_case_orientation_and_labels():
    case = next(c for c in read_nnunet(BTCV) if c.name == "btcv_0005")
    image, label, ijk_to_ras = load_case(case)
    assert image.shape == label.shape and image.ndim == 3
    # the source stored the 8-bit window -125..275 HU
    assert image.min() >= -126 and image.max() <= 276
    assert set(np.unique(label)) <= set(range(9)) and len(np.unique(label)) >= 8
    c = {name: _centroid_ras(label == value, ijk_to_ras) for name, value in SYNAPSE8.items()}
    # RAS: +x towards the patient's right, +y anterior. Liver on the right, spleen on the left.
    assert c["liver"][0] > c["spleen"][0] + 50
    assert c["kidney_right"][0] > c["kidney_left"][0] + 50
    # kidneys behind the stomach; bone (clipped to the top of the window) mostly behind the organs
    assert c["kidney_left"][1] < c["stomach"][1] - 20
    bone = _centroid_ras(image >= 274, ijk_to_ras)
    assert bone[1] < c["liver"][1]
    # liver above the kidneys' centres
    assert c["liver"][2] > min(c["kidney_left"][2], c["kidney_right"][2])


@needs_chaos
def test_chaos_labels_and_grid():
    cases = read_nnunet(CHAOS)
    assert len(cases) == 20
    labels = {k: v for k, v in (dataset_labels(CHAOS) or {}).items() if v}
    assert labels == {"liver": 1, "kidney_right": 2, "kidney_left": 3, "spleen": 4}
    image, label, ijk_to_ras = load_case(cases[0])
    assert image.shape == label.shape
    assert set(np.unique(label)) <= {0, 1, 2, 3, 4}
    liver = _centroid_ras(label == 1, ijk_to_ras)
    spleen = _centroid_ras(label == 4, ijk_to_ras)
    assert liver[0] > spleen[0] + 50  # RAS +x: the patient's right
