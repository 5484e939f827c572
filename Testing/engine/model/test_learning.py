"""MORSE learns for real: a small model trained on the CPU segments thin rings, and the rendering head's refined
output has boundaries at least as good as the backbone's coarse output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from morse.metrics import compute_metrics
from synthetic import ring_slices


@pytest.mark.slow
def test_trains_to_high_dice_and_refinement_does_not_hurt_boundaries(trained_rings):
    result, _ = trained_rings
    model = result.model.eval()
    images, labels = ring_slices(24, seed=123)  # unseen slices
    with torch.no_grad():
        pred = model.predict(torch.from_numpy(images)[:, None])
    coarse = pred.coarse.argmax(1).numpy().astype(np.uint8)
    refined = pred.refined.argmax(1).numpy().astype(np.uint8)
    names = {1: "disc", 2: "ring"}
    m_coarse = compute_metrics(coarse, labels, names, units="voxel")
    m_refined = compute_metrics(refined, labels, names, units="voxel")
    assert m_refined.mean["dsc"] >= 0.90, m_refined.per_class
    assert m_refined.per_class["ring"]["dsc"] >= 0.85  # the thin structure itself, not only the easy disc
    assert m_refined.mean["hd95"] <= m_coarse.mean["hd95"] + 1e-6, (m_coarse.mean, m_refined.mean)
    # the rendering head did work: it re-predicted cells and its point loss fell
    assert pred.rectified.any()
    history = result.history
    assert history[-1]["rend"] < history[0]["rend"] * 0.5
    assert history[-1]["sup"] < history[0]["sup"] * 0.5
