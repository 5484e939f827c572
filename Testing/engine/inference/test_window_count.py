"""The progress count of 3D windows equals the windows MONAI's sliding-window inference really evaluates."""

from __future__ import annotations

import itertools

import pytest
import torch
from monai.inferers import sliding_window_inference
from morse.inference.windows import window_count


def _evaluated_windows(shape, roi, overlap: float) -> int:
    """Windows ``sliding_window_inference`` hands to the network, one per call (``sw_batch_size=1``)."""
    calls = []

    def network(x):
        calls.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros(1, 1, *shape), roi, 1, network, overlap=overlap)
    return sum(calls)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_window_count_is_what_monai_evaluates(overlap):
    roi = (8, 12, 12)
    for shape in itertools.product((3, 8, 9, 20), (12, 13, 25), (5, 12, 37)):
        assert window_count(shape, roi, overlap) == _evaluated_windows(shape, roi, overlap), shape
