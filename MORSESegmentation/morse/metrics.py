"""Segmentation metrics per class: DSC, Jaccard, HD95, ASD — in millimetres (default) or voxels.

Inputs are integer label maps of one shape (any dimensionality; MORSE volumes are KJI). Distances use the voxel
size per *array axis*: for a KJI array pass ``spacing=(s_k, s_j, s_i)`` — :func:`spacing_kji` turns an IJK→RAS
matrix into that. ``units="voxel"`` ignores the spacing (every voxel edge = 1), which is what the Synapse literature
reports (medpy without ``voxelspacing``; see ``docs/algorithm-anchors.md`` §0.5).

Surfaces and distances
    The surface of a mask is the set of its voxels with a 6-connected (3D; 4-connected in 2D) background neighbour
    (``mask XOR erode(mask)``, outside the array counts as background). For every surface voxel of one mask, the
    Euclidean distance to the nearest surface voxel of the other mask gives the directed distance sets
    ``d(P→G)`` and ``d(G→P)``. The kernels are MONAI's (``get_mask_edges`` / ``get_surface_distance``, and
    ``compute_dice`` / ``compute_iou`` for the overlaps); medpy uses the same definitions. What is ours is the
    conventions layer below: empty-mask rules, the paper's reductions, mm or voxel units, and the means.

Conventions (``convention=``)
    ``"default"`` — MONAI definitions, with NaN where a value is undefined:

    ====================  ======  =======  =====  =====  =================
    case                  DSC     Jaccard  HD95   ASD    class status
    ====================  ======  =======  =====  =====  =================
    G empty, P empty      NaN     NaN      NaN    NaN    ``absent``
    G empty, P non-empty  0       0        NaN    NaN    ``false_positive``
    G non-empty, P empty  0       0        NaN    NaN    ``missed``
    both non-empty        value   value    value  value  ``present``
    ====================  ======  =======  =====  =====  =================

    HD95 = max(q95(d(P→G)), q95(d(G→P))) (MONAI ``compute_hausdorff_distance(percentile=95)``); ASD = mean of
    d(P→G) ∪ d(G→P) (MONAI ``compute_average_surface_distance(symmetric=True)``, i.e. the ASSD). Quantiles
    interpolate linearly, as ``torch.quantile``/``numpy.percentile`` do.

    ``"paper"`` — the TransUNet / MORSE evaluation scripts (medpy), for comparison with published Synapse numbers:
    P non-empty and G non-empty → computed, with HD95 = q95(d(P→G) ∪ d(G→P)) (medpy ``hd95``) and ASD = mean d(P→G)
    (medpy ``asd``, directed from prediction to reference); P non-empty and G empty → DSC 1, J 1, HD95 0, ASD 0;
    P empty → all 0. Those rules reward a missed organ with HD95 = ASD = 0, so paper-convention distances are biased
    low — report which convention a table uses. Combine with ``units="voxel"`` to match the published numbers.

Means
    ``CaseMetrics.mean`` averages each metric over the classes *present in the reference* (G non-empty), ignoring
    NaN; ``counts`` says how many classes entered each mean. ``mean_all`` averages over every evaluated class (the
    literature's per-case mean over all 8 organs under the paper convention). :func:`summarize` averages each class
    over the cases whose reference holds it (default; every case under the paper convention), ignoring NaN, then
    the per-class means over classes; predicted organs that the reference lacks are counted as false positives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import InputError

METRICS: tuple[str, ...] = ("dsc", "jaccard", "hd95", "asd")
CONVENTIONS = ("default", "paper")
UNITS = ("mm", "voxel")


def spacing_kji(ijk_to_ras: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm per axis of a KJI array, ``(s_k, s_j, s_i)``, from a 4×4 IJK→RAS matrix."""
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    s_ijk = np.linalg.norm(m[:3, :3], axis=0)
    return (float(s_ijk[2]), float(s_ijk[1]), float(s_ijk[0]))


# --------------------------------------------------------------------------------------------------------------------
# surfaces and distances


