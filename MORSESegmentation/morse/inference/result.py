"""What one whole-volume inference returns (every array on the input's own voxel grid, KJI order)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..labels import LabelInfo

_SLAB_VOXELS = 1 << 24  # voxels per slab of the whole-volume counts below (their scratch stays a few MB)


def _slabs(shape: tuple[int, ...]):
    per_row = max(1, int(np.prod(shape[1:])))
    step = max(1, _SLAB_VOXELS // per_row)
    for start in range(0, shape[0], step):
        yield slice(start, start + step)


def label_counts(labels: np.ndarray) -> np.ndarray:
    """(256,) int64 voxels per label value of a uint8 map, a slab at a time (``np.bincount`` of the whole volume
    would first copy it to int64: 8 bytes per voxel)."""
    counts = np.zeros(256, np.int64)
    if labels.ndim == 0 or labels.size == 0:
        return counts
    for rows in _slabs(labels.shape):
        counts += np.bincount(labels[rows].ravel(), minlength=256)[:256]
    return counts


def count_differences(a: np.ndarray, b: np.ndarray) -> int:
    """Voxels where ``a`` and ``b`` (same shape) differ, a slab at a time (no volume-sized mask)."""
    if a is b:
        return 0
    return int(sum(np.count_nonzero(a[rows] != b[rows]) for rows in _slabs(a.shape)))


@dataclass
class SegmentationResult:
    """Outputs of :func:`morse.inference.pipeline.segment_volume`.

    labels:          (K, J, I) uint8 refined labels (= coarse when refinement is off or the model has no head).
    coarse_labels:   (K, J, I) uint8 labels of the backbone's own head.
    gating:          (N, K, J, I) gate weight of each expert in [0, 1] (sums to 1 over N), or None: uint8
                     ``round(weight·255)`` (:func:`morse.inference.map_values.quantize_unit`; the default), or
                     float32 when :func:`segment_volume` is asked for ``maps_uint8=False``.
    dominant_expert: (K, J, I) uint8, 1 + index of the expert with the largest gate weight (as stored in
                     ``gating``; the first expert wins ties), or None.
    uncertainty:     (K, J, I) in [0, 1]: 1 − (p_max − p_second) of the coarse softmax, or None; uint8
                     ``round(value·255)`` or float32, like ``gating``.
    rectified:       (K, J, I) uint8, 1 where the rendering head replaced the logits, or None.
    ijk_to_ras:      (4, 4) float64, the input's IJK→RAS matrix (unchanged).
    labels_info:     the model's classes (background excluded).
    timings:         seconds per stage ("load", "preprocess", "network", "refine", "maps", "postprocess", "total").
    postprocess:     the anatomical post-processing: ``{"enabled": bool, "removed": {organ: ml removed and why}}``
                     (:mod:`morse.inference.anatomy`; applied to ``labels`` and ``coarse_labels`` alike).
    domain:          the checks of the input against the model's domain (:mod:`morse.inference.domain`):
                     ``{"truncated": {organ: sides}, "stats": {...}, "findings": [...]}``.
    intended_use:    the model pack's statement of what it is for (show it with every result).
    review:          the review list of this result (:func:`morse.uncertainty.review.build_review`: organs with
                     their flags, ranked regions to check; plain JSON values), or None when not asked for.
    """

    labels: np.ndarray
    coarse_labels: np.ndarray
    ijk_to_ras: np.ndarray
    labels_info: list[LabelInfo]
    gating: np.ndarray | None = None
    dominant_expert: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    rectified: np.ndarray | None = None
    model_id: str = ""
    model_version: str = ""
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    postprocess: dict = field(default_factory=dict)
    domain: dict = field(default_factory=dict)
    intended_use: str = ""
    review: dict | None = None

    @property
    def changed(self) -> np.ndarray:
        """(K, J, I) bool: voxels whose refined label differs from the coarse label."""
        return self.labels != self.coarse_labels

    def confidence(self) -> dict[str, float]:
        """Mean 1 − uncertainty over each non-empty organ's voxels (0..1), or {} without the uncertainty map."""
        if self.uncertainty is None:
            return {}
        from scipy import ndimage

        scale = 255.0 if self.uncertainty.dtype == np.uint8 else 1.0
        boxes = ndimage.find_objects(self.labels)  # per-organ boxes: no volume-sized temporaries
        out = {}
        for info in self.labels_info:
            if info.value <= len(boxes) and boxes[info.value - 1] is not None:
                box = boxes[info.value - 1]
                values = self.uncertainty[box][self.labels[box] == info.value]
                out[info.name] = float(1.0 - values.mean(dtype=np.float64) / scale)
        return out

    def volumes_ml(self, spacing_mm: tuple[float, float, float]) -> dict[str, float]:
        """Volume of each class in millilitres, given the voxel size in mm."""
        voxel_ml = float(np.prod(spacing_mm)) / 1000.0
        counts = label_counts(self.labels)
        return {info.name: float(counts[info.value]) * voxel_ml for info in self.labels_info}
