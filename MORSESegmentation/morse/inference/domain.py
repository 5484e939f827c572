"""Checks of an input and its result against the model's domain; each finding becomes a message (``note:``).

The domain is the model pack's ``model.json`` → ``domain`` (every key optional)::

    "domain": {"modality": "CT", "body_region": "abdomen", "contrast_phases": ["portal-venous"],
               "intensity_hu": [-1024, 3071], "craniocaudal_extent_mm": [282, 660]}

Checks (all on the volume reoriented to LPS, z pointing to the head):

- **modality** (CT models): robust intensity statistics of a CT in Hounsfield units — air (≤ −900 HU, around the
  body, in the lungs and bowel) or a scan clipped at its lowest value (a CT stored in a window), fat (−200..−30 HU)
  and soft tissue (−30..150 HU). An MR, or a CT without its rescale, has none of this pattern.
- **field of view**: the scan's head-to-foot extent against the training scans' (whole body), the lungs (air
  regions of at least :data:`LUNG_MIN_ML` inside the body) filling most of the scan (a chest CT), a body
  cross-section too small for an adult abdomen with no lungs (head, neck, limb, child).
- **organs in the chest**: predicted organs (the aorta excepted, it continues into the chest) more than
  :data:`CHEST_MARGIN_MM` above the level from which the lungs fill at least a fifth of every slice.
- **contrast phase**: the median HU inside the predicted aorta — above :data:`ARTERIAL_HU` an arterial phase (CT
  angiography), below :data:`NATIVE_HU` no contrast — against the phases the model was trained on.
- **organs cut by the field of view**: an organ that touches the first or last axial slice (or the in-plane edge)
  is incomplete; its volume is a lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AIR_HU = -900.0  # air, lung and padding outside the reconstruction circle lie below
FAT_HU = (-200.0, -30.0)
SOFT_HU = (-30.0, 150.0)
LUNG_HU = -400.0
LUNG_MIN_ML = 500.0  # an air region inside the body this large is lung (bowel gas rarely is)
LUNG_SLICE_FRACTION = 0.2  # a slice whose body is at least this much lung is a chest slice
CHEST_MARGIN_MM = 50.0  # the liver's dome and the spleen rise this far into the slices where the lungs are full
MIN_ABDOMEN_AREA_CM2 = 350.0  # an adult abdomen's cross-section is larger (BTCV: 500–1000 cm²)
ARTERIAL_HU = 300.0  # aortic blood above this: arterial phase (portal-venous: about 150–200 HU)
NATIVE_HU = 80.0  # aortic blood below this: no intravenous contrast (blood is about 40 HU)
MAX_SAMPLE = 2_000_000  # voxels used for the intensity statistics


@dataclass
class DomainReport:
    """Findings: ``messages`` (one per finding), ``truncated`` (organ → the sides where the scan cuts it),
    ``stats`` (the numbers behind the checks)."""

    messages: list[str] = field(default_factory=list)
    truncated: dict[str, list[str]] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"truncated": self.truncated, "stats": self.stats, "findings": list(self.messages)}


def domain_of(pack) -> dict:
    """The pack's ``domain`` mapping ({} when absent)."""
    meta = getattr(pack, "meta", None) or {}
    domain = meta.get("domain")
    return domain if isinstance(domain, dict) else {}


def _sample(volume: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil((volume.size / MAX_SAMPLE) ** (1 / 3))))
    return np.asarray(volume[::step, ::step, ::step], dtype=np.float32).ravel()


def intensity_stats(volume: np.ndarray) -> dict:
    """Fractions of air, fat and soft tissue (HU ranges above) and the clipping at the lowest value."""
    v = _sample(volume)
    lowest = float(v.min())
    return {
        "air": float(np.mean(v <= AIR_HU)),
        "fat": float(np.mean((v >= FAT_HU[0]) & (v <= FAT_HU[1]))),
        "soft_tissue": float(np.mean((v > SOFT_HU[0]) & (v <= SOFT_HU[1]))),
        "lowest": lowest,
        "at_lowest": float(np.mean(v == lowest)),
        "p1": float(np.percentile(v, 1)),
        "p99": float(np.percentile(v, 99)),
    }


