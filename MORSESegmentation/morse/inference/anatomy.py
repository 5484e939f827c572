"""Anatomical post-processing of organ labels: each organ in one piece, of a plausible size, inside the body.

Rules, in this order, per organ (label value; the left and right kidneys are separate labels, so each side keeps its
own piece):

1. **inside the body** — voxels outside the body are set to background. The body is the largest 3D connected region
   of voxels above ``body_threshold_hu`` (−500 HU: soft tissue, fat and bone, not air), with the holes of every axial
   slice filled (lungs, bowel gas). A scan whose lowest value lies above the threshold (a CT stored clipped to a
   window, e.g. −125..275 HU) uses its lowest value instead: everything above it is tissue. Applied only to models
   whose intensities are Hounsfield units (a ``window`` normalisation with a negative lower bound).
2. **a confident piece** — every 3D connected piece (26-connectivity) whose mean confidence is below
   ``min_confidence`` is set to background; an organ with no confident piece left is removed. Confidence is
   1 − uncertainty of the coarse softmax, p_max − p_second (the figure ``summary.json`` reports per organ), so a
   piece the network hesitated over, a guess between two classes, goes, whatever its size. ``0`` turns the rule off;
   it needs the uncertainty map, which the pipeline computes for it when the map itself was not asked for.
3. **one connected piece** — of the pieces left, the largest is kept, every other fragment is set to background.
4. **a plausible size** — an organ whose kept piece is smaller than its minimum volume (``min_ml``, per organ name,
   else ``default_min_ml``) is removed: at that size it is noise, not the organ. An organ that touches the first or
   last axial slice is exempt (the scan shows only part of it).

Settings come from the model pack (``model.json`` → ``inference.postprocess``, every key optional)::

    "postprocess": {"enabled": true, "body": true, "body_threshold_hu": -500, "largest_component": true,
                    "min_confidence": 0.0, "default_min_ml": 1.0, "min_ml": {"liver": 100.0, ...}}

Their types and ranges are checked with the rest of the pack (:func:`morse.pack_limits.check_postprocess`).

The work is done in bounding boxes per organ (:func:`scipy.ndimage.find_objects`); the only volume-sized temporaries
are the body mask, computed on a grid of about 2 mm in-plane (one byte per voxel of that grid and an int32 label
array of it), and the input itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelPackError

log = logging.getLogger(__name__)

BODY_GRID_MM = 2.0  # in-plane voxel size (at least) of the grid the body mask is computed on


@dataclass
class PostprocessSettings:
    """What :func:`postprocess_labels` does (see the module docstring)."""

    enabled: bool = True
    body: bool = True
    body_threshold_hu: float = -500.0
    largest_component: bool = True
    min_confidence: float = 0.0
    default_min_ml: float = 1.0
    min_ml: dict[str, float] = field(default_factory=dict)

    def minimum_ml(self, organ: str) -> float:
        return float(self.min_ml.get(organ, self.default_min_ml))


def settings_from_pack(pack) -> PostprocessSettings:
    """The ``inference.postprocess`` settings of a model pack (defaults for every key it leaves out).

    Raises:
        ModelPackError: a key is unknown, has the wrong type or range, or ``min_ml`` names an organ the pack lacks.
    """
    meta = getattr(pack, "meta", None) or {}
    raw = (meta.get("inference") or {}).get("postprocess")
    where = f"{getattr(pack, 'path', 'model pack')}/model.json inference.postprocess"
    settings = settings_from_dict(raw, where=where)
    names = {info.name for info in getattr(pack, "labels", None) or []}
    strangers = sorted(set(settings.min_ml) - names) if names else []
    if strangers:  # a misspelt organ would silently fall back to the default minimum
        raise ModelPackError(f"{where}.min_ml names {strangers}, which are not the model's organs {sorted(names)}")
    return settings


def settings_from_dict(raw, where: str = "postprocess") -> PostprocessSettings:
    """Validated :class:`PostprocessSettings` from a mapping (None or absent keys: defaults; true/false: every rule
    on/off). The checks are :func:`morse.pack_limits.check_postprocess`, the ones a model pack gets when loaded."""
    from ..pack_limits import check_postprocess

    problems = check_postprocess(raw, prefix=where)
    if problems:
        raise ModelPackError("; ".join(problems))
    if raw is None:
        return PostprocessSettings()
    if isinstance(raw, bool):
        return PostprocessSettings(enabled=raw)
    values = {k: v for k, v in raw.items() if k != "min_ml"}
    numbers = {k: float(v) for k, v in values.items() if not isinstance(v, bool)}
    flags = {k: v for k, v in values.items() if isinstance(v, bool)}
    min_ml = {str(k): float(v) for k, v in raw.get("min_ml", {}).items()}
    return PostprocessSettings(**flags, **numbers, min_ml=min_ml)


def is_hounsfield(intensity) -> bool:
    """True when a model's intensity normalisation is a CT window in Hounsfield units (a negative lower bound)."""
    return getattr(intensity, "mode", None) == "window" and float(getattr(intensity, "low", 0.0)) < 0


