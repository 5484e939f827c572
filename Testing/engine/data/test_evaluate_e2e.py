"""``morse evaluate`` end to end: the real inference pipeline, a real registry dataset, a (tiny, untrained) model pack.

The model is random, so the scores themselves mean nothing; what is checked is that the command's numbers are exactly
the metrics of what the engine returns for the same case, for both outputs, and that the report files are complete.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from synthetic import pointwise_smoe

pytestmark = pytest.mark.usefixtures("registry_root")


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory):
    import torch
    from morse.config import (
        BackboneConfig,
        IntensityConfig,
        ModelConfig,
        PointHeadConfig,
        PreprocessingConfig,
        SMoEConfig,
    )
    from morse.data.synapse8 import SYNAPSE8
    from morse.model import MorseModel
    from morse.modelpack import save_model_pack

    torch.manual_seed(0)
    cfg = ModelConfig(
        num_classes=9,
        backbone=BackboneConfig(features=[4, 8, 8, 8, 8, 4]),
        features=pointwise_smoe(8),
        point_head=PointHeadConfig(hidden=[8], test_points=256),
    )
    return save_model_pack(
        tmp_path_factory.mktemp("pack") / "tiny-mr",
        MorseModel(cfg).eval(),
        model_id="tiny-mr",
        version="0.0.1",
        preprocessing=PreprocessingConfig(spacing=[3.0, 3.0, 3.0], intensity=IntensityConfig(mode="zscore")),
        labels=SYNAPSE8,
    )


def _same(a, b):
    return (a is None and b is None) or (a is not None and b is not None and a == pytest.approx(b, rel=1e-9, abs=1e-12))


def test_evaluate_command_matches_the_engine(tiny_pack, tmp_path, capsys):
    from morse.cli import main
    from morse.data import cases, readers, synapse8
    from morse.inference.pipeline import segment_volume
    from morse.metrics import compute_metrics, spacing_kji

    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(tiny_pack), "--data", "registry:abdomen-mr-synapse8", "--split", "train",
            "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert report["model"]["id"] == "tiny-mr" and report["data"]["cases"] == ["abdomen-mr-small"]
    assert report["data"]["subjects"] == ["B"] and report["units"] == "mm"
    assert [(c["name"], c["model_value"], c["dataset_value"]) for c in report["classes"]] == [
        (i.name, i.value, i.value) for i in synapse8.SYNAPSE8
    ]

    # The same case through the engine directly: the report must hold exactly these metrics.
    image, label, ijk_to_ras = readers.load_case(
        readers.Case("b", (cases.case_path("abdomen-mr-small"),), cases.case_label_path("abdomen-mr-small"))
    )
    result = segment_volume(image, ijk_to_ras, model=str(tiny_pack), device="cpu", gating=False, uncertainty=False)
    names = {i.value: i.name for i in synapse8.SYNAPSE8}
    case = report["per_case"][0]
    assert case["shape_kji"] == [20, 91, 117]
    assert case["spacing_kji_mm"] == pytest.approx([3.0, 3.0, 3.0])
    assert case["changed_voxels"] == int(np.count_nonzero(result.labels != result.coarse_labels))
    for output, labels in (("refined", result.labels), ("coarse", result.coarse_labels)):
        expected = compute_metrics(labels, label, names, spacing=spacing_kji(ijk_to_ras)).to_dict()
        for organ in synapse8.ORGANS:
            assert case[output]["status"][organ] == expected["status"][organ]
            for metric in ("dsc", "jaccard", "hd95", "asd"):
                assert _same(case[output]["per_class"][organ][metric], expected["per_class"][organ][metric]), (
                    output, organ, metric)  # fmt: skip

    md = (out / "evaluation.md").read_text(encoding="utf-8")
    assert "| Method | DSC (%) ↑ | HD95 (mm) ↓ | Aorta | Gallbladder | Kidney (L) | Kidney (R) | Liver |" in md
    assert "references are TotalSegmentator predictions" in md and md.strip() in printed
    rows = list(csv.DictReader(io.StringIO((out / "evaluation.csv").read_text(encoding="utf-8"))))
    assert [r["method"] for r in rows] == ["tiny-mr coarse (backbone head)", "tiny-mr refined (MORSE)"]
    refined_mean = report["summary"]["refined"]["mean"]["dsc"]
    assert float(rows[1]["mean_dsc_pct"]) == pytest.approx(100 * refined_mean, rel=1e-5)
