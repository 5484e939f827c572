"""What ``morse segment`` and ``morse evaluate`` report: found organs, volumes, confidence, cut organs, means."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from morse.cli import main
from morse.evaluation.evaluate_command import dsc_all_organs
from morse.geometry import ijk_to_ras_from_lps
from morse.imageio import write_image
from morse.inference.result import LabelInfo, SegmentationResult
from morse.inference.segment_command import organs_found
from morse.metrics import compute_metrics
from synthetic import ring_slices

INFOS = [LabelInfo(1, "liver", (1, 0, 0)), LabelInfo(2, "spleen", (0, 1, 0)), LabelInfo(3, "pancreas", (0, 0, 1))]


def _result(uncertainty_dtype=np.float32) -> SegmentationResult:
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[0:4, 0:10, 0:10] = 1  # 400 voxels of 2 mm³ = 0.8 ml, touching the first slice
    labels[5:6, 12:14, 12:13] = 2  # 2 voxels = 0.004 ml: rounds to 0.0 ml but is found
    uncertainty = np.zeros(labels.shape, np.float32)
    uncertainty[labels == 1] = 0.25
    if uncertainty_dtype == np.uint8:
        uncertainty = np.round(uncertainty * 255).astype(np.uint8)
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3).ravel())
    return SegmentationResult(
        labels=labels,
        coarse_labels=labels,
        ijk_to_ras=m,
        labels_info=INFOS,
        uncertainty=uncertainty,
        domain={"truncated": {"liver": ["bottom"]}},
    )


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_found_organs_volume_confidence_and_cut(dtype):
    result = _result(dtype)
    text = organs_found(result)
    assert text.startswith("liver 0.8 ml (confidence 0.75, cut at the bottom), spleen 0.0 ml (confidence 1.00)")
    assert "pancreas" not in text  # empty organs are not "found"
    assert result.confidence()["liver"] == pytest.approx(0.75, abs=0.002)


def test_nothing_found():
    result = _result()
    result.labels[:] = 0
    assert organs_found(result) == "none" and result.confidence() == {}


def test_mean_over_all_organs_counts_invented_ones_as_failures():
    gt = np.zeros((4, 10, 10), np.uint8)
    pred = np.zeros_like(gt)
    gt[:, 0:4, 0:4] = pred[:, 0:4, 0:4] = 1  # liver: DSC 1
    pred[:, 6:8, 6:8] = 2  # spleen predicted, absent from the reference
    classes = {1: "liver", 2: "spleen", 3: "pancreas"}
    cases = [compute_metrics(pred, gt, classes, units="voxel")]
    assert cases[0].mean["dsc"] == 1.0  # present only: the invented spleen is not in it
    assert dsc_all_organs(cases, ["liver", "spleen", "pancreas"]) == pytest.approx(0.5)  # (1 + 0) / 2; pancreas: none
    assert math.isnan(dsc_all_organs(cases, ["pancreas"]))


def test_segment_prints_intended_use_and_writes_the_report(trained_rings, tmp_path, capsys):
    _, pack = trained_rings
    meta = json.loads((pack / "model.json").read_text())
    assert "intended_use" not in meta or meta["intended_use"]
    image, _ = ring_slices(4, seed=3)
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3).ravel())
    path = write_image(tmp_path / "c.nii.gz", image, m)
    pack_copy = tmp_path / "pack"
    pack_copy.mkdir()
    for f in pack.iterdir():
        (pack_copy / f.name).write_bytes(f.read_bytes())
    meta["intended_use"] = "Research use only: rings."
    meta["domain"] = {"modality": "CT", "body_region": "abdomen"}  # the checks run against a declared domain
    (pack_copy / "model.json").write_text(json.dumps(meta))
    args = ["segment", str(path), "-o", str(tmp_path / "o"), "--model", str(pack_copy), "--no-gating"]
    assert main([*args, "--no-postprocess"]) == 0
    out = capsys.readouterr().out
    assert "intended use: Research use only: rings." in out
    summary = json.loads((tmp_path / "o" / "c" / "summary.json").read_text())
    assert summary["postprocess"]["enabled"] is False and summary["intended_use"] == "Research use only: rings."
    assert set(summary["found"]) <= {"disc", "ring"} and summary["found"]
    assert all(round(v, 1) == v for v in summary["volumes_ml"].values())
    assert set(summary["truncated"]) == set(summary["found"])  # 4 slices: every organ touches the first and last
    assert main([*args, "--overwrite"]) == 0
    summary = json.loads((tmp_path / "o" / "c" / "summary.json").read_text())
    assert summary["postprocess"]["enabled"] is True and set(summary["confidence"]) == set(summary["found"])


def test_confidence_rule_labels_do_not_depend_on_the_maps_asked_for(trained_rings, tmp_path):
    """A pack with min_confidence: the pipeline computes the uncertainty map for the rule when it was not asked for,
    drops it afterwards, and the labels are those of the rule applied to the network's own map."""
    from morse.inference.anatomy import is_hounsfield, postprocess_volume, settings_from_pack
    from morse.inference.pipeline import segment_volume
    from morse.modelpack import load_model_pack

    _, pack = trained_rings
    image, _ = ring_slices(6, seed=5)
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3).ravel())
    raw = segment_volume(image, m, model=pack, device="cpu", gating=False, uncertainty=True, postprocess=False)
    confidence = sorted(raw.confidence().values())
    assert confidence, "the ring model finds nothing"
    threshold = (confidence[0] + confidence[-1]) / 2 if confidence[-1] - confidence[0] > 0.01 else confidence[-1] + 1e-3
    copy = tmp_path / "pack"
    copy.mkdir()
    for f in pack.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    meta = json.loads((copy / "model.json").read_text())
    meta.setdefault("inference", {})["postprocess"] = {"min_confidence": threshold, "default_min_ml": 0.0}
    (copy / "model.json").write_text(json.dumps(meta))
    loaded = load_model_pack(copy)
    with_map = segment_volume(image, m, model=loaded, device="cpu", gating=False, uncertainty=True)
    without = segment_volume(image, m, model=loaded, device="cpu", gating=False, uncertainty=False)
    assert without.uncertainty is None and with_map.uncertainty is not None
    assert np.array_equal(with_map.labels, without.labels)
    expected = raw.labels.copy()
    post = postprocess_volume(image, m, [expected], loaded.labels, settings_from_pack(loaded),
                              hounsfield=is_hounsfield(loaded.preprocessing.intensity),
                              uncertainty=raw.uncertainty)  # fmt: skip
    assert np.array_equal(without.labels, expected)
    dropped = sum(c.low_confidence_ml for c in post.changes.values())
    assert dropped > 0 and not np.array_equal(expected, raw.labels)  # the rule did remove something
    assert without.postprocess["removed"] == {k: c.to_dict() for k, c in post.changes.items()}
