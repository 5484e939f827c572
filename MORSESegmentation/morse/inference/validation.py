"""Checks on an input volume before it reaches the network; each failure says what is wrong and what to do.

Three layers, cheapest first:

- :func:`validate_volume` — the array and its IJK→RAS matrix alone: dimensionality, components, voxel type,
  NaN/Inf, constant images, the matrix (finite, non-degenerate voxel axes).
- :func:`check_intensities` — the values against the model's intensity normalisation (a CT model fed an MR, or a CT
  stored without its rescale intercept).
- :func:`check_model_grid` — the grid the model will see: resampling factors (warn when extreme, refuse when
  absurd), the size of the model grid (never allocate absurd grids), the minimum size of a 3D model's input.

Policy on small volumes: a 2D model segments any non-empty volume, a single slice included (each slice is segmented
on its own). A 3D model needs at least :data:`MIN_3D_MODEL_VOXELS` voxels of its own grid along every axis (with the
default 2 mm grid: 32 mm), because its encoder divides the input by 16 per axis; anything thinner is mostly padding
and its result meaningless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

# Resampling factor (input voxel size / model voxel size, or its inverse) above which the user is warned, and above
# which the volume is refused: at 50× a 512-pixel slice covers 10 model pixels (or one model pixel becomes a 50-voxel
# block) — a wrong header (metres, microns) rather than a scan.
WARN_RESAMPLING_FACTOR = 4.0
MAX_RESAMPLING_FACTOR = 50.0
# The model grid is allocated in full (3D) or per slice (2D): bound it whatever the header claims.
MAX_MODEL_AXIS = 4096  # voxels along any axis of the model grid
MAX_MODEL_VOXELS_3D = 1 << 30  # voxels of a 3D model grid (4 GiB as float32 for the resampled input alone)
MIN_3D_MODEL_VOXELS = 16  # voxels of a 3D model's grid along every axis (its encoder down-samples by 16)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _shape_text(shape) -> str:
    return "×".join(str(int(s)) for s in shape)


def validate_volume(volume: np.ndarray, ijk_to_ras: np.ndarray, name: str = "input") -> tuple[np.ndarray, list[str]]:
    """Return a (K, J, I) real-valued volume that is safe to segment and the warnings to show the user.

    - 4D arrays with one component (``(K, J, I, 1)`` or ``(1, K, J, I)``) are squeezed; more components (RGB,
      vector, time series) are refused with advice.
    - Integer and floating voxel types of any width are accepted (preprocessing casts to float32); ``bool`` (a mask,
      not a scan), complex and non-numeric types are refused.
    - NaN/Inf voxels, and float64 values beyond the float32 range, are replaced by the lowest finite value
      (reported); a volume with no finite voxel is refused.
    - A constant volume is accepted with a warning (nothing to segment; expect an empty result).

    Raises:
        InputError: with what was wrong and what to do.
    """
    messages: list[str] = []
    volume = np.asarray(volume)
    if volume.ndim == 4 and 1 in (volume.shape[0], volume.shape[-1]):
        volume = volume[..., 0] if volume.shape[-1] == 1 else volume[0]
    if volume.ndim == 4:
        raise InputError(
            f"{name}: {volume.shape[-1]} values per voxel (array of shape {volume.shape}: RGB colour, a vector field, "
            f"several echoes or time points). MORSE segments one scalar 3D volume: extract a single component first "
            f"(in 3D Slicer: Vector to Scalar Volume; for a time series, one frame of the sequence)."
        )
    if volume.ndim == 2:
        raise InputError(
            f"{name}: a 2D image of shape {volume.shape}; MORSE segments volumes. Give the slice as a one-slice 3D "
            f"volume (shape (1, {volume.shape[0]}, {volume.shape[1]})); 2D models segment single slices."
        )
    if volume.ndim != 3:
        raise InputError(
            f"{name}: a {volume.ndim}D array of shape {volume.shape}; MORSE segments single 3D volumes. "
            f"Split 4D/multi-component images into 3D volumes first."
        )
    if min(volume.shape) < 1:
        raise InputError(f"{name}: empty volume (shape {volume.shape}): the image has no voxels")
    if volume.dtype == bool:
        raise InputError(
            f"{name}: voxel type bool: this is a mask or label map, not a scan; give the image it was drawn on"
        )
    if not (np.issubdtype(volume.dtype, np.integer) or np.issubdtype(volume.dtype, np.floating)):
        raise InputError(
            f"{name}: voxel type {volume.dtype} is not a real number type; convert the image to a scalar "
            f"(integer or float) volume"
        )
    _check_matrix(ijk_to_ras, name)
    if np.issubdtype(volume.dtype, np.floating):
        finite = np.isfinite(volume)
        if volume.dtype.itemsize > 4:  # float64/longdouble values that float32 preprocessing would turn into inf
            finite &= volume <= _FLOAT32_MAX  # two comparisons: 1-byte temporaries, not an 8-byte np.abs copy
            finite &= volume >= -_FLOAT32_MAX
        if not finite.all():
            count = int(volume.size - np.count_nonzero(finite))
            if not finite.any():
                raise InputError(
                    f"{name}: every voxel is NaN or infinite; the image holds no data (check the export that made it)"
                )
            fill = float(volume[finite].min())
            volume = np.where(finite, volume, volume.dtype.type(fill))
            messages.append(
                f"{count} NaN/infinite voxel{'s were' if count != 1 else ' was'} treated as {fill:g} (the lowest "
                f"finite value; {100 * count / volume.size:.2g} % of the volume)"
            )
        del finite
    lo, hi = volume.min(), volume.max()
    if lo == hi:
        messages.append(
            f"every voxel has the same value ({float(lo):g}): there is nothing to segment, expect an empty result"
        )
    for msg in messages:
        log.warning("%s: %s", name, msg)
    return volume, messages


def _check_matrix(ijk_to_ras, name: str) -> None:
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise InputError(f"{name}: invalid IJK→RAS matrix (must be a finite 4×4); check the image header")
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(spacing <= 0):
        axes = [a for a, s in zip("ijk", spacing) if s <= 0]
        raise InputError(
            f"{name}: voxel size is zero along the {'/'.join(axes)} axis (invalid IJK→RAS matrix); check the "
            f"spacing in the image header"
        )
    # |det| of the unit-length axes: 1 for orthogonal axes, 0 when two axes are parallel (no volume)
    if abs(np.linalg.det(m[:3, :3] / spacing)) < 1e-3:
        raise InputError(
            f"{name}: invalid IJK→RAS matrix (its voxel axes are parallel, so it has no inverse); check the "
            f"direction cosines in the image header"
        )


def check_intensities(volume: np.ndarray, intensity, name: str = "input") -> list[str]:
    """Warnings when the values cannot be what the model was trained on.

    ``intensity``: the pack's :class:`morse.config.IntensityConfig`. For a CT window (``window`` with a negative
    lower bound, i.e. Hounsfield units): every voxel below or above the window (the network would see a constant
    image), or no negative value at all (air is −1000 HU, fat −100 HU: an MR, or a CT stored without its rescale
    intercept).
    """
    if intensity.mode != "window":
        return []
    lo, hi = float(volume.min()), float(volume.max())
    low, high = float(intensity.low), float(intensity.high)
    messages = []
    if lo == hi:
        pass  # already reported as a constant image
    elif hi <= low or lo >= high:
        side = "below" if hi <= low else "above"
        messages.append(
            f"every voxel ({lo:g}..{hi:g}) is {side} the model's intensity window ({low:g}..{high:g}), so the network "
            f"sees a blank image; is this the kind of image the model was trained on (e.g. a CT in Hounsfield units)?"
        )
    elif low < 0 and lo >= 0:
        messages.append(
            f"the image has no negative values ({lo:g}..{hi:g}) but the model expects CT in Hounsfield units (air "
            f"-1000, fat -100). If this is a CT stored without its rescale intercept, subtract 1024 (or re-export it "
            f"with the DICOM rescale applied); if it is not a CT, use a model made for it"
        )
    for msg in messages:
        log.warning("%s: %s", name, msg)
    return messages


@dataclass
class GridCheck:
    """The model grid of a volume and the warnings about its resampling.

    spacing: mm per reoriented numpy axis (z, y, x); model_shape: (D', H', W') (2D models: D' = D);
    factors: input voxel size / model voxel size per axis (> 1: the model grid is finer); messages: warnings.
    """

    spacing: tuple[float, float, float]
    model_shape: tuple[int, int, int]
    factors: tuple[float, float, float]
    messages: list[str]


def check_model_grid(
    shape: tuple[int, int, int], ijk_to_ras: np.ndarray, preprocessing, spatial_dims: int, name: str = "input"
) -> GridCheck:
    """Check the grid the model will see for a volume of ``shape`` (K, J, I) before anything is allocated.

    ``preprocessing``: the pack's :class:`morse.config.PreprocessingConfig` (orientation, spacing x y z in mm).
    Warns when a resampling factor exceeds :data:`WARN_RESAMPLING_FACTOR`; refuses above
    :data:`MAX_RESAMPLING_FACTOR`, model grids larger than :data:`MAX_MODEL_AXIS` per axis (or
    :data:`MAX_MODEL_VOXELS_3D` in all, 3D), and 3D model grids thinner than :data:`MIN_3D_MODEL_VOXELS`.
    """
    from ..geometry import AxisReorder, spacing_ijk
    from .preprocess import model_grid_shape

    reorder = AxisReorder.to_orientation(ijk_to_ras, shape, preprocessing.orientation)
    reoriented_shape = tuple(int(shape[t]) for t in reorder.transpose)
    sp = spacing_ijk(reorder.reoriented_ijk_to_ras(ijk_to_ras))
    spacing = (float(sp[2]), float(sp[1]), float(sp[0]))
    target = [float(t) for t in preprocessing.spacing]
    target_zyx = (target[2], target[1], target[0])
    model_shape = model_grid_shape(reoriented_shape, spacing, target, spatial_dims)
    factors = tuple(s / t for s, t in zip(spacing, target_zyx))
    axes = ("slice (z)", "row (y)", "column (x)")
    used = range(3) if spatial_dims == 3 else range(1, 3)
    messages: list[str] = []
    for a in used:
        ratio = max(factors[a], 1 / factors[a])
        if ratio <= WARN_RESAMPLING_FACTOR:
            continue
        change = "finer" if factors[a] > 1 else "coarser"
        detail = (
            f"voxel size {spacing[a]:.4g} mm along the {axes[a]} axis is resampled to the model's {target_zyx[a]:g} mm "
            f"({ratio:.3g}× {change})"
        )
        if ratio > MAX_RESAMPLING_FACTOR:
            raise InputError(
                f"{name}: {detail}; above {MAX_RESAMPLING_FACTOR:g}× the header is almost certainly wrong (spacing in "
                f"metres or microns?). Check the voxel size in the image header (3D Slicer: Volumes › Volume "
                f"Information) and fix it before segmenting."
            )
        messages.append(f"{detail}: segmentation quality may suffer")
    if max(model_shape) > MAX_MODEL_AXIS or (spatial_dims == 3 and int(np.prod(model_shape)) > MAX_MODEL_VOXELS_3D):
        raise InputError(
            f"{name}: the model would see a grid of {_shape_text(model_shape)} voxels (z, y, x) at its "
            f"{'×'.join(f'{t:g}' for t in target_zyx)} mm voxel size, larger than MORSE allows "
            f"({MAX_MODEL_AXIS} per axis{', 2^30 in all' if spatial_dims == 3 else ''}). Crop the volume to the "
            f"region of interest, or check the voxel size in the image header."
        )
    if spatial_dims == 3:
        thin = [a for a in range(3) if model_shape[a] < MIN_3D_MODEL_VOXELS]
        if thin:
            a = thin[0]
            raise InputError(
                f"{name}: too small for a 3D model: it covers {reoriented_shape[a]} voxels × {spacing[a]:.3g} mm = "
                f"{reoriented_shape[a] * spacing[a]:.3g} mm along the {axes[a]} axis, and a 3D model needs at least "
                f"{MIN_3D_MODEL_VOXELS} voxels of its {target_zyx[a]:g} mm grid "
                f"({MIN_3D_MODEL_VOXELS * target_zyx[a]:g} mm) along every axis. Use a 2D model (it segments single "
                f"slices) or a scan that covers more."
            )
    for msg in messages:
        log.warning("%s: %s", name, msg)
    return GridCheck(
        spacing=spacing, model_shape=tuple(int(s) for s in model_shape), factors=factors, messages=messages
    )
