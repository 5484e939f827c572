"""Connected components of organ labels and of uncertain voxels, with their confidence.

Component confidence is the mean, over the component's voxels, of the probability of its label (mean max-probability
for an unmodified argmax) and its mean normalised entropy. Uncertain *regions* are the 26-connected components of
the voxels whose uncertainty reaches a threshold, after an in-plane opening that removes the one- or two-voxel rim
every predicted boundary carries: what remains is uncertainty thick enough to be a structure in doubt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FULL = np.ones((3, 3, 3), dtype=bool)


@dataclass
class Component:
    """One connected component on a ``(D, H, W)`` grid: its label, voxel count, bounding box (slices) and the
    indices of its voxels within that box (a boolean mask of the box)."""

    value: int
    voxels: int
    box: tuple[slice, slice, slice]
    mask: np.ndarray

    def mean(self, volume: np.ndarray) -> float:
        return float(volume[self.box][self.mask].mean(dtype=np.float64))

    def centroid(self) -> np.ndarray:
        """Mean voxel index ``(z, y, x)`` (float)."""
        idx = np.nonzero(self.mask)
        return np.array([float(i.mean()) + s.start for i, s in zip(idx, self.box)])


def label_components(labels: np.ndarray, values=None, min_voxels: int = 1) -> list[Component]:
    """26-connected components of each label value in ``values`` (default: every value > 0)."""
    from scipy import ndimage

    boxes = ndimage.find_objects(labels)
    out = []
    for v, bb in enumerate(boxes, start=1):
        if bb is None or (values is not None and v not in values):
            continue
        comp, _count = ndimage.label(labels[bb] == v, structure=FULL)
        for c, sub in enumerate(ndimage.find_objects(comp), start=1):
            if sub is None:
                continue
            mask = comp[sub] == c
            n = int(mask.sum())
            if n >= min_voxels:
                box = tuple(slice(o.start + s.start, o.start + s.stop) for o, s in zip(bb, sub))
                out.append(Component(value=v, voxels=n, box=box, mask=mask))
    return out


def disc(radius_voxels: tuple[float, float]) -> np.ndarray:
    """In-plane elliptical structuring element ``(1, h, w)`` with the given radii (voxels, y and x)."""
    ry, rx = (max(0.0, float(r)) for r in radius_voxels)
    ny, nx = int(np.floor(ry)), int(np.floor(rx))
    y, x = np.ogrid[-ny : ny + 1, -nx : nx + 1]
    inside = (y / max(ry, 1e-6)) ** 2 + (x / max(rx, 1e-6)) ** 2 <= 1.0 + 1e-9
    return inside[None]


def _opening_in_box(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, structure)``, computed on the bounding box of ``mask`` only: an opening never
    adds a voxel, and the erosion's border (0) is what lies outside the box, so the result is the same. The
    uncertain voxels are a small share of a scan, so this is the cheaper way on a whole CT."""
    from scipy import ndimage

    box = ndimage.find_objects(mask.view(np.uint8))  # a view of the bools: no volume-sized copy
    out = np.zeros_like(mask)
    if box and box[0] is not None:
        out[box[0]] = ndimage.binary_opening(mask[box[0]], structure=structure)
    return out


def uncertain_regions(
    uncertainty: np.ndarray, threshold: float, spacing_zyx, opening_mm: float, min_voxels: int
) -> list[Component]:
    """Components of ``uncertainty ≥ threshold`` (``(D, H, W)``, axial slices first) after an in-plane opening of
    radius ``opening_mm`` (0: none), at least ``min_voxels`` voxels each."""
    mask = uncertainty >= threshold
    radius = (opening_mm / float(spacing_zyx[1]), opening_mm / float(spacing_zyx[2]))
    if opening_mm > 0 and min(radius) >= 1.0:
        mask = _opening_in_box(mask, disc(radius))
    return label_components(mask.astype(np.uint8), min_voxels=min_voxels)
