"""Result tables (Table-1 layout) and the ``morse evaluate`` command on a synthetic dataset.

The command test swaps the engine's ``segment_volume`` for a stand-in whose outputs are known (refined = reference,
coarse = reference with one organ eroded), so every number in the report can be checked exactly.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import types

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from morse.errors import DataError
from morse.evaluation import evaluate_command
from morse.evaluation.tables import render_case_markdown, render_csv, render_markdown, table_rows
from morse.inference.result import SegmentationResult
from morse.labels import LabelInfo
from morse.metrics import compute_metrics, summarize
from scipy import ndimage


def _summary(mean_dsc, mean_hd95, organs):
    return {"per_class": {o: {"dsc": d} for o, d in organs.items()}, "mean": {"dsc": mean_dsc, "hd95": mean_hd95},
            "cases": 12}  # fmt: skip


def test_markdown_table_like_table_1():
    rows = [
        ("UNet", _summary(0.7659, 30.1234, {"aorta": 0.87, "liver": 0.92, "gallbladder": math.nan})),
        ("MORSE", _summary(0.8085, 16.5, {"liver": 0.9512, "aorta": 0.8867})),
    ]
    md = render_markdown(rows, units="voxel")
    lines = md.strip().splitlines()
    assert lines[0] == "| Method | DSC (%) ↑ | HD95 (voxel) ↓ | Aorta | Gallbladder | Liver |"
    assert lines[1] == "|:---|---:|---:|---:|---:|---:|"
    assert lines[2] == "| UNet | 76.59 | 30.12 | 87.00 | – | 92.00 |"
    assert lines[3] == "| MORSE | 80.85 | 16.50 | 88.67 | – | 95.12 |"
    organs, values = table_rows(rows, ["liver"])
    assert organs == ["liver"] and values[1] == pytest.approx([80.85, 16.5, 95.12])


def test_csv_table_parses_back():
    rows = [("coarse", _summary(0.5, 12.25, {"kidney_left": 0.25, "spleen": math.nan}))]
    text = render_csv(rows, units="mm")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == ["method", "cases", "mean_dsc_pct", "mean_hd95_mm", "kidney_left_dsc_pct",
                               "spleen_dsc_pct"]  # fmt: skip
    assert parsed[0]["method"] == "coarse" and parsed[0]["cases"] == "12"
    assert float(parsed[0]["mean_dsc_pct"]) == 50.0 and float(parsed[0]["mean_hd95_mm"]) == 12.25
    assert float(parsed[0]["kidney_left_dsc_pct"]) == 25.0 and parsed[0]["spleen_dsc_pct"] == ""


def test_per_case_table():
    gt = np.zeros((10, 10, 10), np.uint8)
    gt[2:6, 2:6, 2:6] = 1
    cm = compute_metrics(gt, gt, {1: "liver", 2: "spleen"}, units="voxel")
    md = render_case_markdown([("case1", "refined", cm)], units="voxel")
    assert md.splitlines()[2] == "| case1 | refined | 100.00 | 100.00 | 0.00 | 0.00 | 1 |"


# ---------------------------------------------------------------------------------------------------------------
# the command, with a stand-in engine


LIVER, SPLEEN = 1, 2  # dataset values; the model below codes them the other way round


def _write(path, array, spacing=(1.5, 1.5, 3.0)):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def _dataset(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": LIVER, "spleen": SPLEEN},
            "numTraining": 1, "file_ending": ".nii.gz"}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(meta))
    refs = {}
    for name, split, shift in (("tr1", "Tr", 0), ("ts1", "Ts", 0), ("ts2", "Ts", 3)):
        label = np.zeros((12, 24, 24), np.uint8)
        label[2:10, 4 + shift : 14 + shift, 4:14] = LIVER
        label[3:9, 16:21, 15:21] = SPLEEN
        if name == "ts2":
            label[label == SPLEEN] = 0  # the spleen is absent from this reference
        image = (label * 100).astype(np.int16)
        _write(root / f"images{split}" / f"{name}_0000.nii.gz", image)
        _write(root / f"labels{split}" / f"{name}.nii.gz", label)
        refs[name] = label
    return root, refs


MODEL_LABELS = [LabelInfo(1, "Spleen", (0.6, 0.4, 0.6)), LabelInfo(2, "Liver", (0.9, 0.5, 0.4))]


def _fake_engine(monkeypatch, calls):
    def segment_volume(volume, ijk_to_ras, model="default", device="auto", refine=True, gating=True,
                       uncertainty=True, **_):  # fmt: skip
        calls.append({"shape": volume.shape, "refine": refine, "gating": gating, "uncertainty": uncertainty})
        ref = (volume / 100).round().astype(np.uint8)  # the image encodes its reference label
        model_coded = np.zeros_like(ref)
        model_coded[ref == LIVER] = 2
        model_coded[ref == SPLEEN] = 1
        coarse = model_coded.copy()
        liver = model_coded == 2
        coarse[liver & ~ndimage.binary_erosion(liver)] = 0  # coarse misses the liver's outer shell
        return SegmentationResult(
            labels=model_coded, coarse_labels=coarse, ijk_to_ras=ijk_to_ras, labels_info=MODEL_LABELS,
            model_id="fake-morse", model_version="0.0.1", timings={"total": 0.01},
        )  # fmt: skip

    monkeypatch.setitem(sys.modules, "morse.inference.pipeline", types.SimpleNamespace(segment_volume=segment_volume))
    monkeypatch.setattr(evaluate_command, "_load_pack", lambda model: types.SimpleNamespace(labels=MODEL_LABELS))


def test_evaluate_command_end_to_end_with_a_stand_in_engine(tmp_path, monkeypatch, capsys):
    root, refs = _dataset(tmp_path)
    calls = []
    _fake_engine(monkeypatch, calls)
    out = tmp_path / "eval"
    args = argparse.Namespace(model="default", data=str(root), split="test", units="mm", convention="default",
                              device="cpu", out=str(out))  # fmt: skip
    assert evaluate_command.run(args) == 0
    assert [c["shape"] for c in calls] == [(12, 24, 24), (12, 24, 24)]  # test split only
    assert all(c["refine"] and not c["gating"] and not c["uncertainty"] for c in calls)

    report = json.loads((out / "evaluation.json").read_text())
    assert report["data"]["cases"] == ["ts1", "ts2"] and report["units"] == "mm"
    assert report["classes"] == [{"name": "Spleen", "model_value": 1, "dataset_value": SPLEEN},
                                 {"name": "Liver", "model_value": 2, "dataset_value": LIVER}]  # fmt: skip
    refined = report["summary"]["refined"]
    assert refined["mean"]["dsc"] == 1.0 and refined["mean"]["hd95"] == 0.0
    assert refined["counts"]["Spleen"]["dsc"] == 1  # absent from ts2's reference and from the prediction
    # Coarse: recompute independently from the known coarse maps.
    expected = []
    for name in ("ts1", "ts2"):
        ref = refs[name]
        liver = ref == LIVER
        coarse = ref.copy()
        coarse[liver & ~ndimage.binary_erosion(liver)] = 0
        expected.append(compute_metrics(coarse, ref, {LIVER: "Liver", SPLEEN: "Spleen"}, spacing=(3.0, 1.5, 1.5)))
    exp = summarize(expected, ["Spleen", "Liver"])
    coarse_summary = report["summary"]["coarse"]
    assert coarse_summary["per_class"]["Liver"]["dsc"] == pytest.approx(exp["per_class"]["Liver"]["dsc"])
    assert coarse_summary["per_class"]["Liver"]["hd95"] == pytest.approx(exp["per_class"]["Liver"]["hd95"])
    assert coarse_summary["per_class"]["Liver"]["dsc"] < 0.9
    # The top 5 % of shell distances are the box's edges: one voxel along k (3 mm) and one along j or i (1.5 mm).
    assert coarse_summary["per_class"]["Liver"]["hd95"] == pytest.approx(math.hypot(3.0, 1.5))
    assert report["per_case"][1]["coarse"]["status"]["Spleen"] == "absent"
    shell = (refs["ts1"] == LIVER) & ~ndimage.binary_erosion(refs["ts1"] == LIVER)
    assert report["per_case"][0]["changed_voxels"] == int(shell.sum())

    md = (out / "evaluation.md").read_text()
    assert "| fake-morse refined (MORSE) | 100.00 | 0.00 | 100.00 | 100.00 |" in md
    assert "| Method | DSC (%) ↑ | HD95 (mm) ↓ | Spleen | Liver |" in md
    assert md in capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO((out / "evaluation.csv").read_text())))
    assert [r["method"] for r in rows] == ["fake-morse coarse (backbone head)", "fake-morse refined (MORSE)"]
    assert float(rows[0]["Liver_dsc_pct"]) == pytest.approx(100 * exp["per_class"]["Liver"]["dsc"], rel=1e-5)


def test_evaluate_paper_convention_in_voxels(tmp_path, monkeypatch):
    root, _ = _dataset(tmp_path)
    _fake_engine(monkeypatch, [])
    report = evaluate_command.evaluate("default", str(root), split="ts2", units="voxel", convention="paper")
    coarse = report["summary"]["coarse"]
    assert coarse["per_class"]["Liver"]["hd95"] == pytest.approx(math.sqrt(2.0))  # shell edges, in voxels
    # paper rule: spleen absent from both → all zeros, and it still counts in the paper's per-class average
    assert report["per_case"][0]["coarse"]["per_class"]["Spleen"] == {"dsc": 0.0, "jaccard": 0.0, "hd95": 0.0,
                                                                      "asd": 0.0}  # fmt: skip


def test_evaluate_variants_score_one_inference_pass_in_every_convention(tmp_path, monkeypatch):
    root, _ = _dataset(tmp_path)
    calls = []
    _fake_engine(monkeypatch, calls)
    both = evaluate_command.evaluate("default", str(root), variants=(("mm", "default"), ("voxel", "paper")))
    assert len(calls) == 2 and list(both["variants"]) == ["voxel/paper"]  # mm/default is the main summary
    alone = evaluate_command.evaluate("default", str(root), units="voxel", convention="paper")
    for output in ("coarse", "refined"):
        assert both["variants"]["voxel/paper"][output] == alone["summary"][output]
    assert both["variants"]["voxel/paper"]["coarse"] != both["summary"]["coarse"]


def test_evaluate_errors(tmp_path, monkeypatch):
    root, _ = _dataset(tmp_path)
    _fake_engine(monkeypatch, [])
    with pytest.raises(DataError, match="no case named nope"):
        evaluate_command.evaluate("default", str(root), split="nope")
    monkeypatch.setattr(evaluate_command, "_load_pack",
                        lambda model: types.SimpleNamespace(labels=[LabelInfo(1, "heart", (1, 0, 0))]))  # fmt: skip
    with pytest.raises(DataError, match=r"none of the model's classes \(heart\) match the dataset's labels"):
        evaluate_command.evaluate("default", str(root))


def test_label_name_matching():
    norm = evaluate_command.normalize_name
    assert norm("kidney_left") == norm("Left Kidney") == norm("Kidney (L)") == norm("left-kidney")
    assert norm("kidney_left") != norm("kidney_right")
    pairs = evaluate_command.match_labels(MODEL_LABELS, {"background": 0, "liver": 5, "spleen": 7, "aorta": 1})
    assert pairs == [("Spleen", 1, 7), ("Liver", 2, 5)]
    recoded = evaluate_command.recode(np.array([0, 1, 2, 3]), pairs)
    assert recoded.tolist() == [0, 7, 5, 0]  # class 3 is unknown to the dataset → background