@dataclass
class BodyMask:
    """The body on a coarser in-plane grid: ``mask[z, y // step_y, x // step_x]`` for a (z, y, x) volume.

    ``threshold``: the value used (HU); ``clipped``: the volume's lowest value was above the requested threshold
    (a CT stored in a window), so the lowest value was used.
    """

    mask: np.ndarray
    step: tuple[int, int]
    threshold: float
    clipped: bool = False

    def box(self, zs: slice, ys: slice, xs: slice) -> np.ndarray:
        """The body mask on the full-resolution box ``[zs, ys, xs]`` (bool, box-sized)."""
        yi = np.arange(ys.start, ys.stop) // self.step[0]
        xi = np.arange(xs.start, xs.stop) // self.step[1]
        return self.mask[zs][:, yi][:, :, xi]

    def area_fraction(self) -> np.ndarray:
        """Fraction of each axial slice covered by the body."""
        return self.mask.reshape(self.mask.shape[0], -1).mean(axis=1)


def body_mask(volume_zyx: np.ndarray, spacing_zyx, threshold_hu: float = -500.0) -> BodyMask:
    """The body of a CT ``(z, y, x)`` in HU (see the module docstring), on a grid of about
    :data:`BODY_GRID_MM` mm in-plane."""
    from scipy import ndimage

    step = tuple(max(1, int(BODY_GRID_MM // max(float(s), 1e-6))) for s in spacing_zyx[1:])
    small = volume_zyx[:, :: step[0], :: step[1]]
    lowest = float(small.min())
    clipped = lowest > threshold_hu
    threshold = lowest if clipped else float(threshold_hu)
    mask = small > threshold
    for z in range(mask.shape[0]):  # lungs, bowel gas: holes of the axial slices (3D filling misses cut ones)
        ndimage.binary_fill_holes(mask[z], output=mask[z])
    labelled, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(labelled.ravel())
        sizes[0] = 0
        mask = labelled == int(np.argmax(sizes))
    del labelled
    return BodyMask(mask=mask, step=step, threshold=threshold, clipped=clipped)


@dataclass
class OrganChange:
    """What post-processing removed from one organ (ml)."""

    before_ml: float = 0.0
    outside_body_ml: float = 0.0
    fragments_ml: float = 0.0
    fragments: int = 0
    low_confidence_ml: float = 0.0
    low_confidence_pieces: int = 0
    too_small_ml: float = 0.0

    @property
    def removed_ml(self) -> float:
        return self.outside_body_ml + self.low_confidence_ml + self.fragments_ml + self.too_small_ml

    def to_dict(self) -> dict:
        return {
            "before_ml": round(self.before_ml, 1),
            "removed_ml": round(self.removed_ml, 1),
            "outside_body_ml": round(self.outside_body_ml, 1),
            "fragments_ml": round(self.fragments_ml, 1),
            "fragments": self.fragments,
            "low_confidence_ml": round(self.low_confidence_ml, 1),
            "low_confidence_pieces": self.low_confidence_pieces,
            "too_small_ml": round(self.too_small_ml, 1),
        }


def postprocess_labels(
    labels_zyx: np.ndarray,
    spacing_zyx,
    labels_info,
    settings: PostprocessSettings,
    body: BodyMask | None = None,
    uncertainty_zyx: np.ndarray | None = None,
) -> dict[str, OrganChange]:
    """Apply the rules to ``labels_zyx`` **in place** (background = 0); ``body=None`` skips the body rule,
    ``uncertainty_zyx=None`` (the uncertainty map on the same grid: float 0..1, or uint8 0..255) the confidence rule.

    Returns what was removed per organ (organs absent from the labels are left out)."""
    from scipy import ndimage

    by_confidence = uncertainty_zyx is not None and settings.min_confidence > 0
    scale = 255.0 if uncertainty_zyx is not None and uncertainty_zyx.dtype == np.uint8 else 1.0
    voxel_ml = float(np.prod([float(s) for s in spacing_zyx])) / 1000.0
    boxes = ndimage.find_objects(labels_zyx)
    changes: dict[str, OrganChange] = {}
    full = np.ones((3, 3, 3), dtype=bool)
    for info in labels_info:
        value = int(info.value)
        if value < 1 or value > len(boxes) or boxes[value - 1] is None:
            continue
        bb = boxes[value - 1]
        view = labels_zyx[bb]
        organ = view == value
        change = OrganChange(before_ml=float(np.count_nonzero(organ)) * voxel_ml)
        keep = organ
        if body is not None and settings.body:
            inside = body.box(*bb)
            outside = int(np.count_nonzero(keep & ~inside))
            if outside:
                keep = keep & inside
                change.outside_body_ml = outside * voxel_ml
        if (by_confidence or settings.largest_component) and keep.any():
            components, count = ndimage.label(keep, structure=full)
            sizes = np.bincount(components.ravel(), minlength=count + 1)
            sizes[0] = 0
            if by_confidence:
                mean_u = ndimage.mean(uncertainty_zyx[bb], components, index=np.arange(1, count + 1))
                unsure = np.nonzero(1.0 - np.asarray(mean_u, np.float64) / scale < settings.min_confidence)[0] + 1
                if unsure.size:
                    change.low_confidence_pieces = int(unsure.size)
                    change.low_confidence_ml = float(sizes[unsure].sum()) * voxel_ml
                    sizes[unsure] = 0
                    count -= int(unsure.size)
                    keep = sizes[components] > 0
            if settings.largest_component and count > 1:
                largest = int(np.argmax(sizes))
                change.fragments = int(count) - 1
                change.fragments_ml = float(sizes.sum() - sizes[largest]) * voxel_ml
                keep = components == largest
            del components
        kept = float(np.count_nonzero(keep)) * voxel_ml
        cut = bb[0].start == 0 or bb[0].stop == labels_zyx.shape[0]  # cut by the first/last slice: partly seen
        if 0 < kept < settings.minimum_ml(info.name) and not cut:
            change.too_small_ml = kept
            keep = np.zeros_like(organ)
        if keep is not organ:
            view[organ & ~keep] = 0
        changes[info.name] = change
    return changes


def describe_changes(changes: dict[str, OrganChange], min_ml: float = 1.0) -> list[str]:
    """One message for the organs that lost at least ``min_ml`` (empty when none)."""
    parts = []
    for organ, c in changes.items():
        if c.removed_ml < min_ml:
            continue
        why = []
        if c.outside_body_ml >= 0.05:
            why.append(f"{c.outside_body_ml:.1f} ml outside the body")
        if c.low_confidence_ml >= 0.05:
            n = c.low_confidence_pieces
            why.append(f"{c.low_confidence_ml:.1f} ml in {n} low-confidence piece{'s' if n != 1 else ''}")
        if c.fragments_ml >= 0.05:
            why.append(
                f"{c.fragments_ml:.1f} ml in {c.fragments} fragment{'s' if c.fragments != 1 else ''} apart from "
                f"its largest piece"
            )
        if c.too_small_ml > 0:
            why.append(f"all of it ({c.too_small_ml:.1f} ml, below the organ's plausible size)")
        parts.append(f"{organ}: {', '.join(why)}")
    if not parts:
        return []
    return ["anatomical post-processing removed " + "; ".join(parts) + " (turn it off with --no-postprocess)"]


@dataclass
class Postprocessed:
    """The outcome of :func:`postprocess_volume`: per-organ changes of the refined labels, the messages, and the body
    mask (reoriented to LPS, or None) for further checks."""

    changes: dict[str, OrganChange]
    messages: list[str]
    body: BodyMask | None


def postprocess_volume(
    volume: np.ndarray,
    ijk_to_ras: np.ndarray,
    label_arrays: list[np.ndarray],
    labels_info,
    settings: PostprocessSettings,
    hounsfield: bool = True,
    uncertainty: np.ndarray | None = None,
) -> Postprocessed:
    """Apply the rules in place to every array of ``label_arrays`` (KJI, on the grid of ``volume``), the first being the
    refined labels whose changes are reported. The arrays are reoriented to LPS (views) so that the body's holes are
    filled in axial slices whatever the scan's orientation; ``hounsfield=False`` skips the body rule, and
    ``uncertainty`` (KJI, the result's uncertainty map) None the confidence rule."""
    from ..geometry import AxisReorder, spacing_ijk

    reorder = AxisReorder.to_orientation(ijk_to_ras, volume.shape, "LPS")
    sp = spacing_ijk(reorder.reoriented_ijk_to_ras(ijk_to_ras))
    spacing_zyx = (float(sp[2]), float(sp[1]), float(sp[0]))
    body = body_mask(reorder.apply(volume), spacing_zyx, settings.body_threshold_hu) if hounsfield else None
    if not settings.enabled:
        return Postprocessed(changes={}, messages=[], body=body)
    unsure = None if uncertainty is None else reorder.apply(uncertainty)
    changes: dict[str, OrganChange] = {}
    seen: list[np.ndarray] = []
    for n, labels in enumerate(label_arrays):
        if labels is None or any(labels is s for s in seen):
            continue
        seen.append(labels)
        result = postprocess_labels(reorder.apply(labels), spacing_zyx, labels_info, settings, body, unsure)
        if n == 0:
            changes = result
    return Postprocessed(changes=changes, messages=describe_changes(changes), body=body)
