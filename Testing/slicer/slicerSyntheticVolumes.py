"""Synthetic CT volumes with known geometry and a bright ellipsoid at a known physical place (RAS mm)."""

from __future__ import annotations

import numpy as np

BACKGROUND_HU = -120.0
OBJECT_HU = 160.0


def rotationZ(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def obliqueLpsMatrix(spacing=(0.8, 1.1, 2.5), origin=(40.0, 25.0, -30.0), degrees: float = 12.0) -> np.ndarray:
    """IJK→RAS of an LPS-stored volume (i → left, j → posterior, k → superior, as DICOM/ITK files are), rotated
    ``degrees`` about the S axis (oblique), with anisotropic spacing (mm, i j k)."""
    lpsDirections = np.diag([-1.0, -1.0, 1.0])  # columns: i → L (RAS -x), j → P (RAS -y), k → S
    m = np.eye(4)
    m[:3, :3] = rotationZ(degrees) @ lpsDirections @ np.diag(spacing)
    m[:3, 3] = origin
    return m


def voxelCentresRas(shape, ijkToRas: np.ndarray) -> np.ndarray:
    """(K, J, I, 3) RAS position of every voxel centre."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(np.float64)
    return (ijk1 @ ijkToRas.T)[..., :3]


def ellipsoidMask(shape, ijkToRas, centreRas, semiAxesMm) -> np.ndarray:
    """(K, J, I) bool: voxel centres inside the axis-aligned (RAS) ellipsoid."""
    p = voxelCentresRas(shape, ijkToRas) - np.asarray(centreRas)
    return (((p / np.asarray(semiAxesMm)) ** 2).sum(axis=-1)) <= 1.0


def brightObjectVolume(shape=(24, 56, 64), ijkToRas=None, centreIjk=(38, 26, 12), semiAxesMm=(11.0, 7.0, 14.0), seed=0):
    """``(volume int16 (K, J, I) in HU, ijkToRas, mask, centreRas)``: noisy dark background, a bright ellipsoid
    centred on voxel ``centreIjk`` (i, j, k), semi-axes in mm along R, A, S."""
    ijkToRas = obliqueLpsMatrix() if ijkToRas is None else ijkToRas
    centreRas = (ijkToRas @ np.array([*centreIjk, 1.0]))[:3]
    mask = ellipsoidMask(shape, ijkToRas, centreRas, semiAxesMm)
    rng = np.random.default_rng(seed)
    volume = rng.normal(BACKGROUND_HU, 15.0, shape)
    volume[mask] = OBJECT_HU + rng.normal(0.0, 15.0, int(mask.sum()))
    return np.round(volume).astype(np.int16), ijkToRas, mask, centreRas


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))
