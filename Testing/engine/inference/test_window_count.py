"""The progress count of 3D windows equals the windows MONAI's sliding-window inference visits."""

from __future__ import annotations

import itertools

import pytest
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval
from morse.inference.pipeline import _window_count


def _monai_windows(shape, roi, overlap: float) -> int:
    image = [max(s, r) for s, r in zip(shape, roi)]  # sliding_window_inference pads a small image up to the ROI
    interval = _get_scan_interval(image, roi, len(roi), [overlap] * len(roi))
    return len(dense_patch_slices(image, roi, interval))


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_window_count_is_monai_scan_rule(overlap):
    roi = (32, 48, 48)
    for shape in itertools.product((7, 32, 33, 80), (48, 49, 100), (20, 48, 145)):
        assert _window_count(shape, roi, overlap) == _monai_windows(shape, roi, overlap), shape
