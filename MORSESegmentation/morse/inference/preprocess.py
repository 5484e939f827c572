"""Preprocessing owned by the model pack, and its exact inverse.

Forward: reorient the KJI array to the model's orientation by axis permutation/flips (exact, no resampling), normalise
intensities, resize to the model's voxel size (2D models: in-plane only, slices stay slices), pad to a multiple of the
network's stride. Inverse: crop the padding, resize logits/maps back to the reoriented input grid (bi/trilinear;
labels by argmax of resized logits, or nearest for 3D label maps), undo the reorientation. The output therefore has
exactly the input's voxel grid and IJK→RAS matrix, whatever its direction matrix (oblique, LPS, left-handed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ..config import IntensityConfig, PreprocessingConfig
from ..geometry import AxisReorder, spacing_ijk

# Slices normalised per MONAI call: its transform makes a few full-size temporaries, so a whole CT at once would
# hold several float32 copies of the scan; slabs keep the extra memory to a small fraction of the output.
_NORMALISE_SLAB = 16


def normalize_intensity(array: np.ndarray, cfg: IntensityConfig) -> np.ndarray:
    """float32 copy of ``array`` normalised as the model was trained.

    ``window``: clip to [low, high] and scale to [0, 1], by MONAI ``ScaleIntensityRange`` applied slab by slab along
    the first axis. ``zscore``: (x − mean) / std over the nonzero voxels (all voxels when 16 or fewer are nonzero).
    """
    if cfg.mode == "window":
        from monai.transforms import ScaleIntensityRange

        scale = ScaleIntensityRange(
            a_min=float(cfg.low), a_max=float(cfg.high), b_min=0.0, b_max=1.0, clip=True, dtype=np.float32
        )
        source = np.asarray(array)
        out = np.empty(source.shape, dtype=np.float32)
        slabs = out.reshape(1, *out.shape) if out.ndim < 3 else out
        inputs = source.reshape(1, *source.shape) if source.ndim < 3 else source
        for k in range(0, slabs.shape[0], _NORMALISE_SLAB):
            chunk = torch.from_numpy(np.asarray(inputs[k : k + _NORMALISE_SLAB], dtype=np.float32))
            slabs[k : k + _NORMALISE_SLAB] = np.asarray(scale(chunk))
        return out
    x = np.asarray(array, dtype=np.float32)
    foreground = x[x != 0]
    values = foreground if foreground.size > 16 else x.ravel()
    mean, std = float(values.mean()), float(values.std())
    return (x - mean) / (std if std > 1e-6 else 1.0)


@dataclass
class PreparedVolume:
    """A volume ready for the network, with what is needed to map results back.

    image: (D, H, W) float32 normalised, on the *reoriented input grid* (not yet resized).
    spacing: mm per reoriented numpy axis (z, y, x).
    model_shape: (D', H', W') grid at the model's voxel size (2D: D' = D).
    """

    reorder: AxisReorder
    image: np.ndarray
    spacing: tuple[float, float, float]
    model_shape: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape)


def model_grid_shape(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], target_xyz: list[float], spatial_dims: int
) -> tuple[int, int, int]:
    """Grid size (D', H', W') covering the same extent at the target voxel size (x, y, z mm)."""
    target_zyx = (target_xyz[2], target_xyz[1], target_xyz[0])
    out = []
    for axis, (n, s, t) in enumerate(zip(shape, spacing, target_zyx)):
        if axis == 0 and spatial_dims == 2:
            out.append(n)
        else:
            out.append(max(1, round(n * s / t)))
    return tuple(out)


def prepare(volume: np.ndarray, ijk_to_ras: np.ndarray, cfg: PreprocessingConfig, spatial_dims: int) -> PreparedVolume:
    """Reorient and normalise ``volume (K, J, I)``; resizing happens per batch (:func:`resize`)."""
    reorder = AxisReorder.to_orientation(ijk_to_ras, volume.shape, cfg.orientation)
    image = normalize_intensity(np.ascontiguousarray(reorder.apply(volume)), cfg.intensity)
    sp_ijk = spacing_ijk(reorder.reoriented_ijk_to_ras(ijk_to_ras))
    spacing = (float(sp_ijk[2]), float(sp_ijk[1]), float(sp_ijk[0]))
    return PreparedVolume(
        reorder=reorder,
        image=image,
        spacing=spacing,
        model_shape=model_grid_shape(image.shape, spacing, cfg.spacing, spatial_dims),
    )


def resize(x: torch.Tensor, size: tuple[int, ...], mode: str = "linear") -> torch.Tensor:
    """Resize ``x (B, C, *S)`` to ``size`` with align_corners=False; ``linear`` antialiases 2D down-sampling;
    ``nearest`` uses cell centres (``nearest-exact``), the convention of the point coordinates."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    if x.dim() == 4:
        shrinking = any(s < t for s, t in zip(size, x.shape[2:]))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 0) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad the spatial axes of ``x (B, C, *S)`` at the end (edge values) to a multiple of ``multiple`` (≥ minimum).

    Returns the padded tensor and the original spatial size (for :func:`crop`). Edge replication keeps the padding
    from looking like an air/background border to the network.
    """
    size = tuple(x.shape[2:])
    target = [max(minimum, -(-s // multiple) * multiple) for s in size]
    pads = []
    for s, t in reversed(list(zip(size, target))):
        pads += [0, t - s]
    if any(pads):
        mode = "replicate" if all(s > 1 for s in size) else "constant"
        x = F.pad(x, pads, mode=mode)
    return x, size


def crop(x: torch.Tensor, size: tuple[int, ...], scale: int = 1) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on ``x (B, C, *S·scale)``: keep the first ``size·scale`` cells per axis."""
    slices = tuple(slice(0, s * scale) for s in size)
    return x[(Ellipsis, *slices)]