def _union_box(pred: np.ndarray, gt: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``pred | gt`` grown by one voxel (clipped to the array); both masks must not be empty.

    Overlaps and surfaces are the same inside it as in the whole array (outside, both masks are background), and
    every later step works on the small box instead of the scan.
    """
    union = pred | gt
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        idx = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(int(idx[0]) - 1, 0), min(int(idx[-1]) + 2, union.shape[axis])))
    return tuple(box)


def _as_masks(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} differs from reference shape {gt.shape}")
    return pred, gt


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances ``(d(P→G), d(G→P))`` between two non-empty boolean masks, float64 1D arrays.

    ``spacing``: voxel size per array axis (same unit as the result); None = 1 per axis (voxel units). The kernels
    are MONAI's: ``get_mask_edges`` (surface = mask XOR erosion) and ``get_surface_distance`` (exact Euclidean
    distance to the nearest surface voxel of the other mask, float32). The masks are cropped to their union plus one
    voxel first, here rather than by MONAI's own crop, which is several times slower on a whole scan.
    """
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    pred, gt = _as_masks(pred, gt)
    if not pred.any() or not gt.any():
        raise ValueError("surface distances need two non-empty masks")
    sp = None if spacing is None else tuple(float(s) for s in spacing)
    if sp is not None and len(sp) != pred.ndim:
        raise InputError(f"spacing has {len(sp)} values for a {pred.ndim}D array")
    box = _union_box(pred, gt)
    edges_p, edges_g = get_mask_edges(pred[box], gt[box], crop=False)
    d_pg = get_surface_distance(edges_p, edges_g, spacing=sp)
    d_gp = get_surface_distance(edges_g, edges_p, spacing=sp)
    return np.asarray(d_pg, dtype=np.float64), np.asarray(d_gp, dtype=np.float64)


def _overlaps(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(DSC, Jaccard) of two boolean masks that are not both empty, by MONAI's ``compute_dice``/``compute_iou``."""
    from monai.metrics import compute_dice, compute_iou

    box = _union_box(pred, gt)
    p = torch.from_numpy(pred[box])[None, None].float()
    g = torch.from_numpy(gt[box])[None, None].float()
    return float(compute_dice(p, g, include_background=True)), float(compute_iou(p, g, include_background=True))


def binary_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | None = None,
    convention: str = "default",
) -> tuple[dict[str, float], str]:
    """Metrics of one class from boolean masks: ``({"dsc", "jaccard", "hd95", "asd"}, status)``.

    ``spacing`` as in :func:`surface_distances` (None → voxel units). ``status`` is "present", "missed",
    "false_positive" or "absent" (see the module docstring for the values each convention gives).
    """
    if convention not in CONVENTIONS:
        raise InputError(f"unknown metric convention {convention!r}; use one of {CONVENTIONS}")
    pred, gt = _as_masks(pred, gt)
    n_p, n_g = int(pred.sum()), int(gt.sum())
    nan = math.nan
    if n_g == 0 and n_p == 0:
        status = "absent"
    elif n_g == 0:
        status = "false_positive"
    elif n_p == 0:
        status = "missed"
    else:
        status = "present"

    if convention == "paper":
        if n_p == 0:
            return {"dsc": 0.0, "jaccard": 0.0, "hd95": 0.0, "asd": 0.0}, status
        if n_g == 0:
            return {"dsc": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}, status
    elif status == "absent":
        return {"dsc": nan, "jaccard": nan, "hd95": nan, "asd": nan}, status
    elif status != "present":
        return {"dsc": 0.0, "jaccard": 0.0, "hd95": nan, "asd": nan}, status

    dsc, jaccard = _overlaps(pred, gt)
    d_pg, d_gp = surface_distances(pred, gt, spacing)
    if convention == "paper":
        hd95 = float(np.percentile(np.concatenate([d_pg, d_gp]), 95))
        asd = float(d_pg.mean())
    else:
        hd95 = float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
        asd = float(np.concatenate([d_pg, d_gp]).mean())
    return {"dsc": dsc, "jaccard": jaccard, "hd95": hd95, "asd": asd}, status


# --------------------------------------------------------------------------------------------------------------------
# label maps


@dataclass
class CaseMetrics:
    """Metrics of one case.

    per_class: class name → {"dsc", "jaccard", "hd95", "asd"} (NaN where undefined in the default convention).
    status:    class name → "present" | "missed" | "false_positive" | "absent".
    mean:      metric → mean over classes present in the reference (NaN ignored); counts: how many entered it.
    mean_all:  metric → mean over all evaluated classes (NaN ignored); counts_all likewise.
    units:     "mm" or "voxel" (DSC and Jaccard are fractions 0..1 either way).
    """

    per_class: dict[str, dict[str, float]]
    status: dict[str, str]
    mean: dict[str, float]
    counts: dict[str, int]
    mean_all: dict[str, float]
    counts_all: dict[str, int]
    units: str
    convention: str
    spacing: tuple[float, ...] | None = None
    name: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN → None)."""
        return _jsonable(
            {
                "name": self.name,
                "units": self.units,
                "convention": self.convention,
                "spacing": list(self.spacing) if self.spacing is not None else None,
                "per_class": self.per_class,
                "status": self.status,
                "mean": self.mean,
                "counts": self.counts,
                "mean_all": self.mean_all,
                "counts_all": self.counts_all,
                **self.extra,
            }
        )


def _jsonable(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _nanmean(values: Iterable[float]) -> tuple[float, int]:
    vals = [v for v in values if not math.isnan(v)]
    return (float(np.mean(vals)) if vals else math.nan), len(vals)


def _label_names(labels, pred: np.ndarray, gt: np.ndarray) -> dict[int, str]:
    if labels is None:
        values = sorted((set(np.unique(pred).tolist()) | set(np.unique(gt).tolist())) - {0})
        return {int(v): str(v) for v in values}
    if isinstance(labels, Mapping):
        return {int(k): str(v) for k, v in labels.items() if int(k) != 0}
    # a sequence of LabelInfo-like objects (value, name)
    return {int(info.value): str(info.name) for info in labels if int(info.value) != 0}


def compute_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    labels=None,
    spacing: Sequence[float] | None = None,
    units: str = "mm",
    convention: str = "default",
    name: str = "",
) -> CaseMetrics:
    """Per-class DSC, Jaccard, HD95 and ASD of integer label maps ``pred`` and ``gt`` (same shape, e.g. KJI).

    labels:     which classes, as ``{value: name}``, a sequence of ``LabelInfo`` (value, name), or None (every
                non-zero value found in either map, named by its value). Background (0) is never evaluated.
    spacing:    voxel size in mm per array axis — for KJI arrays ``(s_k, s_j, s_i)``, see :func:`spacing_kji`.
                Required for ``units="mm"``; ignored for ``units="voxel"``.
    units:      "mm" (default) or "voxel" (distances in voxel edges, as the Synapse literature reports them).
    convention: "default" or "paper" (module docstring).
    """
    if units not in UNITS:
        raise InputError(f"unknown units {units!r}; use 'mm' or 'voxel'")
    if convention not in CONVENTIONS:
        raise InputError(f"unknown metric convention {convention!r}; use one of {CONVENTIONS}")
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} differs from reference shape {gt.shape}")
    if units == "mm":
        if spacing is None:
            raise InputError("metrics in mm need the voxel spacing; pass spacing=(s_k, s_j, s_i) or units='voxel'")
        if len(spacing) != pred.ndim:
            raise InputError(f"spacing has {len(spacing)} values for a {pred.ndim}D label map")
        dist_spacing = tuple(float(s) for s in spacing)
    else:
        dist_spacing = None
    names = _label_names(labels, pred, gt)

    per_class: dict[str, dict[str, float]] = {}
    status: dict[str, str] = {}
    for value, cname in names.items():
        per_class[cname], status[cname] = binary_metrics(pred == value, gt == value, dist_spacing, convention)

    present = [c for c in names.values() if status[c] in ("present", "missed")]
    mean, counts, mean_all, counts_all = {}, {}, {}, {}
    for m in METRICS:
        mean[m], counts[m] = _nanmean(per_class[c][m] for c in present)
        mean_all[m], counts_all[m] = _nanmean(per_class[c][m] for c in per_class)
    return CaseMetrics(
        per_class, status, mean, counts, mean_all, counts_all, units, convention,
        tuple(float(s) for s in spacing) if spacing is not None else None, name,
    )  # fmt: skip


def summarize(cases: Sequence[CaseMetrics], classes: Sequence[str] | None = None) -> dict:
    """Means over cases: ``{"per_class": {name: {metric: mean}}, "counts": {name: {metric: n}}, "mean": {...},
    "false_positives": {name: n cases}, "cases": n}``.

    Default convention: each class is averaged over the cases whose *reference* contains it (status "present" or
    "missed"; NaN values ignored), so a table column says how well an organ that is there was found. Predictions of
    an organ the reference lacks are counted per class in ``false_positives`` instead. Paper convention: every case
    enters every class (the literature's practice, with its 1/1/0/0 and 0/0/0/0 rules). ``mean`` is the average of
    the per-class means over classes (the mean DSC/HD95 row of TransUNet/MORSE). ``classes`` fixes which classes
    and their order.
    """
    names = list(classes) if classes is not None else list(dict.fromkeys(c for cm in cases for c in cm.per_class))
    per_class: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    false_positives: dict[str, int] = {}
    for cname in names:
        per_class[cname], counts[cname] = {}, {}
        scored = [
            cm
            for cm in cases
            if cname in cm.per_class and (cm.convention == "paper" or cm.status[cname] in ("present", "missed"))
        ]
        false_positives[cname] = sum(cm.status.get(cname) == "false_positive" for cm in cases)
        for m in METRICS:
            per_class[cname][m], counts[cname][m] = _nanmean(cm.per_class[cname][m] for cm in scored)
    mean = {m: _nanmean(per_class[c][m] for c in names)[0] for m in METRICS}
    return {
        "per_class": per_class,
        "counts": counts,
        "mean": mean,
        "false_positives": false_positives,
        "cases": len(cases),
    }
