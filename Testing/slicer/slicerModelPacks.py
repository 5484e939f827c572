"""Model packs for the Slicer tests: real MORSE models (engine code, safetensors packs), made small.

- :func:`makeTinyPack`: untrained weights; outputs are deterministic but meaningless. For plumbing: names, colours,
  geometry, node bookkeeping.
- :func:`trainBrightObjectPack`: trained for 60 iterations (~5 s on one core) to segment bright ellipses on a dark
  background; used where the test must know *where* the segmentation should be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from morse.labels import LabelInfo

TINY_LABELS = [
    LabelInfo(
        1, "liver", (0.87, 0.51, 0.4), ("SCT", "123037004", "Anatomical Structure"), ("SCT", "10200004", "Liver")
    ),
    LabelInfo(
        2, "spleen", (0.62, 0.42, 0.64), ("SCT", "123037004", "Anatomical Structure"), ("SCT", "78961009", "Spleen")
    ),
    LabelInfo(
        3, "aorta", (0.88, 0.38, 0.3), ("SCT", "123037004", "Anatomical Structure"), ("SCT", "15825003", "Aorta")
    ),
]
OBJECT_LABELS = [
    LabelInfo(1, "object", (0.2, 0.8, 0.3), ("SCT", "123037004", "Anatomical Structure"), ("SCT", "10200004", "Liver"))
]
# Intensity window of the packs (HU): the synthetic CT uses -120 HU background and 160 HU objects.
WINDOW = (-125.0, 275.0)


def _smallConfig(numClasses: int):
    from morse.config import BackboneConfig, ModelConfig, PointHeadConfig, PositionalEncodingConfig, SMoEConfig

    return ModelConfig(
        num_classes=numClasses,
        backbone=BackboneConfig(features=[8, 8, 16, 16, 16, 8]),
        features=SMoEConfig(
            expert_dim=8,
            gating_widths=[8],
            fusion_widths=[8],
            out_dim=8,
            gating="pointwise",
            gating_kernel=1,
            gating_norm="none",
        ),
        point_head=PointHeadConfig(
            pe=PositionalEncodingConfig(num_frequencies=8), hidden=[8], train_points=64, test_points=64
        ),
    )


def _preprocessing(spacing: float):
    from morse.config import IntensityConfig, PreprocessingConfig

    return PreprocessingConfig(
        orientation="LPS",
        spacing=[spacing] * 3,
        intensity=IntensityConfig(mode="window", low=WINDOW[0], high=WINDOW[1]),
    )


def makeTinyPack(folder: Path, labels=TINY_LABELS, seed: int = 0, modelId: str = "tiny-test") -> Path:
    import torch
    from morse.model import MorseModel
    from morse.modelpack import save_model_pack

    torch.manual_seed(seed)
    model = MorseModel(_smallConfig(len(labels) + 1)).eval()
    return save_model_pack(
        folder,
        model,
        model_id=modelId,
        version="0.0.1",
        preprocessing=_preprocessing(2.0),
        labels=labels,
        name="Tiny test model",
        description="untrained; for plumbing tests",
    )


def trainBrightObjectPack(folder: Path, iterations: int = 60, seed: int = 0) -> Path:
    """A 2D MORSE model (coarse head + rendering head) trained on 48×48 slices with bright ellipses."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from morse.model import MorseModel, point_labels
    from morse.modelpack import save_model_pack

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MorseModel(_smallConfig(2))
    size = 48
    yy, xx = np.mgrid[:size, :size]

    def batch(n: int = 8):
        # Normalised intensities as the pack's window maps -120 HU (≈0.01) and 160 HU (≈0.71).
        image = rng.normal(0.0, 0.05, (n, 1, size, size)).astype(np.float32)
        label = np.zeros((n, size, size), np.int64)
        for b in range(n):
            if rng.random() < 0.85:
                cy, cx = rng.uniform(8, size - 8, 2)
                ry, rx = rng.uniform(3, 14, 2)
                mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
                label[b][mask] = 1
                image[b, 0][mask] += rng.uniform(0.5, 0.9)
        return torch.from_numpy(image), torch.from_numpy(label)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(iterations):
        x, y = batch()
        out = model(x)
        loss = F.cross_entropy(out["coarse"], y)
        targets = point_labels(y, out["point_coords"])
        loss = loss + F.cross_entropy(out["point_logits"].reshape(-1, 2), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return save_model_pack(
        folder,
        model,
        model_id="bright-object-test",
        version="0.0.1",
        preprocessing=_preprocessing(1.0),
        labels=OBJECT_LABELS,
        name="Bright-object test model",
    )


# The review calibration of :func:`withReviewCalibration`: a sharp temperature spreads the untrained network's class
# margins (otherwise equally unsure everywhere), and a threshold at their median cuts the uncertainty map of the
# synthetic CT into many regions, with a small minimum size.
REVIEW_CALIBRATION = {"temperature": 0.05, "review_threshold": 0.56, "min_region_ml": 0.01, "opening_mm": 2.0}


def withReviewCalibration(source: Path, folder: Path) -> Path:
    """A copy of the pack ``source`` whose model.json ``calibration`` gives a review list with many ranked regions."""
    import json
    import shutil

    shutil.copytree(source, folder)
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    meta["calibration"] = dict(REVIEW_CALIBRATION)
    (folder / "model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return folder
