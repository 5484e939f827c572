"""Intensity normalisation of the model packs: pinned values, and the window against MONAI's ScaleIntensityRange."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import ScaleIntensityRange
from morse.config import IntensityConfig
from morse.inference.preprocess import normalize_intensity


def test_ct_window_values_are_those_the_shipped_models_were_trained_with():
    hu = np.array([-1024, -126, -125, -124, 0, 40, 74, 274, 275, 276, 3071], np.int16)
    out = normalize_intensity(hu, IntensityConfig(mode="window", low=-125.0, high=275.0))
    assert out.dtype == np.float32 and out.shape == hu.shape
    expected = [0.0, 0.0, 0.0, 0.0024999999441206455, 0.3125, 0.4124999940395355, 0.4975000023841858,
                0.9975000023841858, 1.0, 1.0, 1.0]  # fmt: skip
    assert out.tolist() == expected  # bit for bit: float32 values of the first implementation


def test_window_of_float_input():
    x = np.array([-0.3, 0.0, 12.5, 99.99, 100.0, 250.0], np.float32)
    out = normalize_intensity(x, IntensityConfig(mode="window", low=0.0, high=100.0))
    assert out.tolist() == [0.0, 0.0, 0.125, 0.9998999834060669, 1.0, 1.0]


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_window_equals_monai_scale_intensity_range_exactly(dtype):
    rng = np.random.default_rng(3)
    volume = (rng.normal(0, 600, size=(37, 21, 19))).astype(dtype)  # odd depth: chunk edges are exercised
    cfg = IntensityConfig(mode="window", low=-160.0, high=240.0)
    ours = normalize_intensity(volume, cfg)
    monai = ScaleIntensityRange(a_min=-160.0, a_max=240.0, b_min=0.0, b_max=1.0, clip=True, dtype=np.float32)
    theirs = np.asarray(monai(volume.astype(np.float32)))
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)
    assert ours.min() == 0.0 and ours.max() == 1.0


def test_zscore_uses_the_nonzero_voxels():
    x = np.zeros((4, 5, 6), np.float32)
    x[1:3, 1:4, 1:5] = np.arange(24, dtype=np.float32).reshape(2, 3, 4) + 10.0
    out = normalize_intensity(x, IntensityConfig(mode="zscore"))
    inside = out[1:3, 1:4, 1:5]
    assert float(inside.mean()) == pytest.approx(0.0, abs=1e-6) and float(inside.std()) == pytest.approx(1.0, rel=1e-5)
    assert out[0, 0, 0] == pytest.approx(-(21.5 / np.arange(24).std()), rel=1e-5)  # background: (0 − 21.5) / std
