"""Scoring and report of :mod:`morse.experiments.uncertainty` (cached arrays in, markdown and a figure out)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..uncertainty import maps
from ..uncertainty.measures import ErrorScores, Reliability, near_organs

log = logging.getLogger(__name__)

COST_LIMIT = 1.3
TOP_FRACTION = 0.05
INVENTED_OVERLAP = 0.1  # a predicted component with less of its own organ in the reference is invented
MISSED_FRACTION = 0.5  # a reference organ with at least this share not predicted as itself is missed
DETECTED_COVER = 0.25  # a missed organ counts as found when review regions cover this share of its missed part
MIN_STRUCTURE_ML = 1.0
OPENING_MM = 2.0
MIN_REGION_ML = 0.5


@dataclass
class CaseData:
    name: str
    arrays: dict
    labels: np.ndarray
    reference: np.ndarray
    near: np.ndarray
    spacing: tuple[float, float, float]
    postprocess: dict


def _batch(arrays: dict):
    from ..uncertainty.passes import SoftBatch

    def t(key, cls=True):
        a = torch.from_numpy(arrays[key].astype(np.float32))
        return a.transpose(0, 1) if cls else a

    return SoftBatch(
        coarse=t("coarse"),
        refined=t("refined"),
        rectified=torch.from_numpy(arrays["rectified"]),
        mc_probs=t("mc_probs"),
        mc_mutual=t("mc_mutual", cls=False),
        flip_refined=t("flip_refined"),
    )


def prepare_case(name: str, arrays: dict, pack) -> CaseData:
    """Final labels (argmax of the refined logits, post-processed as the pipeline does), errors' region."""
    from ..geometry import spacing_ijk
    from ..inference.anatomy import is_hounsfield, postprocess_volume, settings_from_pack

    m = arrays["ijk_to_ras"]
    labels = arrays["refined"].argmax(0).astype(np.uint8)
    settings = settings_from_pack(pack)
    # on every n-th slice only, "one piece per organ" would judge pieces that are joined in the slices between
    settings.enabled = int(arrays.get("stride", 1)) == 1
    post = postprocess_volume(
        arrays["hu"], m, [labels], pack.labels, settings, is_hounsfield(pack.preprocessing.intensity)
    )
    sp = spacing_ijk(m)
    spacing = (float(sp[2]), float(sp[1]), float(sp[0]))
    ref = arrays["reference"]
    postprocess = {"removed": {k: c.to_dict() for k, c in post.changes.items()}}
    return CaseData(name, arrays, labels, ref, near_organs(ref, labels, spacing), spacing, postprocess)


def label_confidence(arrays: dict, labels: np.ndarray, temperature: float) -> np.ndarray:
    """Probability of the final label per voxel under ``softmax(refined / T)``."""
    p = maps.probabilities(torch.from_numpy(arrays["refined"].astype(np.float32)).unsqueeze(0), temperature)[0]
    return p.gather(0, torch.from_numpy(labels.astype(np.int64))[None])[0].numpy()


def fit_calibration(cases: list[CaseData], step: int = 3) -> dict:
    """Temperature on the validation cases' near-organ voxels (every ``step``-th one)."""
    from ..uncertainty.calibration import fit_temperature

    logits, target = [], []
    for c in cases:
        where = np.flatnonzero(c.near.ravel())[::step]
        refined = c.arrays["refined"].reshape(c.arrays["refined"].shape[0], -1)
        logits.append(refined[:, where].T.astype(np.float32))
        target.append(c.reference.ravel()[where].astype(np.int64))
    t, before, after = fit_temperature(np.concatenate(logits), np.concatenate(target))
    return {"temperature": t, "nll_before": before, "nll_after": after, "voxels": int(sum(len(x) for x in target))}


@dataclass
class PartResult:
    scores: dict = field(default_factory=dict)  # option -> ErrorScores
    reliability: dict = field(default_factory=dict)  # "T=1"/"T" x near/all -> Reliability
    map_seconds: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    components: list = field(default_factory=list)
    missed: list = field(default_factory=list)
    regions: list = field(default_factory=list)


