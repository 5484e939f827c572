"""Training volumes on the model grid: the same reorientation, normalisation and resizing as inference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import PreprocessingConfig
from ..inference.preprocess import prepare, resize


@dataclass
class TrainingVolume:
    """One case on the model grid: ``image (D, H, W)`` float32 normalised, ``label (D, H, W)`` uint8."""

    name: str
    image: np.ndarray
    label: np.ndarray


def to_model_grid(
    name: str, image: np.ndarray, label: np.ndarray, ijk_to_ras: np.ndarray, cfg: PreprocessingConfig, spatial_dims: int
) -> TrainingVolume:
    """Reorient/normalise ``image (K, J, I)`` and resize it (linear) and ``label`` (nearest) to the model spacing."""
    if image.shape != label.shape:
        raise ValueError(f"{name}: image {image.shape} and label {label.shape} differ in shape")
    prep = prepare(image, ijk_to_ras, cfg, spatial_dims)
    lab = np.ascontiguousarray(prep.reorder.apply(label))
    img_t = torch.from_numpy(prep.image)
    lab_t = torch.from_numpy(lab.astype(np.float32))
    if spatial_dims == 2:  # in-plane only; slices are the batch axis
        size = prep.model_shape[1:]
        img_t = resize(img_t[:, None], size)[:, 0]
        lab_t = resize(lab_t[:, None], size, mode="nearest")[:, 0]
    else:
        img_t = resize(img_t[None, None], prep.model_shape)[0, 0]
        lab_t = resize(lab_t[None, None], prep.model_shape, mode="nearest")[0, 0]
    return TrainingVolume(name, img_t.numpy().astype(np.float32), lab_t.numpy().round().astype(np.uint8))
