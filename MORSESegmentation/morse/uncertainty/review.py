"""The review list of one segmentation: a table of organs and a ranked list of regions to check.

``review.json`` (schema ``morse-review/1``)::

    {"schema": "morse-review/1", "input": "...", "model": {"id": ..., "version": ...},
     "settings": {"uncertainty": "refined-entropy", "temperature": 1.3, "threshold": 0.3, "opening_mm": 2.0,
                  "min_region_ml": 0.2, "low_confidence": 0.9, "max_regions": 50},
     "organs": [{"name": "liver", "value": 5, "volume_ml": 1523.4, "confidence": 0.96,
                 "flags": ["truncated"], "truncated_sides": ["top"]}, ...],
     "regions": [{"rank": 1, "kind": "uncertain", "organ": "stomach", "organ_fraction": 0.8,
                  "volume_ml": 12.3, "mean_uncertainty": 0.52, "score": 6.4,
                  "centroid_ijk": [i, j, k], "centroid_ras": [r, a, s],
                  "box_ijk_min": [i, j, k], "box_ijk_max": [i, j, k]}, ...]}

Organ flags: ``absent`` (0 ml), ``truncated`` (cut by the scan's edge, :mod:`morse.inference.domain`),
``fragmented`` (post-processing removed detached pieces of at least ``FRAGMENT_ML``), ``low confidence`` (mean
1 − uncertainty below ``low_confidence``), ``implausible region`` (post-processing removed voxels outside the body,
or the whole organ as too small; or the domain checks found it in the chest).

Regions: ``uncertain`` — 26-connected components of voxels whose uncertainty reaches ``threshold``, after an
in-plane opening of ``opening_mm`` that removes the thin rim along every boundary (:mod:`.components`);
``head disagreement`` — components where the rendering head changed the coarse label, not already inside an
uncertain region. Ranked by ``score`` = volume (ml) × mean uncertainty, the expected mislabelled volume if the
uncertainty were a probability of error. ``organ``: the predicted label most of the region's voxels carry
(``background`` when none). Indices: IJK of the input image (i fastest, the NIfTI/Slicer convention), centroid
in RAS millimetres. ``review.csv`` holds the same rows: the organs first (``entry = organ``), then the regions.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .components import label_components, uncertain_regions

SCHEMA = "morse-review/1"
FRAGMENT_ML = 0.5
CSV_COLUMNS = (
    "entry",
    "rank",
    "organ",
    "kind",
    "flags",
    "volume_ml",
    "confidence",
    "mean_uncertainty",
    "score",
    "centroid_i",
    "centroid_j",
    "centroid_k",
    "centroid_r",
    "centroid_a",
    "centroid_s",
)


@dataclass
class ReviewSettings:
    """How regions are found (see the module docstring); defaults are overridden by the model pack's
    ``calibration`` block (:func:`settings_from_pack`)."""

    uncertainty: str = "margin"
    temperature: float = 1.0
    threshold: float = 0.5
    opening_mm: float = 2.0
    min_region_ml: float = 0.2
    low_confidence: float = 0.9
    max_regions: int = 50


def settings_from_pack(pack) -> ReviewSettings:
    """:class:`ReviewSettings` from ``model.json`` → ``calibration`` (validated by :mod:`morse.pack_limits`)."""
    meta = getattr(pack, "meta", None) or {}
    cal = meta.get("calibration") or {}
    s = ReviewSettings()
    for key in ("temperature", "threshold", "opening_mm", "min_region_ml", "low_confidence"):
        source = {"threshold": "review_threshold", "low_confidence": "low_confidence"}.get(key, key)
        if source in cal:
            setattr(s, key, float(cal[source]))
    if "uncertainty" in cal:
        s.uncertainty = str(cal["uncertainty"])
    return s


def _unit(values: np.ndarray) -> np.ndarray:
    """A map as float32 in [0, 1] (uint8 maps store ``round(value·255)``)."""
    return values.astype(np.float32) / 255.0 if values.dtype == np.uint8 else values.astype(np.float32, copy=False)


def organ_table(
    labels, uncertainty, spacing_ijk, labels_info, postprocess: dict, domain: dict, low_confidence: float
) -> list[dict]:
    """One row per organ of ``labels_info`` (see the module docstring); ``uncertainty`` may be None."""
    from scipy import ndimage

    voxel_ml = float(np.prod(spacing_ijk)) / 1000.0
    boxes = ndimage.find_objects(labels)
    removed = (postprocess or {}).get("removed", {})
    truncated = (domain or {}).get("truncated", {})
    in_chest = " ".join((domain or {}).get("stats", {}).get("in_chest_ml", []) or [])
    rows = []
    for info in labels_info:
        v = int(info.value)
        box = boxes[v - 1] if v <= len(boxes) else None
        voxels = 0
        confidence = None
        if box is not None:
            organ = labels[box] == v
            voxels = int(organ.sum())
            if uncertainty is not None and voxels:
                confidence = 1.0 - float(_unit(uncertainty[box][organ]).mean(dtype=np.float64))
        change = removed.get(info.name, {})
        flags = []
        if voxels == 0:
            flags.append("absent")
        if info.name in truncated:
            flags.append("truncated")
        if change.get("fragments", 0) and change.get("fragments_ml", 0.0) >= FRAGMENT_ML:
            flags.append("fragmented")
        if confidence is not None and confidence < low_confidence:
            flags.append("low confidence")
        outside = change.get("outside_body_ml", 0.0) > 0 or change.get("too_small_ml", 0.0) > 0
        if outside or f"{info.name} " in f"{in_chest} ":
            flags.append("implausible region")
        rows.append(
            {
                "name": info.name,
                "value": v,
                "volume_ml": round(voxels * voxel_ml, 2),
                "confidence": None if confidence is None else round(confidence, 4),
                "flags": flags,
                "truncated_sides": list(truncated.get(info.name, [])),
            }
        )
    return rows


def find_regions(
    labels: np.ndarray,
    uncertainty: np.ndarray,
    ijk_to_ras: np.ndarray,
    labels_info,
    settings: ReviewSettings,
    coarse_labels: np.ndarray | None = None,
) -> list[dict]:
    """The ranked regions of ``uncertainty`` (and of head disagreement) on the grid of ``labels`` (KJI)."""
    from ..geometry import AxisReorder, spacing_ijk

    reorder = AxisReorder.to_orientation(ijk_to_ras, labels.shape, "LPS")  # axial slices first, for the opening
    m = reorder.reoriented_ijk_to_ras(ijk_to_ras)
    sp = spacing_ijk(m)
    spacing = (float(sp[2]), float(sp[1]), float(sp[0]))
    voxel_ml = float(np.prod(sp)) / 1000.0
    min_voxels = max(1, int(np.ceil(settings.min_region_ml / voxel_ml)))
    u = _unit(reorder.apply(uncertainty))
    lab = reorder.apply(labels)
    names = {int(i.value): i.name for i in labels_info}
    found = [
        ("uncertain", c) for c in uncertain_regions(u, settings.threshold, spacing, settings.opening_mm, min_voxels)
    ]
    if coarse_labels is not None:
        changed = (lab != reorder.apply(coarse_labels)).astype(np.uint8)
        for _, c in found:  # disagreement already inside an uncertain region is part of that region
            changed[c.box][c.mask] = 0
        found += [("head disagreement", c) for c in label_components(changed, min_voxels=min_voxels)]
    inverse = np.linalg.inv(np.asarray(ijk_to_ras, dtype=np.float64))
    rows = []
    for kind, c in found:
        mean_u = c.mean(u)
        counts = np.bincount(lab[c.box][c.mask].ravel(), minlength=1)
        top = int(np.argmax(counts))
        z, y, x = c.centroid()
        ras = m @ np.array([x, y, z, 1.0])
        ijk = inverse @ ras
        corners = [
            m @ np.array([s.start if e == 0 else s.stop - 1 for s, e in zip(c.box[::-1], bits)] + [1.0])
            for bits in ((0, 0, 0), (1, 1, 1))
        ]
        box = np.array([inverse @ p for p in corners])[:, :3]
        rows.append(
            {
                "kind": kind,
                "organ": names.get(top, "background"),
                "organ_fraction": round(float(counts[top] / c.voxels), 3),
                "volume_ml": round(c.voxels * voxel_ml, 3),
                "mean_uncertainty": round(mean_u, 4),
                "score": round(c.voxels * voxel_ml * mean_u, 4),
                "centroid_ijk": [round(float(v), 1) for v in ijk[:3]],
                "centroid_ras": [round(float(v), 1) for v in ras[:3]],
                "box_ijk_min": [round(v) for v in box.min(0)],
                "box_ijk_max": [round(v) for v in box.max(0)],
            }
        )
    rows.sort(key=lambda r: (-r["score"], -r["volume_ml"]))
    rows = rows[: settings.max_regions]
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def build_review(result, input_path: str, settings: ReviewSettings) -> dict:
    """The review of a :class:`morse.inference.result.SegmentationResult` (``review.json``'s content)."""
    from ..geometry import spacing_ijk

    organs = organ_table(
        result.labels,
        result.uncertainty,
        tuple(float(s) for s in spacing_ijk(result.ijk_to_ras)),
        result.labels_info,
        result.postprocess,
        result.domain,
        settings.low_confidence,
    )
    regions = []
    if result.uncertainty is not None:
        coarse = result.coarse_labels if result.coarse_labels is not result.labels else None
        regions = find_regions(
            result.labels, result.uncertainty, result.ijk_to_ras, result.labels_info, settings, coarse
        )
    return {
        "schema": SCHEMA,
        "input": input_path,
        "model": {"id": result.model_id, "version": result.model_version},
        "settings": asdict(settings),
        "organs": organs,
        "regions": regions,
    }


def review_csv(review: dict) -> str:
    """``review.csv``'s text: the organ rows, then the region rows (columns :data:`CSV_COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for o in review["organs"]:
        writer.writerow(
            {
                "entry": "organ",
                "organ": o["name"],
                "flags": ";".join(o["flags"]),
                "volume_ml": o["volume_ml"],
                "confidence": "" if o["confidence"] is None else o["confidence"],
            }
        )
    for r in review["regions"]:
        row = {
            "entry": "region",
            "rank": r["rank"],
            "organ": r["organ"],
            "kind": r["kind"],
            "volume_ml": r["volume_ml"],
            "mean_uncertainty": r["mean_uncertainty"],
            "score": r["score"],
        }
        row.update({f"centroid_{a}": v for a, v in zip("ijk", r["centroid_ijk"])})
        row.update({f"centroid_{a}": v for a, v in zip("ras", r["centroid_ras"])})
        writer.writerow(row)
    return buf.getvalue()


def write_review(folder: Path, review: dict) -> list[Path]:
    """Write ``review.json`` and ``review.csv`` into ``folder``, each read back to check it."""
    from ..errors import OutputError

    written = []
    for name, text in (("review.json", json.dumps(review, indent=2) + "\n"), ("review.csv", review_csv(review))):
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        if path.read_text(encoding="utf-8") != text:
            raise OutputError(f"{path}: writing failed (the file reads back different)")
        written.append(path)
    return written


REVIEW_FILES = ("review.json", "review.csv")  # written by ``morse segment`` beside the outputs


def write_review_files(folder: Path, result, input_path: str, pack) -> list[Path]:
    """``review.json`` and ``review.csv`` of ``result`` in ``folder``; settings from the pack's calibration.

    ``morse segment`` writes them into the staging folder of :func:`morse.inference.outputs.write_case`, so they are
    published with the segmentation files or not at all; an ``OSError`` is left to that caller to report.
    """
    return write_review(folder, build_review(result, input_path, settings_from_pack(pack)))