def score_part(cases, pack, temperature: float, default: str, review_threshold: float | None) -> PartResult:
    """Every option's error scores, reliability at T = 1 and at ``temperature``, and (with a threshold) the
    component-level detection by the organ table and the review regions of ``default``."""
    from ..uncertainty.components import label_components, uncertain_regions

    out = PartResult(scores={o: ErrorScores() for o in maps.OPTIONS})
    for key in ("T=1/near", "T=1/all", "T/near", "T/all"):
        out.reliability[key] = Reliability()
    for c in cases:
        batch = _batch(c.arrays)
        error = c.labels != c.reference
        default_map = None
        for option in maps.OPTIONS:
            t0 = time.perf_counter()
            t = temperature if option not in maps.MONTE_CARLO else 1.0
            u = maps.option_map(option, batch, t).numpy()
            out.map_seconds[option] = out.map_seconds.get(option, 0.0) + time.perf_counter() - t0
            out.scores[option].add(u, error, c.near, c.name)
            if option == default:
                default_map = u
        for key, t in (("T=1", 1.0), ("T", temperature)):
            conf = label_confidence(c.arrays, c.labels, t)
            out.reliability[f"{key}/near"].add(conf[c.near], ~error[c.near])
            out.reliability[f"{key}/all"].add(conf, ~error)
        for part in ("network", "mc", "flip"):
            out.seconds[part] = out.seconds.get(part, 0.0) + float(c.arrays[f"seconds_{part}"])
        if review_threshold is None:
            continue
        voxel_ml = float(np.prod(c.spacing)) / 1000.0
        conf = label_confidence(c.arrays, c.labels, temperature)
        names = {int(i.value): i.name for i in pack.labels}
        for comp in label_components(c.labels):
            own = float((c.reference[comp.box][comp.mask] == comp.value).mean())
            out.components.append(
                {
                    "case": c.name,
                    "organ": names.get(comp.value, str(comp.value)),
                    "ml": comp.voxels * voxel_ml,
                    "invented": own < INVENTED_OVERLAP,
                    "confidence": 1.0 - comp.mean(default_map),
                    "max_probability": comp.mean(conf),
                }
            )
        min_voxels = max(1, math.ceil(MIN_REGION_ML / voxel_ml))
        regions = uncertain_regions(default_map, review_threshold, c.spacing, OPENING_MM, min_voxels)
        flagged = np.zeros(c.labels.shape, bool)
        for r in regions:
            flagged[r.box] |= r.mask
            out.regions.append(
                {
                    "case": c.name,
                    "ml": r.voxels * voxel_ml,
                    "score": r.voxels * voxel_ml * r.mean(default_map),
                    "error_fraction": float(error[r.box][r.mask].mean()),
                }
            )
        for value, name in names.items():
            organ = c.reference == value
            ml = float(organ.sum()) * voxel_ml
            if ml < MIN_STRUCTURE_ML:
                continue
            missed = organ & (c.labels != value)
            share = float(missed.sum()) / float(organ.sum())
            if share < MISSED_FRACTION:
                continue
            predicted_ml = float((c.labels == value).sum()) * voxel_ml
            cover = float(flagged[missed].mean())
            out.missed.append(
                {
                    "case": c.name,
                    "organ": name,
                    "ml": ml,
                    "missed_share": share,
                    "predicted_ml": predicted_ml,
                    "region_cover": cover,
                    "found_by_regions": cover >= DETECTED_COVER,
                    "absent_flag": predicted_ml == 0,
                }
            )
    return out


def costs(part: PartResult) -> dict[str, float]:
    """Seconds of each option over the refined run's network seconds (backbone + rendering head), as a ratio."""
    return maps.cost_ratios(part.seconds, part.map_seconds)


def component_auroc(components: list[dict], key: str) -> float:
    """AUROC of ``1 − key`` separating invented from real components (NaN without both kinds)."""
    pos = [1.0 - c[key] for c in components if c["invented"]]
    neg = [1.0 - c[key] for c in components if not c["invented"]]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins / (len(pos) * len(neg)))


def choose(val: PartResult) -> dict:
    """Settings from the validation cases: the option with the best near-organ AUROC among those within
    :data:`COST_LIMIT` of the refined run, its review threshold (the top-5 % cut of the near-organ voxels) and the
    organ low-confidence threshold."""
    from ..uncertainty.measures import threshold_for

    cost = costs(val)
    affordable = [o for o in maps.OPTIONS if cost[o] <= COST_LIMIT]
    best = max(affordable, key=lambda o: val.scores[o].summary()["auroc_near"])
    s = val.scores[best]
    threshold = threshold_for(s.near_err + s.near_ok, TOP_FRACTION)
    return {"option": best, "review_threshold": threshold, "cost": cost}


def low_confidence_threshold(components: list[dict]) -> float:
    """Organ flag: the confidence cut (0.01 steps) that best separates the invented validation components from the
    real ones (largest true-positive minus false-positive rate; the lowest such cut)."""
    invented = [c["confidence"] for c in components if c["invented"]]
    real = [c["confidence"] for c in components if not c["invented"]]
    if not invented or not real:
        return 0.5
    cuts = [k / 100 for k in range(1, 100)]
    gain = [np.mean([v < t for v in invented]) - np.mean([v < t for v in real]) for t in cuts]
    return cuts[int(np.argmax(gain))]
