"""Voxel geometry: IJK→RAS matrices, SimpleITK (LPS) conversion, and exact reorientation by axis permutation/flip.

Conventions used throughout MORSE:

- Arrays are indexed ``[k, j, i]`` (KJI, numpy/Slicer ``arrayFromVolume`` order): i is the fastest axis.
- ``ijk_to_ras`` is the 4×4 matrix of 3D Slicer: homogeneous column ``(i, j, k, 1)`` → RAS millimetres.
- SimpleITK/ITK store LPS geometry (origin, spacing, direction); RAS = diag(−1, −1, 1)·LPS.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_AXIS_LETTERS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}  # in LPS space


def ijk_to_ras_from_lps(origin, spacing, direction) -> np.ndarray:
    """IJK→RAS from ITK geometry: origin (3,) mm LPS, spacing (3,) mm in i, j, k order, direction 3×3 (or 9) LPS."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = d @ np.diag(np.asarray(spacing, dtype=np.float64))
    m[:3, 3] = np.asarray(origin, dtype=np.float64)
    return LPS_TO_RAS @ m


def lps_geometry(ijk_to_ras: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(origin, spacing, direction as 9 row-major values), LPS, as SimpleITK wants them."""
    m = LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=np.float64)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise ValueError(f"IJK→RAS matrix has a zero or invalid axis (spacing {spacing})")
    direction = m[:3, :3] / spacing
    return tuple(m[:3, 3]), tuple(spacing), tuple(direction.ravel())


def spacing_ijk(ijk_to_ras: np.ndarray) -> np.ndarray:
    """Voxel size in mm along i, j, k (column norms of the matrix)."""
    return np.linalg.norm(np.asarray(ijk_to_ras, dtype=np.float64)[:3, :3], axis=0)


def orientation_code(ijk_to_ras: np.ndarray) -> str:
    """Closest-axis ITK orientation code of the i, j, k axes, e.g. ``"LPS"`` (i→left, j→posterior, k→superior)."""
    d = (LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=np.float64))[:3, :3]
    perm = _closest_permutation(d)
    letters = {(0, 1): "L", (0, -1): "R", (1, 1): "P", (1, -1): "A", (2, 1): "S", (2, -1): "I"}
    return "".join(letters[(perm[a], 1 if d[perm[a], a] >= 0 else -1)] for a in range(3))


def _closest_permutation(d_lps: np.ndarray) -> tuple[int, int, int]:
    """For each array axis a (i, j, k), the LPS world axis it is closest to (a bijection, maximising |cosine|)."""
    unit = d_lps / np.linalg.norm(d_lps, axis=0)
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(unit[p[a], a]) for a in range(3)))
    return tuple(best)


@dataclass(frozen=True)
class AxisReorder:
    """Exact reorientation of a KJI array by transposition and flips (no resampling).

    ``transpose``: numpy axis order applied to the original KJI array; ``flip``: axes of the transposed array to
    reverse. The reoriented array has the same voxels, so :meth:`invert` restores the original bit for bit; its
    geometry is :meth:`reoriented_ijk_to_ras`.
    """

    transpose: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    shape: tuple[int, int, int]  # original KJI shape

    @classmethod
    def to_orientation(cls, ijk_to_ras: np.ndarray, shape: tuple[int, ...], code: str = "LPS") -> AxisReorder:
        """The reorder that makes i, j, k point (closest-axis) along ``code`` (ITK letters, e.g. ``LPS``, ``RAS``)."""
        code = code.upper()
        if len(code) != 3 or any(c not in _AXIS_LETTERS for c in code) or len({_AXIS_LETTERS[c][0] for c in code}) != 3:
            raise ValueError(f"invalid orientation code {code!r}: three letters from L/R, P/A, S/I, one per axis")
        d = (LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=np.float64))[:3, :3]
        world_of_axis = _closest_permutation(d)  # ijk axis -> LPS world axis
        sign_of_axis = [1 if d[world_of_axis[a], a] >= 0 else -1 for a in range(3)]
        transpose_ijk, flips_ijk = [], []
        for c in code:  # target i, then j, then k
            world, want_sign = _AXIS_LETTERS[c]
            src = world_of_axis.index(world)
            transpose_ijk.append(src)
            flips_ijk.append(sign_of_axis[src] != want_sign)
        # KJI numpy axis of ijk axis a is 2 - a; target numpy axis t corresponds to target ijk axis 2 - t
        transpose = tuple(2 - transpose_ijk[2 - t] for t in range(3))
        flip = tuple(flips_ijk[2 - t] for t in range(3))
        return cls(transpose=transpose, flip=flip, shape=tuple(int(s) for s in shape[-3:]))

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Reorient the last three (KJI) axes of ``array``; leading axes (channels) are kept. Returns a view."""
        lead = array.ndim - 3
        out = np.transpose(array, tuple(range(lead)) + tuple(lead + t for t in self.transpose))
        for axis, f in enumerate(self.flip):
            if f:
                out = np.flip(out, axis=lead + axis)
        return out

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`apply` on the last three axes (a view)."""
        lead = array.ndim - 3
        for axis, f in enumerate(self.flip):
            if f:
                array = np.flip(array, axis=lead + axis)
        inverse = np.argsort(self.transpose)
        return np.transpose(array, tuple(range(lead)) + tuple(lead + int(t) for t in inverse))

    def reoriented_ijk_to_ras(self, ijk_to_ras: np.ndarray) -> np.ndarray:
        """IJK→RAS of the reoriented array (same physical positions for the same voxels)."""
        # Map a reoriented index (i', j', k') to the original (i, j, k), then apply the original matrix.
        p = np.zeros((4, 4))
        p[3, 3] = 1
        for t in range(3):  # reoriented numpy axis t <- original numpy axis transpose[t]
            src_np = self.transpose[t]
            src_ijk, dst_ijk = 2 - src_np, 2 - t
            size = self.shape[src_np]
            if self.flip[t]:
                p[src_ijk, dst_ijk] = -1
                p[src_ijk, 3] = size - 1
            else:
                p[src_ijk, dst_ijk] = 1
        return np.asarray(ijk_to_ras, dtype=np.float64) @ p
