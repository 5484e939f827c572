"""Error scores of uncertainty maps: AUROC, top-fraction capture, near-organ region, calibration error."""

import math

import numpy as np
import torch
from morse.uncertainty.calibration import fit_temperature
from morse.uncertainty.measures import (
    BINS,
    ErrorScores,
    Reliability,
    auroc,
    captured,
    histogram,
    near_organs,
    threshold_for,
)


def test_auroc_of_histograms_separated_reversed_and_tied():
    hi, lo = histogram(np.full(10, 0.9)), histogram(np.full(30, 0.1))
    assert auroc(hi, lo) == 1.0
    assert auroc(lo, hi) == 0.0
    assert auroc(hi, hi) == 0.5
    # 2 positives at 0.9 and 0.1, 2 negatives at 0.5: half the pairs are ranked right
    assert auroc(histogram(np.array([0.9, 0.1])), histogram(np.array([0.5, 0.5]))) == 0.5


def test_captured_counts_the_errors_among_the_most_uncertain_voxels():
    u = np.linspace(0, 1, 1000, endpoint=False)
    error = np.zeros(1000, bool)
    error[-30:] = True  # the 30 most uncertain of 1000
    error[:20] = True  # and 20 of the least
    pos, neg = histogram(u[error]), histogram(u[~error])
    assert math.isclose(captured(pos, neg, 0.05), 30 / 50, abs_tol=1e-3)
    assert math.isclose(captured(pos, neg, 1.0), 1.0)
    # the cut lies within a bin below the 950th value (0.95): the top 50 voxels and nothing else lie above it
    assert 0.95 - 2.0 / BINS <= threshold_for(pos + neg, 0.05) <= 0.95


def test_near_organs_is_ten_mm_in_plane_and_per_slice():
    ref = np.zeros((3, 41, 41), np.uint8)
    ref[1, 20, 20] = 1
    near = near_organs(ref, np.zeros_like(ref), (5.0, 2.0, 2.0), 10.0)
    assert not near[0].any() and not near[2].any()  # other slices: not near, however thin the slices
    assert near[1, 20, 25] and not near[1, 20, 26]  # 5 voxels of 2 mm = 10 mm
    assert near[1, 23, 24] and not near[1, 26, 28]  # hypot(3, 4)·2 mm = 10 mm; hypot(6, 8)·2 mm = 20 mm


def test_error_scores_per_case_and_pooled():
    rng = np.random.default_rng(0)
    u = rng.uniform(size=(4, 20, 20)).astype(np.float32)
    error = u > 0.8  # a perfect map
    near = np.ones_like(error)
    scores = ErrorScores()
    scores.add(u, error, near, "a")
    s = scores.summary()
    assert s["auroc_near"] > 0.999
    # the errors are the top 20 %: the top 5 % holds a quarter of them
    assert math.isclose(s["top5_near"], 0.25, abs_tol=0.02)


def test_reliability_ece_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 200_000)
    correct = rng.uniform(size=conf.size) < conf
    calibrated = Reliability()
    calibrated.add(conf, correct)
    assert calibrated.ece() < 0.01
    over = Reliability()
    over.add(np.full(1000, 0.95), np.arange(1000) < 700)  # 95 % sure, 70 % right
    assert math.isclose(over.ece(), 0.25, abs_tol=1e-9)


def test_temperature_fit_recovers_the_temperature_of_the_labels():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(40_000, 4, generator=gen) * 3.0
    labels = torch.multinomial(torch.softmax(logits / 2.0, dim=1), 1, generator=gen)[:, 0]
    t, before, after = fit_temperature(logits.numpy(), labels.numpy())
    assert abs(t - 2.0) < 0.1
    assert after < before
