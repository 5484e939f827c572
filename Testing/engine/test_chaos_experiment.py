"""The CHAOS MR experiment: its split, its two configs, and the pack they write and install.

The split and config checks need no data; the checks against the dataset itself skip when ``../shared/data`` is
absent (a fresh clone has no shared data)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from morse.config import load_experiment, to_dict
from morse.experiments import chaos_model
from morse.experiments.runs import Job
from morse.labels import LabelInfo
from morse.model import MorseModel
from morse.modelpack import load_model_pack, save_model_pack
from morse.train.trainer import _check, _inference_settings

ROOT = Path(__file__).resolve().parents[2]
CHAOS = ROOT.parent / "shared" / "data" / "chaos-mr-t2"
needs_chaos = pytest.mark.skipif(not CHAOS.is_dir(), reason=f"CHAOS data not present at {CHAOS} (shared data only)")


def _configs():
    return {kind: load_experiment(path) for kind, path in chaos_model.CONFIGS.items()}


def test_split_is_a_seeded_15_5_partition_of_the_20_cases():
    split = chaos_model.SPLIT
    assert len(chaos_model.CASES) == len(set(chaos_model.CASES)) == 20
    assert (len(split["test"]), len(split["validation"]), len(split["train"])) == (5, 3, 12)
    parts = [set(split[k]) for k in ("test", "validation", "train")]
    assert set().union(*parts) == set(chaos_model.CASES) and sum(map(len, parts)) == 20  # disjoint and complete
    order = sorted(chaos_model.CASES)
    random.Random(2026).shuffle(order)
    assert split["test"] == sorted(order[:5]) == ["chaos_01", "chaos_02", "chaos_03", "chaos_10", "chaos_32"]
    assert split["validation"] == sorted(order[5:8]) == ["chaos_08", "chaos_15", "chaos_22"]
    assert chaos_model.TEST.split(",") == split["test"] and chaos_model.VALIDATION.split(",") == split["validation"]


def test_both_configs_train_on_the_training_cases_only_and_differ_only_in_the_heads():
    configs = _configs()
    split = chaos_model.SPLIT
    for cfg in configs.values():
        _check(cfg)  # the trainer's own checks: 3 patch entries for a 3D model, multiples of 16
        assert sorted(cfg.data.train_cases) == split["train"] and len(set(cfg.data.train_cases)) == 12
        assert not set(cfg.data.train_cases) & (set(split["test"]) | set(split["validation"]))
        assert cfg.data.dataset == "../shared/data/chaos-mr-t2" and cfg.data.format == "nnunet"
        assert cfg.model.backbone.name == "unet3d" and cfg.model.num_classes == 5 and cfg.model.spatial_dims == 3
        assert cfg.preprocessing.intensity.mode == "zscore" and cfg.preprocessing.spacing[2] == 7.7
        assert cfg.data.augment.flip == 0.0 and cfg.data.augment.rot90 == 0.0  # the kidneys have sides
    morse, backbone = configs["morse"], configs["backbone"]
    assert morse.model.has_point_head and not backbone.model.has_point_head
    assert morse.model.features.gating == "pointwise"  # the fast preset
    a, b = to_dict(morse), to_dict(backbone)
    for tree in (a, b):
        tree.pop("name"), tree.pop("description")
        tree["model"].pop("features"), tree["model"].pop("point_head")
    assert a == b  # same data, preprocessing, augmentation, schedule and seed
    model = MorseModel(morse.model)
    assert model.num_experts == 3 and model.backbone.expert_channels == [32, 16, 8]
    assert sum(p.numel() for p in model.parameters()) * 4 < 25e6  # a pack of at most 25 MB


def test_3d_packs_slide_windows_of_their_training_patch():
    morse = _configs()["morse"]
    assert _inference_settings(morse) == {"roi_size": [16, 96, 96]}
    assert _inference_settings(load_experiment(ROOT / "configs" / "btcv" / "unet2d-morse.yaml")) == {}


def test_installed_pack_has_the_chaos_classes_with_terminology_and_its_fields(tmp_path):
    torch.manual_seed(0)
    cfg = load_experiment(chaos_model.CONFIGS["backbone"]).model
    cfg.backbone.features = [4, 4, 8, 8, 8, 4]
    labels = [LabelInfo(v, n, (0.5, 0.5, 0.5)) for v, n in enumerate(chaos_model.ORGANS, 1)]
    job = Job("chaos-morse", chaos_model.CONFIGS["morse"], 1337, tmp_path / "run")
    save_model_pack(job.pack, MorseModel(cfg).eval(), model_id="chaos-unet3d-morse", version="0.1.0",
                    preprocessing=load_experiment(chaos_model.CONFIGS["morse"]).preprocessing, labels=labels,
                    inference={"roi_size": [16, 96, 96]}, training={"iterations": 3})  # fmt: skip
    target = tmp_path / "Models" / chaos_model.MODEL_ID
    chaos_model.install(job, target, version="1.0.0", domain=chaos_model.DOMAIN, training={"command": "x"})
    pack = load_model_pack(str(target))
    assert pack.model_id == "abdomen-mr-morse3d" and pack.meta["domain"]["modality"] == "MR"
    assert pack.meta["training"] == {"iterations": 3, "command": "x"}
    assert pack.inference["roi_size"] == [16, 96, 96]
    assert [(lab.value, lab.name) for lab in pack.labels] == list(enumerate(chaos_model.ORGANS, 1))
    kidney = next(lab for lab in pack.labels if lab.name == "kidney_right")
    assert kidney.type[1] == "64033007" and kidney.modifier[2] == "Right"  # SNOMED-CT kidney, right


def test_the_results_page_names_the_test_cases():
    page = ROOT / "docs" / "results" / "chaos.md"
    text = page.read_text(encoding="utf-8")
    assert all(case in text for case in chaos_model.SPLIT["test"] + chaos_model.SPLIT["validation"])


@needs_chaos
def test_the_dataset_holds_exactly_the_split_cases_with_the_chaos_labels():
    from morse.data.readers import dataset_labels, read_nnunet
    from morse.train.dataset import label_infos

    cases = read_nnunet(CHAOS)
    assert sorted(c.name for c in cases) == sorted(chaos_model.CASES)
    assert all(c.split == "train" and c.label is not None for c in cases)  # imagesTr/labelsTr only
    labels = dataset_labels(CHAOS)
    assert labels == {"background": 0, "liver": 1, "kidney_right": 2, "kidney_left": 3, "spleen": 4}
    assert [(i.value, i.name) for i in label_infos(labels)] == list(enumerate(chaos_model.ORGANS, 1))
    meta = json.loads((CHAOS / "dataset.json").read_text(encoding="utf-8"))
    assert meta["numTraining"] == 20
