"""Whole-volume inference on real files and real (trained) models: geometry, every output, options, cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from morse.errors import CancelledError, InputError
from morse.geometry import AxisReorder, ijk_to_ras_from_lps
from morse.inference.pipeline import segment_volume
from morse.metrics import compute_metrics
from synthetic import LPS_1MM, ring_slices


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _oblique_lps(shape) -> np.ndarray:
    """An oblique (10° about z) LPS matrix with 1 mm voxels, like a tilted acquisition."""
    return ijk_to_ras_from_lps((-30.0, 12.0, 7.5), (1.0, 1.0, 1.0), _rotation_z(np.radians(10)).ravel())


@pytest.fixture(scope="module")
def rings():
    return ring_slices(12, seed=7)


def test_outputs_on_the_input_grid(trained_rings, rings):
    _, pack = trained_rings
    image, label = rings
    m = _oblique_lps(image.shape)
    result = segment_volume(image, m, model=pack, device="cpu", gating_stride=2)
    assert result.labels.shape == image.shape and result.labels.dtype == np.uint8
    assert np.array_equal(result.ijk_to_ras, m)
    assert result.coarse_labels.shape == image.shape
    assert result.gating.shape == (5, *image.shape) and result.gating.dtype == np.float32
    assert np.allclose(result.gating.sum(0), 1.0, atol=1e-4)
    assert result.dominant_expert.min() >= 1 and result.dominant_expert.max() <= 5
    assert result.uncertainty.min() >= 0 and result.uncertainty.max() <= 1
    assert set(np.unique(result.rectified)) <= {0, 1} and result.rectified.any()
    assert not (result.changed & (result.rectified == 0)).any()  # labels change only where the head worked
    # the segmentation lies on the anatomy
    metrics = compute_metrics(result.labels, label, {1: "disc", 2: "ring"}, units="voxel")
    assert metrics.mean["dsc"] > 0.9
    assert {"load", "preprocess", "backbone", "refine", "gating", "postprocess", "total"} <= set(result.timings)


@pytest.mark.parametrize("transpose,flip", [((0, 1, 2), (False, True, True)), ((2, 0, 1), (True, False, True))])
def test_same_physical_volume_stored_differently_gives_the_same_labels(trained_rings, rings, transpose, flip):
    """Reorientation is exact: another storage order of the same physical voxels yields the same labels voxel for
    voxel (e.g. RAS-stored, or sagittal-major with flips)."""
    _, pack = trained_rings
    image, _ = rings
    m = _oblique_lps(image.shape)
    layout = AxisReorder(transpose=transpose, flip=flip, shape=image.shape)
    stored, stored_m = np.ascontiguousarray(layout.apply(image)), layout.reoriented_ijk_to_ras(m)
    base = segment_volume(image, m, model=pack, device="cpu", gating=False)
    other = segment_volume(stored, stored_m, model=pack, device="cpu", gating=False)
    assert np.array_equal(layout.apply(base.labels), other.labels)
    assert np.array_equal(layout.apply(base.rectified), other.rectified)


def test_resampling_to_the_model_spacing_and_back(trained_rings):
    """A 0.5 mm in-plane volume (twice the model's 1 mm) is resized down for the network and the labels come back
    on the fine grid, still on the objects."""
    _, pack = trained_rings
    image, label = ring_slices(6, seed=11)
    fine = np.repeat(np.repeat(image, 2, axis=1), 2, axis=2)
    fine_label = np.repeat(np.repeat(label, 2, axis=1), 2, axis=2)
    m = ijk_to_ras_from_lps((0, 0, 0), (0.5, 0.5, 1.0), np.eye(3).ravel())
    result = segment_volume(fine, m, model=pack, device="cpu", gating=False, uncertainty=False)
    assert result.labels.shape == fine.shape
    assert compute_metrics(result.labels, fine_label, {1: "disc", 2: "ring"}, units="voxel").mean["dsc"] > 0.85


def test_options_determinism_and_fallback(trained_rings, rings):
    _, pack = trained_rings
    image, _ = rings
    off = {"refine": False, "gating": False, "uncertainty": False}
    coarse_only = segment_volume(image, LPS_1MM, model=pack, device="cpu", **off)
    assert coarse_only.rectified is None and coarse_only.gating is None and coarse_only.uncertainty is None
    assert np.array_equal(coarse_only.labels, coarse_only.coarse_labels)
    a = segment_volume(image, LPS_1MM, model=pack, device="cpu")
    b = segment_volume(image, LPS_1MM, model=pack, device="cpu")
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.gating, b.gating)
    assert np.array_equal(a.coarse_labels, coarse_only.coarse_labels)
    if not torch.cuda.is_available():
        fallback = segment_volume(image[:2], LPS_1MM, model=pack, device="cuda", gating=False)
        assert fallback.device == "cpu"
        assert any("CUDA" in msg and "CPU" in msg for msg in fallback.messages)


def test_progress_and_cancel(trained_rings, rings):
    _, pack = trained_rings
    image, _ = rings
    seen = []
    segment_volume(image, LPS_1MM, model=pack, device="cpu", batch_size=4, progress=lambda s, f: seen.append((s, f)))
    fractions = [f for s, f in seen if s == "segmenting"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 3
    calls = {"n": 0}

    def cancel_after_first_batch():
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(CancelledError):
        segment_volume(image, LPS_1MM, model=pack, device="cpu", batch_size=4, cancel=cancel_after_first_batch)


def test_bad_volumes_are_refused_clearly(trained_rings):
    _, pack = trained_rings
    with pytest.raises(InputError, match="3D"):
        segment_volume(np.zeros((4, 4)), LPS_1MM, model=pack)
    with pytest.raises(InputError, match="NaN"):
        segment_volume(np.full((2, 8, 8), np.nan, np.float32), LPS_1MM, model=pack)
    with pytest.raises(InputError, match="IJK"):
        segment_volume(np.zeros((2, 8, 8)), np.zeros((4, 4)), model=pack)
    partly = np.zeros((2, 32, 32), np.float32)
    partly[0, 0, 0] = np.nan
    result = segment_volume(partly, LPS_1MM, model=pack, gating=False)
    assert any("NaN" in m for m in result.messages)
