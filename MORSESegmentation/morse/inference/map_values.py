"""How MORSE stores a map in [0, 1] (gate weights, uncertainty) in one byte per voxel: ``round(value · 255)``.

One function for every place that stores such a map: the pipeline's output arrays, the ``.nii.gz`` files of
``morse segment`` (uint8 with ``scl_slope`` 1/255, so readers get 0..1 back) and the 3D Slicer volume nodes. numpy
only (the Slicer module imports it without torch); a torch CPU tensor is quantised through ``tensor.numpy()``.
"""

from __future__ import annotations

import numpy as np

MAP_LEVELS = 255
MAP_SCALE = 1.0 / MAP_LEVELS  # stored value × MAP_SCALE = the map's value in 0..1


def quantize_unit(values, out: np.ndarray | None = None, in_place: bool = False) -> np.ndarray:
    """``values`` (any shape, real) as uint8 ``round(clip(value, 0, 1) · 255)``, ties to even (float32 arithmetic).

    Args:
        values: the map, values in [0, 1] (others are clipped).
        out: a uint8 array of the same shape to write into (e.g. a slab of a preallocated output); None: a new one.
        in_place: ``values`` is a writable float32 array that may be overwritten (saves its float32 copy; the
            pipeline passes its scratch tensors).
    """
    v = np.asarray(values)
    if in_place and v.dtype == np.float32 and v.flags.writeable:
        np.clip(v, 0.0, 1.0, out=v)
    else:
        v = np.clip(v, 0.0, 1.0).astype(np.float32, copy=False)
    v *= np.float32(MAP_LEVELS)
    if out is None:
        out = np.empty(v.shape, np.uint8)
    np.rint(v, out=out, casting="unsafe")
    return out


def quantize_unit_slabs(values: np.ndarray, slab_bytes: int = 64 << 20) -> np.ndarray:
    """:func:`quantize_unit` of a large float map a few slices (first axis) at a time: the only new volume-sized
    array is the uint8 result. uint8 input is returned as it is."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    out = np.empty(values.shape, np.uint8)
    if values.ndim == 0:
        return quantize_unit(values, out=out)
    per_row = max(1, values[:1].size * 4)
    step = max(1, slab_bytes // per_row)
    for start in range(0, values.shape[0], step):
        quantize_unit(values[start : start + step], out=out[start : start + step])
    return out
