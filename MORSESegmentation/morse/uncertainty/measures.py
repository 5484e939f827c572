"""Scores of an uncertainty map against the errors of a segmentation, accumulated over cases as histograms.

A voxel is **mislabelled** when the final label (after post-processing) differs from the reference. The voxels
**near organs** are those within ``NEAR_MM`` (10 mm), in their own axial slice, of a voxel that the reference or
the prediction labels as an organ — every mislabelled voxel is one of them (distance 0), so this region removes
only the air and the far-away tissue that makes the whole-scan AUROC easy.

Maps are binned into ``BINS`` equal bins of [0, 1]: the AUROC is exact up to ties inside a bin (counted as half),
and the top-fraction capture prorates the bin at the cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEAR_MM = 10.0
BINS = 2048
RELIABILITY_BINS = 15


def near_organs(reference: np.ndarray, labels: np.ndarray, spacing_zyx, near_mm: float = NEAR_MM) -> np.ndarray:
    """``(D, H, W)`` bool: within ``near_mm`` mm, in the same axial slice, of reference or predicted foreground."""
    from scipy import ndimage

    fg = (reference > 0) | (labels > 0)
    out = np.zeros(fg.shape, dtype=bool)
    for z in range(fg.shape[0]):
        if fg[z].any():
            distance = ndimage.distance_transform_edt(~fg[z], sampling=spacing_zyx[1:])
            out[z] = distance <= near_mm
    return out


def histogram(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Counts of ``values`` in [0, 1] over ``bins`` equal bins (int64)."""
    index = np.clip((np.asarray(values, dtype=np.float32) * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(index.ravel(), minlength=bins)


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUROC from the histograms of positives and negatives (higher bin: more positive; ties count half)."""
    pos, neg = positives.astype(np.float64), negatives.astype(np.float64)
    if pos.sum() == 0 or neg.sum() == 0:
        return float("nan")
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def captured(positives: np.ndarray, negatives: np.ndarray, fraction: float) -> float:
    """Fraction of the positives among the ``fraction`` of all voxels with the highest values (the cut bin's
    voxels are taken in proportion)."""
    total = positives + negatives
    budget = fraction * float(total.sum())
    if positives.sum() == 0:
        return float("nan")
    taken = 0.0
    got = 0.0
    for b in range(len(total) - 1, -1, -1):
        if total[b] == 0:
            continue
        share = min(1.0, (budget - taken) / total[b])
        taken += share * total[b]
        got += share * positives[b]
        if share < 1.0:
            break
    return float(got / positives.sum())


def threshold_for(counts: np.ndarray, fraction: float) -> float:
    """Lowest bin edge such that at most ``fraction`` of the counted voxels lie at or above it."""
    tail = np.cumsum(counts[::-1])[::-1]
    ok = np.nonzero(tail <= fraction * counts.sum())[0]
    return float(ok[0] / len(counts)) if ok.size else 1.0


@dataclass
class ErrorScores:
    """Accumulated histograms of one uncertainty option (see the module docstring)."""

    near_err: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    near_ok: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    far_ok: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    per_case: list[dict] = field(default_factory=list)

    def add(self, u: np.ndarray, error: np.ndarray, near: np.ndarray, name: str) -> None:
        ne, no, fo = histogram(u[error]), histogram(u[near & ~error]), histogram(u[~near])
        self.near_err += ne
        self.near_ok += no
        self.far_ok += fo
        self.per_case.append(
            {
                "case": name,
                "auroc_near": auroc(ne, no),
                "auroc_all": auroc(ne, no + fo),
                "top5_near": captured(ne, no, 0.05),
                "top5_scan": captured(ne, no + fo, 0.05),
            }
        )

    def summary(self) -> dict:
        ok_all = self.near_ok + self.far_ok

        def mean(key):
            vals = [c[key] for c in self.per_case if np.isfinite(c[key])]
            return float(np.mean(vals)) if vals else float("nan")

        return {
            "auroc_all": auroc(self.near_err, ok_all),
            "auroc_near": auroc(self.near_err, self.near_ok),
            "top5_near": captured(self.near_err, self.near_ok, 0.05),
            "top5_scan": captured(self.near_err, ok_all, 0.05),
            "mean_case_auroc_near": mean("auroc_near"),
            "mean_case_top5_near": mean("top5_near"),
            "mean_case_top5_scan": mean("top5_scan"),
        }


@dataclass
class Reliability:
    """Confidence (probability of the final label) against accuracy, in ``RELIABILITY_BINS`` equal bins."""

    count: np.ndarray = field(default_factory=lambda: np.zeros(RELIABILITY_BINS, np.float64))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(RELIABILITY_BINS, np.float64))
    correct: np.ndarray = field(default_factory=lambda: np.zeros(RELIABILITY_BINS, np.float64))

    def add(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        index = np.clip((confidence * RELIABILITY_BINS).astype(np.int64), 0, RELIABILITY_BINS - 1).ravel()
        self.count += np.bincount(index, minlength=RELIABILITY_BINS)
        self.confidence += np.bincount(index, weights=confidence.ravel().astype(np.float64), minlength=RELIABILITY_BINS)
        self.correct += np.bincount(index, weights=correct.ravel().astype(np.float64), minlength=RELIABILITY_BINS)

    def ece(self) -> float:
        """Expected calibration error: Σ_b (n_b / n)·|accuracy_b − confidence_b|."""
        n = self.count.sum()
        if n == 0:
            return float("nan")
        gap = np.abs(self.correct - self.confidence)  # per bin, summed over its voxels
        return float(gap.sum() / n)

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per bin: mean confidence, accuracy, voxel count (NaN for empty bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.confidence / self.count, self.correct / self.count, self.count