def check_modality(stats: dict, domain: dict) -> list[str]:
    """A note when the intensities are not those of a CT in HU (for CT models only)."""
    if str(domain.get("modality", "CT")).upper() != "CT":
        return []
    clipped = stats["at_lowest"] >= 0.05 and AIR_HU < stats["lowest"] <= FAT_HU[1]
    air_ok = stats["air"] >= 0.005 or clipped
    if air_ok and stats["soft_tissue"] >= 0.05 and (stats["fat"] >= 0.005 or clipped):
        return []
    return [
        f"the intensities do not look like a CT in Hounsfield units ({100 * stats['air']:.1f} % air at or below "
        f"{AIR_HU:g} HU, {100 * stats['fat']:.1f} % fat, {100 * stats['soft_tissue']:.1f} % soft tissue; values "
        f"{stats['p1']:g}..{stats['p99']:g} from the 1st to the 99th percentile). The model was trained on CT: on an "
        f"MR or another kind of image its organs are meaningless"
    ]


def lungs(body, volume_zyx: np.ndarray, spacing_zyx) -> np.ndarray | None:
    """Lung voxels on the body mask's grid (air inside the body, regions of at least :data:`LUNG_MIN_ML`), or None when
    the scan cannot show lungs (clipped above −400 HU)."""
    from scipy import ndimage

    if body.threshold > LUNG_HU:
        return None
    small = volume_zyx[:, :: body.step[0], :: body.step[1]]
    air = body.mask & (small < LUNG_HU)
    labelled, count = ndimage.label(air)
    if count == 0:
        return np.zeros_like(air)
    cell_ml = float(spacing_zyx[0] * spacing_zyx[1] * body.step[0] * spacing_zyx[2] * body.step[1]) / 1000.0
    sizes = np.bincount(labelled.ravel()) * cell_ml
    sizes[0] = 0
    big = np.nonzero(sizes >= LUNG_MIN_ML)[0]
    return np.isin(labelled, big) if big.size else np.zeros_like(air)


def check_domain(
    volume: np.ndarray,
    ijk_to_ras: np.ndarray,
    labels: np.ndarray,
    labels_info,
    domain: dict,
    body=None,
    hounsfield: bool = True,
) -> DomainReport:
    """Run every check on ``volume`` (KJI) and its final ``labels``; ``body``: the
    :class:`morse.inference.anatomy.BodyMask` of the LPS-reoriented volume (computed here when None and
    ``hounsfield``)."""
    from ..geometry import AxisReorder, spacing_ijk
    from .anatomy import body_mask

    report = DomainReport()
    reorder = AxisReorder.to_orientation(ijk_to_ras, volume.shape, "LPS")
    sp = spacing_ijk(reorder.reoriented_ijk_to_ras(ijk_to_ras))
    spacing = (float(sp[2]), float(sp[1]), float(sp[0]))
    vol = reorder.apply(volume)
    lab = reorder.apply(labels)
    extent_mm = vol.shape[0] * spacing[0]
    report.stats["craniocaudal_extent_mm"] = round(extent_mm, 1)
    if hounsfield:
        stats = intensity_stats(volume)
        report.stats["intensity"] = {k: round(v, 4) for k, v in stats.items()}
        modality = check_modality(stats, domain)
        report.messages += modality
        if body is None:
            body = body_mask(vol, spacing)
        if not modality:
            report.messages += _field_of_view(report, vol, lab, spacing, labels_info, domain, body)
            report.messages += _contrast(report, vol, lab, spacing, labels_info, domain, body)
    report.messages += _truncation(report, lab, labels_info)
    return report


