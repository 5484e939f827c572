"""Synthetic data for engine tests: discs with thin rings around them (a task with thin boundaries)."""

from __future__ import annotations

import numpy as np
from morse.config import (
    BackboneConfig,
    ExperimentConfig,
    ModelConfig,
    PointHeadConfig,
    PositionalEncodingConfig,
    PreprocessingConfig,
    SMoEConfig,
)
from morse.labels import LabelInfo
from morse.train.volumes import TrainingVolume, to_model_grid

LABELS = [LabelInfo(1, "disc", (0.9, 0.2, 0.2)), LabelInfo(2, "ring", (0.2, 0.8, 0.2))]


def ring_slices(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` slices (n, size, size): a disc (label 1, bright) inside a 2–3.5 px ring (label 2, mid grey), noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(n):
        cy, cx = rng.uniform(20, size - 20, 2)
        r, t = rng.uniform(8, 14), rng.uniform(2.0, 3.5)
        d = np.hypot(yy - cy, xx - cx)
        lab = np.zeros((size, size), np.uint8)
        lab[d < r] = 1
        lab[(d >= r) & (d < r + t)] = 2
        img = np.choose(lab, [0.1, 0.7, 0.4]).astype(np.float32) + rng.normal(0, 0.08, (size, size)).astype(np.float32)
        images.append(img)
        labels.append(lab)
    return np.stack(images), np.stack(labels)


LPS_1MM = np.diag([-1.0, -1.0, 1.0, 1.0])  # IJK→RAS of a 1 mm volume whose i, j, k axes point L, P, S


def ring_volume(n: int = 64, seed: int = 0) -> TrainingVolume:
    """Ring slices brought onto the model grid by the same preprocessing as inference (identity here)."""
    image, label = ring_slices(n, seed=seed)
    return to_model_grid("rings", image, label, LPS_1MM, tiny_experiment().preprocessing, spatial_dims=2)


def pointwise_smoe(width: int = 8) -> SMoEConfig:
    """The smallest SMoE of the fast-preset structure: every layer ``width`` channels, point-wise gating."""
    return SMoEConfig(
        expert_dim=width,
        out_dim=width,
        fusion_widths=[width],
        gating_widths=[width],
        gating="pointwise",
        gating_kernel=1,
        gating_norm="none",
    )


def tiny_model_config(num_classes: int = 3, head: str = "implicit", kind: str = "smoe") -> ModelConfig:
    """A small MORSE 2D model (fast-preset structure) that trains in about a minute on two CPU cores."""
    return ModelConfig(
        num_classes=num_classes,
        backbone=BackboneConfig(features=[8, 16, 32, 64, 128, 8]),
        features=SMoEConfig(
            kind=kind,
            expert_dim=32,
            out_dim=32,
            fusion_widths=[32],
            gating_widths=[32],
            expert_last_act=False,
            gating="pointwise",
            gating_kernel=1,
            gating_norm="none",
        ),
        point_head=PointHeadConfig(
            head=head,
            hidden=[64, 64],
            pe=PositionalEncodingConfig(num_frequencies=32),
            train_points=256,
            test_points=512,
        ),
    )


def tiny_experiment(iterations: int = 300) -> ExperimentConfig:
    cfg = ExperimentConfig(name="rings")
    cfg.model = tiny_model_config()
    cfg.data.patch_size = [64, 64]
    cfg.train.iterations = iterations
    cfg.train.batch_size = 8
    cfg.train.lr = 3e-3
    cfg.train.log_every = 10
    cfg.train.checkpoint_every = 100
    cfg.loss.awa = "constant"
    cfg.loss.rend_weight = 1.0
    # the synthetic intensities already lie in [0, 1]: the [0, 1] window only clips the noise tails
    cfg.preprocessing = PreprocessingConfig(orientation="LPS", spacing=[1.0, 1.0, 1.0])
    cfg.preprocessing.intensity.low, cfg.preprocessing.intensity.high = 0.0, 1.0
    return cfg
