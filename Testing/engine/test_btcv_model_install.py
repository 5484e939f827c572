"""Installing a trained BTCV run as the default pack: verified weights, model.json written once, swapped in whole."""

from __future__ import annotations

import json

import pytest
import torch
from morse.config import BackboneConfig, ModelConfig, PointHeadConfig, PreprocessingConfig
from morse.data.synapse8 import SYNAPSE8
from morse.experiments.btcv_model import install, metrics_block
from morse.experiments.runs import Job
from morse.model import MorseModel
from morse.modelpack import load_model_pack, save_model_pack
from synthetic import pointwise_smoe


def _trained_job(tmp_path) -> Job:
    torch.manual_seed(0)
    cfg = ModelConfig(
        num_classes=9,
        backbone=BackboneConfig(features=[4, 8, 8, 8, 8, 4]),
        features=pointwise_smoe(8),
        point_head=PointHeadConfig(hidden=[8], test_points=64),
    )
    job = Job("btcv-morse", tmp_path / "config.yaml", 1337, tmp_path / "run")
    save_model_pack(job.pack, MorseModel(cfg).eval(), model_id="btcv-unet2d-morse", version="0.1.0",
                    preprocessing=PreprocessingConfig(), labels=SYNAPSE8, training={"iterations": 3})  # fmt: skip
    return job


def _report(dsc_liver: float) -> dict:
    per_class = {o.name: {"dsc": float("nan"), "hd95": float("nan")} for o in SYNAPSE8}
    per_class["liver"] = {"dsc": dsc_liver, "hd95": 4.5}
    counts = {o.name: {"dsc": 1 if o.name == "liver" else 0} for o in SYNAPSE8}
    summary = {"mean": {"dsc": dsc_liver, "hd95": 4.5}, "per_class": per_class, "counts": counts}
    return {"data": {"cases": ["a", "b"], "subjects": ["A", "B"]}, "units": "mm", "convention": "default",
            "summary": {"coarse": summary, "refined": summary}}  # fmt: skip


def test_metrics_block_keeps_only_the_organs_the_reference_holds():
    block = metrics_block(_report(0.9), "BTCV val", "manual labels", "validation")
    assert block["split"] == "validation" and block["data"] == "BTCV val" and block["reference"] == "manual labels"
    assert block["refined"]["organs_evaluated"] == ["liver"]
    assert block["refined"]["per_organ"] == {"liver": {"dsc": 0.9, "hd95_mm": 4.5}}


def test_install_replaces_the_target_with_the_run_and_its_fields(tmp_path):
    job = _trained_job(tmp_path)
    target = tmp_path / "Models" / "abdomen-ct-morse2d"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("previous pack")
    install(job, target, version="2.0.0", metrics={"mean": 1}, training={"command": "make default-model"})
    meta = json.loads((target / "model.json").read_text(encoding="utf-8"))
    assert meta["model_id"] == "abdomen-ct-morse2d" and meta["version"] == "2.0.0" and meta["metrics"] == {"mean": 1}
    assert meta["training"] == {"iterations": 3, "command": "make default-model"}
    assert not (target / "old.txt").exists()  # swapped in whole, not merged
    assert load_model_pack(str(target)).model_id == "abdomen-ct-morse2d"  # weights and checksum agree


def test_install_refuses_weights_that_differ_from_their_checksum(tmp_path):
    job = _trained_job(tmp_path)
    weights = job.pack / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    target = tmp_path / "Models" / "abdomen-ct-morse2d"
    target.mkdir(parents=True)
    (target / "model.json").write_text("{}")
    with pytest.raises(RuntimeError, match="checksum differs"):
        install(job, target, version="2.0.0")
    assert (target / "model.json").read_text() == "{}"  # the previous pack is untouched
