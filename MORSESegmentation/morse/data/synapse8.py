"""The Synapse (BTCV) 8-organ label set used by MORSE, TransUNet and the Synapse literature.

Values follow the alphabetical order of the paper's Table 1 columns (1 aorta, 2 gallbladder, 3 left kidney, 4 right
kidney, 5 liver, 6 pancreas, 7 spleen, 8 stomach; 0 background) — see ``docs/morse-reference-analysis.md`` §6.

Colours are those of 3D Slicer's ``GenericAnatomyColors`` table for the same organs (RGB scaled to 0..1), except
where that table would make two of these organs look alike: it gives both kidneys one colour and the stomach almost
the liver's (5/255 apart), so the right kidney is light blue and the stomach pale yellow. Terminology: SNOMED-CT,
category "Anatomical Structure" (123037004) and one type per organ. The kidneys are coded as Slicer's anatomy list
codes them: type "Kidney" (64033007) with the laterality modifier "Left" (7771000) or "Right" (24028007), so the
Segment Editor's terminology selector finds them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..labels import LabelInfo

ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
KIDNEY = ("SCT", "64033007", "Kidney")
LEFT, RIGHT = ("SCT", "7771000", "Left"), ("SCT", "24028007", "Right")


def _rgb(r: int, g: int, b: int) -> tuple[float, float, float]:
    return (round(r / 255.0, 4), round(g / 255.0, 4), round(b / 255.0, 4))


SYNAPSE8: list[LabelInfo] = [
    LabelInfo(
        value=1, name="aorta", color=_rgb(224, 97, 76), category=ANATOMICAL_STRUCTURE, type=("SCT", "15825003", "Aorta")
    ),
    LabelInfo(
        value=2,
        name="gallbladder",
        color=_rgb(139, 150, 98),
        category=ANATOMICAL_STRUCTURE,
        type=("SCT", "28231008", "Gallbladder"),
    ),
    LabelInfo(
        value=3, name="kidney_left", color=_rgb(185, 102, 83), category=ANATOMICAL_STRUCTURE, type=KIDNEY, modifier=LEFT
    ),
    LabelInfo(
        value=4,
        name="kidney_right",
        color=_rgb(118, 171, 216),
        category=ANATOMICAL_STRUCTURE,
        type=KIDNEY,
        modifier=RIGHT,
    ),
    LabelInfo(
        value=5,
        name="liver",
        color=_rgb(221, 130, 101),
        category=ANATOMICAL_STRUCTURE,
        type=("SCT", "10200004", "Liver"),
    ),
    LabelInfo(
        value=6,
        name="pancreas",
        color=_rgb(249, 180, 111),
        category=ANATOMICAL_STRUCTURE,
        type=("SCT", "15776009", "Pancreas"),
    ),
    LabelInfo(
        value=7,
        name="spleen",
        color=_rgb(157, 108, 162),
        category=ANATOMICAL_STRUCTURE,
        type=("SCT", "78961009", "Spleen"),
    ),
    LabelInfo(
        value=8,
        name="stomach",
        color=_rgb(255, 230, 130),
        category=ANATOMICAL_STRUCTURE,
        type=("SCT", "69695003", "Stomach"),
    ),
]

ORGANS: tuple[str, ...] = tuple(info.name for info in SYNAPSE8)
"""Organ names in label-value order (index + 1 = value)."""

VALUES: dict[str, int] = {info.name: info.value for info in SYNAPSE8}
"""Organ name → Synapse-8 label value."""

DISPLAY_NAMES: dict[str, str] = {
    "aorta": "Aorta",
    "gallbladder": "Gallbladder",
    "kidney_left": "Kidney (L)",
    "kidney_right": "Kidney (R)",
    "liver": "Liver",
    "pancreas": "Pancreas",
    "spleen": "Spleen",
    "stomach": "Stomach",
}
"""Column headers as in the paper's Table 1."""


def nnunet_labels() -> dict[str, int]:
    """The ``labels`` block of an nnU-Net v2 ``dataset.json``: ``{"background": 0, "aorta": 1, ...}``."""
    return {"background": 0, **VALUES}


def to_synapse8(labels: np.ndarray, source_ids: Mapping[str, int]) -> np.ndarray:
    """Relabel an integer label map into Synapse-8 values (uint8, same shape); every other id becomes 0.

    ``source_ids`` maps organ name (as in :data:`ORGANS`) → id in ``labels`` (e.g. TotalSegmentator ``total``: spleen
    1, kidney_right 2, kidney_left 3, gallbladder 4, liver 5, stomach 6, pancreas 7, aorta 52). Organs missing from
    ``source_ids`` stay absent.
    """
    unknown = sorted(set(source_ids) - set(VALUES))
    if unknown:
        raise ValueError(f"not Synapse-8 organs: {unknown}; expected names among {list(ORGANS)}")
    labels = np.asarray(labels)
    lut_size = int(max(max(source_ids.values(), default=0), int(labels.max(initial=0)))) + 1
    lut = np.zeros(lut_size, dtype=np.uint8)
    for organ, src_id in source_ids.items():
        lut[int(src_id)] = VALUES[organ]
    if labels.min(initial=0) < 0:
        raise ValueError("label map has negative values")
    return lut[labels.astype(np.int64, copy=False)]