def _field_of_view(report: DomainReport, vol, lab, spacing, labels_info, domain, body) -> list[str]:
    messages = []
    region = str(domain.get("body_region", "abdomen"))
    extent = report.stats["craniocaudal_extent_mm"]
    trained = domain.get("craniocaudal_extent_mm")
    if isinstance(trained, (list, tuple)) and len(trained) == 2 and extent > 1.5 * float(trained[1]):
        messages.append(
            f"the scan covers {extent:.0f} mm from foot to head, far more than the {float(trained[0]):.0f}–"
            f"{float(trained[1]):.0f} mm of the model's training scans ({region}): a whole-body scan? Organs outside "
            f"the {region} may be mistaken for the model's organs"
        )
    cell_cm2 = spacing[1] * body.step[0] * spacing[2] * body.step[1] / 100.0
    body_area = body.mask.reshape(body.mask.shape[0], -1).sum(1)
    lung = lungs(body, vol, spacing)
    max_area = float(body_area.max()) * cell_cm2
    report.stats["max_body_area_cm2"] = round(max_area, 1)
    if lung is None:
        return messages
    lung_area = lung.reshape(lung.shape[0], -1).sum(1)
    fraction = np.where(body_area > 0, lung_area / np.maximum(body_area, 1), 0.0)
    chest = fraction >= LUNG_SLICE_FRACTION
    report.stats["chest_slices"] = round(float(chest.mean()), 3)
    if chest.mean() >= 0.5:
        messages.append(
            f"lungs fill {100 * chest.mean():.0f} % of the scan's slices: this looks like a chest scan, and the model "
            f"was trained on the {region}. Organs it finds in the chest are not real"
        )
    elif lung_area.sum() == 0 and 0 < max_area < MIN_ABDOMEN_AREA_CM2:
        messages.append(
            f"the body's largest cross-section is {max_area:.0f} cm², smaller than an adult {region} (head, neck, a "
            f"limb or a child?); the model was trained on adult {region} CT"
        )
    if chest.any():
        # the level from which every slice up to the top of the lungs is a chest slice
        top = int(np.nonzero(chest)[0].max())
        start = top
        while start > 0 and chest[start - 1]:
            start -= 1
        level = start + int(np.ceil(CHEST_MARGIN_MM / spacing[0]))
        voxel_ml = float(np.prod(spacing)) / 1000.0
        found = []
        for info in labels_info:
            if info.name == "aorta" or level > top:
                continue
            ml = float(np.count_nonzero(lab[level : top + 1] == info.value)) * voxel_ml
            if ml >= 1.0:
                found.append(f"{info.name} {ml:.1f} ml")
        if found:
            report.stats["in_chest_ml"] = found
            messages.append(
                "organs predicted in the chest (more than "
                f"{CHEST_MARGIN_MM:g} mm above the lung bases, where the lungs fill the slices): " + ", ".join(found)
            )
    return messages


def _contrast(report: DomainReport, vol, lab, spacing, labels_info, domain, body) -> list[str]:
    aorta = [info.value for info in labels_info if info.name == "aorta"]
    phases = [str(p) for p in domain.get("contrast_phases") or []]
    if not aorta or not phases or body.clipped:
        return []
    voxels = vol[lab == aorta[0]]
    if voxels.size * float(np.prod(spacing)) < 1000.0:  # less than 1 ml of aorta: nothing to measure
        return []
    median = float(np.median(voxels))
    report.stats["aorta_median_hu"] = round(median, 1)
    phase = "arterial" if median > ARTERIAL_HU else "native (no contrast)" if median < NATIVE_HU else None
    if phase is None or any(p.startswith(phase.split()[0]) for p in phases):
        return []
    return [
        f"the blood in the aorta is {median:.0f} HU: {'an' if phase[0] in 'aeiou' else 'a'} {phase} phase scan, and "
        f"the model was trained on "
        f"{', '.join(phases)} CT; organ boundaries and contrast-filled vessels may be mislabelled"
    ]


def _truncation(report: DomainReport, lab: np.ndarray, labels_info) -> list[str]:
    from scipy import ndimage

    boxes = ndimage.find_objects(lab)
    cut = []
    depth, height, width = lab.shape
    for info in labels_info:
        v = int(info.value)
        if v > len(boxes) or boxes[v - 1] is None:
            continue
        zs, ys, xs = boxes[v - 1]
        sides = []
        if zs.start == 0:
            sides.append("bottom")
        if zs.stop == depth:
            sides.append("top")
        if ys.start == 0 or ys.stop == height or xs.start == 0 or xs.stop == width:
            sides.append("side")
        if sides:
            report.truncated[info.name] = sides
            cut.append(f"{info.name} ({'/'.join(sides)})")
    if not cut:
        return []
    return [
        "organs cut by the edge of the scan, their volumes are lower bounds: " + ", ".join(cut) + " (bottom/top: the "
        "first/last axial slice toward the feet/head; side: the in-plane edge)"
    ]
