"""Model packs: save → load → identical predictions; every way a pack can be wrong gives a clear error; pickles
are never executed."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from morse.config import ModelConfig, PreprocessingConfig
from morse.errors import ModelPackError
from morse.labels import LabelInfo
from morse.model import MorseModel
from morse.modelpack import load_model_pack, save_model_pack
from morse.train.checkpoint import load_checkpoint
from synthetic import pointwise_smoe

LABELS = [LabelInfo(1, "a", (1.0, 0.0, 0.0), ("SCT", "1", "A"), ("SCT", "2", "B")), LabelInfo(2, "b", (0, 1.0, 0))]


def _small_config() -> ModelConfig:
    from morse.config import BackboneConfig, PointHeadConfig

    return ModelConfig(
        num_classes=3,
        backbone=BackboneConfig(features=[4, 8, 8, 16, 16, 4]),
        features=pointwise_smoe(8),
        point_head=PointHeadConfig(hidden=[16], test_points=64),
    )


@pytest.fixture
def pack(tmp_path):
    torch.manual_seed(0)
    model = MorseModel(_small_config()).eval()
    path = save_model_pack(
        tmp_path / "pack", model, model_id="tiny", version="1.2.3", preprocessing=PreprocessingConfig(), labels=LABELS
    )
    return model, path


def test_save_load_identical_predictions(pack):
    model, path = pack
    loaded = load_model_pack(path)
    assert loaded.model_id == "tiny" and loaded.version == "1.2.3"
    assert loaded.labels[0].type == ("SCT", "2", "B") and loaded.labels[1].category is None
    rebuilt = loaded.build("cpu")
    x = torch.randn(2, 1, 32, 32)
    a, b = model.predict(x, gating_stride=2), rebuilt.predict(x, gating_stride=2)
    for name in ("coarse", "refined", "rectified", "gating"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def _edit_json(path, **changes):
    meta = json.loads((path / "model.json").read_text())
    for key, value in changes.items():
        meta[key] = value
    (path / "model.json").write_text(json.dumps(meta))


def test_corrupted_or_truncated_weights_are_refused(pack):
    _, path = pack
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelPackError, match="sha256"):
        load_model_pack(path).build()
    # a truncated file whose checksum was "fixed" is still refused, by the safetensors reader
    from morse.fileutils import sha256_file

    meta = json.loads((path / "model.json").read_text())
    meta["weights"]["sha256"] = sha256_file(weights)
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelPackError, match="safetensors"):
        load_model_pack(path).build()


def test_schema_and_field_checks(pack):
    _, path = pack
    _edit_json(path, schema_version=99)
    with pytest.raises(ModelPackError, match="newer"):
        load_model_pack(path)
    _edit_json(path, schema_version=1, version="one")
    with pytest.raises(ModelPackError, match=r"MAJOR\.MINOR\.PATCH"):
        load_model_pack(path)
    _edit_json(path, version="1.0.0", labels=[{"value": 7, "name": "x", "color": [1, 1, 1]}])
    with pytest.raises(ModelPackError, match="label values"):
        load_model_pack(path)


def test_architecture_mismatch_is_reported(pack):
    _, path = pack
    meta = json.loads((path / "model.json").read_text())
    meta["architecture"]["features"]["expert_dim"] = 12
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelPackError, match="do not match the architecture"):
        load_model_pack(path).build()


class _Exploit:
    """Unpickling this writes a marker file: proof that code ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _malicious_pickle(path, marker):
    _Exploit.marker = marker
    path.write_bytes(pickle.dumps({"state_dict": _Exploit()}))
    return path


def test_pickle_given_as_model_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = _malicious_pickle(tmp_path / "model.pt", marker)
    with pytest.raises(ModelPackError, match="pickle"):
        load_model_pack(evil)
    folder = tmp_path / "folder"
    folder.mkdir()
    _malicious_pickle(folder / "model.pth", marker)
    with pytest.raises(ModelPackError, match="pickle"):
        load_model_pack(folder)
    assert not marker.exists()


def test_pack_whose_weights_entry_points_to_a_pickle_is_refused(pack, tmp_path):
    _, path = pack
    marker = tmp_path / "pwned"
    _malicious_pickle(path / "model.pt", marker)
    meta = json.loads((path / "model.json").read_text())
    meta["weights"]["file"] = "model.pt"
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelPackError, match="safetensors"):
        load_model_pack(path).build()
    assert not marker.exists()


def test_checkpoint_loader_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "checkpoint.pt"
    _Exploit.marker = marker
    torch.save({"model": _Exploit()}, evil)
    with pytest.raises(ModelPackError, match="not a readable MORSE checkpoint"):
        load_checkpoint(evil, MorseModel(_small_config()))
    assert not marker.exists()
