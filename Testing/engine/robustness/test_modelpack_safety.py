"""Model packs from strangers: what ``Testing/engine/model/test_modelpack.py`` does not already cover. Nothing in a
pack can run code, make MORSE allocate absurd amounts of memory, or fail with anything but a
:class:`ModelPackError` that says what is wrong."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from morse.errors import ModelPackError
from morse.fileutils import sha256_file
from morse.modelpack import load_model_pack


class _Exploit:
    """Unpickling this writes a marker file: proof that code ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _pickle_bytes(marker) -> bytes:
    _Exploit.marker = marker
    return pickle.dumps({"state_dict": _Exploit()})


@pytest.fixture
def pack(trained_rings, tmp_path):
    """A private copy of the trained ring pack (tests edit it)."""
    return shutil.copytree(trained_rings[1], tmp_path / "pack")


def _meta(path):
    return json.loads((path / "model.json").read_text(encoding="utf-8"))


def _save_meta(path, meta):
    (path / "model.json").write_text(json.dumps(meta), encoding="utf-8")


def _rehash(path):
    meta = _meta(path)
    meta["weights"]["sha256"] = sha256_file(path / meta["weights"]["file"])
    _save_meta(path, meta)


def test_safetensors_file_that_is_a_pickle_is_never_unpickled(pack, tmp_path):
    marker = tmp_path / "pwned"
    (pack / "model.safetensors").write_bytes(_pickle_bytes(marker))
    with pytest.raises(ModelPackError, match=r"does not match model\.json"):  # the checksum catches it first
        load_model_pack(pack).build()
    _rehash(pack)  # a pack made that way on purpose: the checksum matches
    with pytest.raises(ModelPackError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model_pack(pack).build()
    assert not marker.exists()


def test_weights_link_out_of_the_pack_or_a_path_in_the_name_is_refused(pack, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(pack / "model.safetensors", outside)
    (pack / "model.safetensors").symlink_to(outside)
    with pytest.raises(ModelPackError) as err:
        load_model_pack(pack)
    assert str(err.value) == (
        f"{pack / 'model.safetensors'}: a link to a file outside the model pack ({outside}); copy the weights into "
        f"the pack folder instead"
    )
    meta = _meta(pack)
    meta["weights"]["file"] = "../elsewhere.safetensors"
    _save_meta(pack, meta)
    with pytest.raises(ModelPackError, match="must be a file name inside the model pack folder"):
        load_model_pack(pack)
    # a link inside the pack (e.g. a versioned file name) is fine
    (pack / "model.safetensors").unlink()
    shutil.move(outside, pack / "weights-v1.safetensors")
    (pack / "model.safetensors").symlink_to("weights-v1.safetensors")
    meta["weights"]["file"] = "model.safetensors"
    _save_meta(pack, meta)
    assert load_model_pack(pack).build() is not None


def test_link_to_a_pickle_inside_the_pack_is_not_unpickled(pack, tmp_path):
    marker = tmp_path / "pwned"
    (pack / "real.safetensors").write_bytes(_pickle_bytes(marker))
    (pack / "model.safetensors").unlink()
    (pack / "model.safetensors").symlink_to("real.safetensors")
    _rehash(pack)
    with pytest.raises(ModelPackError, match="not a readable safetensors file"):
        load_model_pack(pack).build()
    assert not marker.exists()


def test_folder_of_checkpoints_without_model_json(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "lightning-run"
    folder.mkdir()
    (folder / "epoch=9.ckpt").write_bytes(_pickle_bytes(marker))
    (folder / "last.ckpt").write_bytes(_pickle_bytes(marker))
    with pytest.raises(ModelPackError) as err:
        load_model_pack(folder)
    assert str(err.value) == (
        f"{folder}: no model.json; not a MORSE model pack (found pickle file(s) ['epoch=9.ckpt', 'last.ckpt'], which "
        f"MORSE never loads)"
    )
    with pytest.raises(ModelPackError, match=r"a pickle checkpoint\. MORSE does not load pickle files"):
        load_model_pack(folder / "last.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(schema_version=0), "missing integer schema_version (1 or more)"),
        (lambda m: m.update(schema_version="1"), "missing integer schema_version (1 or more)"),
        (lambda m: m.update(schema_version=True), "missing integer schema_version (1 or more)"),
        (lambda m: m.update(schema_version=2), "schema version 2 is newer than this MORSE understands (1)"),
        (lambda m: m.update(weights="model.safetensors"), "'weights' must be an object with file, sha256 and format"),
        (lambda m: m.update(labels={"1": "disc"}), "'labels' must be a list of {value, name, color} entries"),
        (lambda m: m["labels"][0].update(color=[1, 0]), "color must be three numbers in 0..1"),
        (lambda m: m["labels"][0].update(value=1.5), "value 1.5 is not an integer"),
        (lambda m: m["labels"][0].update(category="SCT"), "category must be [coding scheme, code value, code meaning]"),
        (lambda m: m["architecture"].update(num_classes=300), "num_classes 300 must be an integer from 2 to 256"),
        (lambda m: m["architecture"].update(num_classes="3"), "num_classes '3' must be an integer from 2 to 256"),
        (lambda m: m["preprocessing"].update(spacing=[1, 0, 1]), "spacing [1, 0, 1] must be three positive numbers"),
        (lambda m: m["preprocessing"].update(orientation="LLS"), "orientation 'LLS' must be three letters"),
        (lambda m: m["preprocessing"]["intensity"].update(low=5, high=5), "window 5..5 must have low < high"),
    ],
)
def test_malformed_model_json_fields(pack, edit, message):
    meta = _meta(pack)
    edit(meta)
    _save_meta(pack, meta)
    with pytest.raises(ModelPackError) as err:
        load_model_pack(pack)
    assert message in str(err.value)


def test_model_json_that_is_not_an_object_or_not_utf8(pack):
    (pack / "model.json").write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(ModelPackError, match="must hold a JSON object"):
        load_model_pack(pack)
    (pack / "model.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ModelPackError, match="not valid JSON"):
        load_model_pack(pack)


def test_non_ascii_label_names_load_whatever_the_locale(pack):
    """SimpleITK's DICOM writer leaves the process in the "C" locale (ASCII default encoding); model.json is read as
    UTF-8 regardless."""
    import locale

    meta = _meta(pack)
    meta["labels"][0]["name"] = "Rückenmark"
    (pack / "model.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    saved = locale.setlocale(locale.LC_ALL)
    locale.setlocale(locale.LC_ALL, "C")
    try:
        assert load_model_pack(pack).labels[0].name == "Rückenmark"
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def test_absurd_architecture_is_refused_before_any_network_is_built(pack):
    """A model.json asking for a 10^5-wide network would need terabytes: refused by its numbers alone."""
    meta = _meta(pack)
    meta["architecture"]["backbone"]["features"] = [100000, 100000, 100000, 100000, 100000, 100000]
    _save_meta(pack, meta)
    with pytest.raises(ModelPackError) as err:
        load_model_pack(pack)
    assert "architecture.backbone.features [100000, 100000, 100000, 100000, 1000... must be a list of integers, " \
           "each from 1 to 4096" in str(err.value)  # fmt: skip


def test_architecture_unlike_its_weights_is_refused_without_allocating_it(pack):
    """Within the bounds but unlike the weights file: compared with the file's header on PyTorch's meta device (no
    memory) and refused."""
    meta = _meta(pack)
    meta["architecture"]["backbone"]["features"] = [4000, 4000, 4000, 4000, 4000, 4000]
    _save_meta(pack, meta)
    with pytest.raises(ModelPackError) as err:
        load_model_pack(pack).build()
    text = str(err.value)
    assert "weights do not match the architecture in model.json" in text
    assert "backbone.net.conv_0.conv_0.conv.weight (8, 1, 3, 3) ≠ (4000, 1, 3, 3)" in text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m["architecture"]["features"].update(expert_layers=50000),
            "architecture.features.expert_layers 50000 must be an integer from 1 to 8",
        ),
        (
            lambda m: m["architecture"]["point_head"].update(hidden=[64] * 10**5),
            "architecture.point_head.hidden [64, 64, 64, 64, 64, 64, 64, 64, 64, ... must be a list of integers",
        ),
        (
            lambda m: m["architecture"]["point_head"].update(test_points=-1),
            "architecture.point_head.test_points -1 must be an integer from 1 to 1.04858e+06",
        ),
        (
            lambda m: m["architecture"]["point_head"].update(test_points="2048"),
            "architecture.point_head.test_points '2048' must be an integer",
        ),
        (
            lambda m: m["architecture"]["point_head"]["pe"].update(trainable="yes"),
            "architecture.point_head.pe.trainable 'yes' must be true or false",
        ),
        (
            lambda m: m["architecture"]["features"]["routing"].update(alpha=float("nan")),
            "architecture.features.routing.alpha nan must be a number from 0 to 1",
        ),
        (lambda m: m.update(inference={"batch_size": "8"}), "inference.batch_size '8' must be an integer from 1"),
        (lambda m: m.update(inference={"batch_size": 0}), "inference.batch_size 0 must be an integer from 1 to 1024"),
        (lambda m: m.update(inference={"gating_stride": 0}), "inference.gating_stride 0 must be an integer from 1"),
        (lambda m: m.update(inference={"gating_stride": 2.5}), "inference.gating_stride 2.5 must be an integer"),
        (lambda m: m.update(inference={"sw_overlap": 1.5}), "inference.sw_overlap 1.5 must be a number from 0 to"),
        (lambda m: m.update(inference={"roi_size": [96, -1, 96]}), "inference.roi_size [96, -1, 96] must be a list"),
        (lambda m: m.update(inference=[8]), "inference must be an object, not list"),
    ],
)
def test_model_json_settings_out_of_bounds_are_refused_at_load(pack, edit, message):
    meta = _meta(pack)
    if meta["architecture"].get("features") is None:
        pytest.skip("the fixture pack has no point head")
    edit(meta)
    _save_meta(pack, meta)
    with pytest.raises(ModelPackError) as err:
        load_model_pack(pack)
    assert message in str(err.value)
    assert str(err.value).startswith(str(pack / "model.json"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[" * 100000 + "]" * 100000, "not a model description", id="beyond-the-parser-stack"),
        pytest.param('{"a": ' * 40 + "1" + "}" * 40, "nested deeper than 32 levels", id="40-levels"),
        pytest.param('{"schema_version": 1' + "0" * 5000 + "}", "not a model description", id="5001-digits"),
    ],
)
def test_hostile_json_structure_is_a_model_pack_error(pack, text, message):
    (pack / "model.json").write_text(text, encoding="utf-8")
    with pytest.raises(ModelPackError, match=message):
        load_model_pack(pack)


def test_architecture_that_cannot_be_built(pack):
    meta = _meta(pack)
    meta["architecture"]["backbone"]["features"] = [8, 16]
    _save_meta(pack, meta)
    with pytest.raises(ModelPackError, match=r"the architecture in model.json cannot be built \(ValueError: UNet"):
        load_model_pack(pack).build()


def test_weights_with_nan_are_refused(pack):
    from safetensors.torch import load_file, save_file

    state = load_file(str(pack / "model.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(pack / "model.safetensors"))
    _rehash(pack)
    with pytest.raises(ModelPackError) as err:
        load_model_pack(pack).build()
    assert str(err.value) == (
        f"{pack / 'model.safetensors'}: 1 weight tensor(s) hold NaN or infinite values (['{key}']); the model was "
        f"saved from a diverged training run. Use another model pack."
    )
    assert torch.isnan(state[key]).any()
