"""Checks on an input volume before it reaches the network; each failure says what is wrong and what to do."""

from __future__ import annotations

import logging

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)


def validate_volume(volume: np.ndarray, ijk_to_ras: np.ndarray, name: str = "input") -> tuple[np.ndarray, list[str]]:
    """Return a (K, J, I) real-valued volume that is safe to segment and the warnings to show the user.

    Single-component 4D arrays are squeezed; NaN/Inf voxels are replaced by the lowest finite value (reported).
    """
    messages: list[str] = []
    volume = np.asarray(volume)
    if volume.ndim == 4 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3:
        raise InputError(
            f"{name}: a {volume.ndim}D array of shape {volume.shape}; MORSE segments single 3D volumes. "
            f"Split 4D/multi-component images into 3D volumes first."
        )
    if min(volume.shape) < 1:
        raise InputError(f"{name}: empty volume (shape {volume.shape})")
    if volume.dtype == bool or not (
        np.issubdtype(volume.dtype, np.integer) or np.issubdtype(volume.dtype, np.floating)
    ):
        raise InputError(f"{name}: voxel type {volume.dtype} is not a real number type; convert the image to a scalar")
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise InputError(f"{name}: invalid IJK→RAS matrix (must be a finite, invertible 4×4); check the image header")
    if np.issubdtype(volume.dtype, np.floating):
        finite = np.isfinite(volume)
        if not finite.all():
            count = int((~finite).sum())
            if not finite.any():
                raise InputError(f"{name}: every voxel is NaN or infinite; the image holds no data")
            fill = float(volume[finite].min())
            volume = np.where(finite, volume, fill)
            messages.append(f"{count} NaN/infinite voxels were treated as {fill:g} (the lowest finite value)")
    for msg in messages:
        log.warning("%s: %s", name, msg)
    return volume, messages
