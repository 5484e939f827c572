"""3D models: sliding-window inference stitches coarse logits, refined logits, rectified points and gate maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from morse.config import BackboneConfig, ModelConfig, PointHeadConfig, PreprocessingConfig
from morse.geometry import ijk_to_ras_from_lps
from morse.inference.pipeline import segment_volume
from morse.labels import LabelInfo
from morse.model import MorseModel
from morse.modelpack import save_model_pack
from synthetic import pointwise_smoe

LABELS = [LabelInfo(1, "a", (1, 0, 0)), LabelInfo(2, "b", (0, 1, 0))]
ROI = 32


def _pack(tmp_path, backbone: str):
    cfg = ModelConfig(
        num_classes=3,
        backbone=BackboneConfig(
            name=backbone,
            features=[4, 8, 8, 16, 16, 4],
            img_size=[ROI] * 3,
            hidden_size=48,
            mlp_dim=96,
            num_heads=4,
            feature_size=8,
        ),
        features=pointwise_smoe(8),
        point_head=PointHeadConfig(hidden=[16], test_points=300, subdivision_steps=1),
    )
    torch.manual_seed(0)
    model = MorseModel(cfg).eval()
    pre = PreprocessingConfig(orientation="LPS", spacing=[1.0, 1.0, 1.0])
    pre.intensity.low, pre.intensity.high = 0.0, 1.0
    path = save_model_pack(tmp_path / backbone, model, model_id=backbone, version="0.0.1", preprocessing=pre,
                           labels=LABELS, inference={"roi_size": [ROI] * 3, "sw_overlap": 0.25})  # fmt: skip
    return model, path


@pytest.mark.parametrize("backbone", ["unet3d", "unetr"])
def test_single_window_equals_the_network(tmp_path, backbone):
    model, pack = _pack(tmp_path, backbone)
    volume = np.random.default_rng(0).random((ROI, ROI, ROI)).astype(np.float32)
    lps = ijk_to_ras_from_lps((0, 0, 0), (1, 1, 1), np.eye(3).ravel())
    result = segment_volume(volume, lps, model=pack, device="cpu", gating_stride=2, postprocess=False)
    pred = model.predict(torch.from_numpy(volume)[None, None], gating_stride=2)
    assert np.array_equal(result.coarse_labels, pred.coarse.argmax(1)[0].numpy())
    assert np.array_equal(result.labels, pred.refined.argmax(1)[0].numpy())
    assert np.array_equal(result.rectified.astype(bool), pred.rectified[0].numpy())
    assert result.rectified.sum() == 300
    assert result.gating.shape == (3, ROI, ROI, ROI)
    assert np.allclose(result.gating.sum(0), 1.0, atol=1e-4)


def test_many_windows_stitch_like_monai_and_map_back_to_the_input_grid(tmp_path):
    model, pack = _pack(tmp_path, "unet3d")
    rng = np.random.default_rng(1)
    volume = rng.random((40, 56, 72)).astype(np.float32)
    lps = ijk_to_ras_from_lps((5, -3, 2), (1, 1, 1), np.eye(3).ravel())
    result = segment_volume(volume, lps, model=pack, device="cpu", refine=False, gating=False, uncertainty=False)
    with torch.inference_mode():
        logits = sliding_window_inference(
            torch.from_numpy(volume)[None, None], (ROI,) * 3, 1, lambda x: model.backbone(x).logits,
            overlap=0.25, mode="gaussian",
        )  # fmt: skip
    expected = logits.argmax(1)[0].numpy()
    assert np.mean(result.coarse_labels == expected) > 0.999  # same windows and blending; ties may differ
    # anisotropic input (2 mm slices): the model grid differs, the outputs come back on the input grid
    aniso = ijk_to_ras_from_lps((0, 0, 0), (1, 1, 2), np.eye(3).ravel())
    res2 = segment_volume(volume[:20], aniso, model=pack, device="cpu", gating_stride=2)
    assert res2.labels.shape == (20, 56, 72) and np.array_equal(res2.ijk_to_ras, aniso)
    assert np.allclose(res2.gating.sum(0), 1.0, atol=1e-3)
