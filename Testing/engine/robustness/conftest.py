"""Fixtures of the robustness suite: a tiny untrained 3D model pack (plumbing of the 3D path, where predictions need
not be meaningful) and a writer of DICOM series with chosen slice positions."""

from __future__ import annotations

import locale

import numpy as np
import pytest
from synthetic import pointwise_smoe


@pytest.fixture(scope="session")
def pack3d(tmp_path_factory):
    """A 3D MORSE pack (UNet3D, 3 classes, 2 mm grid, [0, 1] intensity window, 32³ windows), untrained."""
    import torch
    from morse.config import (
        BackboneConfig,
        ModelConfig,
        PointHeadConfig,
        PositionalEncodingConfig,
        PreprocessingConfig,
    )
    from morse.labels import LabelInfo
    from morse.model import MorseModel
    from morse.modelpack import save_model_pack

    torch.manual_seed(3)
    cfg = ModelConfig(
        num_classes=3,
        backbone=BackboneConfig(name="unet3d", features=[4, 4, 8, 8, 8, 4]),
        features=pointwise_smoe(8),
        point_head=PointHeadConfig(hidden=[8], pe=PositionalEncodingConfig(num_frequencies=8), test_points=128),
    )
    pre = PreprocessingConfig(orientation="LPS", spacing=[2.0, 2.0, 2.0])
    pre.intensity.low, pre.intensity.high = 0.0, 1.0
    return save_model_pack(
        tmp_path_factory.mktemp("pack3d") / "pack",
        MorseModel(cfg).eval(),
        model_id="tiny-3d",
        version="0.0.1",
        preprocessing=pre,
        labels=[LabelInfo(1, "a", (1.0, 0.0, 0.0)), LabelInfo(2, "b", (0.0, 1.0, 0.0))],
        inference={"roi_size": [32, 32, 32], "sw_overlap": 0.25},
    )


def write_dicom_series(folder, image: np.ndarray, z_positions, spacing_xy=(0.7, 0.7), series_uid="1.2.3.4.5"):
    """Write ``image (K, J, I)`` int16 as one DICOM file per slice, slice k at z = ``z_positions[k]`` mm."""
    import SimpleITK as sitk  # noqa: N813

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    saved = locale.setlocale(locale.LC_ALL)  # GDCM switches the process to the "C" locale
    try:
        for k, z in enumerate(z_positions):
            sl = sitk.GetImageFromArray(image[k].astype(np.int16))
            sl.SetSpacing(spacing_xy)
            tags = {
                "0008|0060": "CT",
                "0020|000d": "1.2.3.4",
                "0020|000e": series_uid,
                "0020|0032": f"0\\0\\{z}",
                "0020|0037": "1\\0\\0\\0\\1\\0",
                "0020|0013": str(k + 1),
                "0028|0030": f"{spacing_xy[1]}\\{spacing_xy[0]}",
            }
            for key, value in tags.items():
                sl.SetMetaData(key, value)
            writer.SetFileName(str(folder / f"s{k:03d}.dcm"))
            writer.Execute(sl)
    finally:
        locale.setlocale(locale.LC_ALL, saved)
    return folder


@pytest.fixture
def dicom_series():
    return write_dicom_series
