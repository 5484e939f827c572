"""Model choice: bundled packs, a pack from disk, and the messages a user sees for bad folders."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from MORSESegmentationLib import modelCatalog


@pytest.fixture
def bundled(tmp_path, tinyPack, monkeypatch):
    """A models folder holding the tiny pack as the default model and a second pack under its own id."""
    from morse.modelpack import DEFAULT_MODEL_ID

    shutil.copytree(tinyPack, tmp_path / DEFAULT_MODEL_ID)
    shutil.copytree(tinyPack, tmp_path / "other-model")
    (tmp_path / "not-a-pack").mkdir()
    monkeypatch.setenv("MORSE_MODELS", str(tmp_path))
    return tmp_path


def test_bundled_models_default_first(bundled):
    entries = modelCatalog.bundledModels()
    assert [e.key for e in entries] == ["default", "other-model"]
    assert entries[0].title.endswith("(default)")
    assert entries[0].labels == ["liver", "spleen", "aorta"]
    assert entries[0].version == "0.0.1"


def test_check_default_and_bundled_id(bundled):
    for key in ("default", "other-model"):
        check = modelCatalog.checkModel(key)
        assert check.ok, check.message
        assert "3 labels (liver, spleen, aorta)" in check.message


def test_check_folder_from_disk(tinyPack):
    check = modelCatalog.checkModel(str(tinyPack))
    assert check.ok and check.entry.path == tinyPack
    assert check.message.startswith("tiny-test 0.0.1")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: None, "no such model pack folder"),
        (lambda d: (d.mkdir(), (d / "model.pt").write_bytes(b"x")), "pickle file"),
        (lambda d: d.mkdir(), "no model.json"),
        (lambda d: (d.mkdir(), (d / "model.json").write_text("{not json")), "not valid JSON"),
    ],
)
def test_bad_folders_say_why(tmp_path, make, expected):
    folder = tmp_path / "pack"
    make(folder)
    check = modelCatalog.checkModel(str(folder))
    assert not check.ok
    assert expected in check.message


def test_pickle_file_is_refused_not_loaded(tmp_path):
    path = tmp_path / "checkpoint.pth"
    path.write_bytes(b"\x80\x04K\x01.")  # a valid pickle; never unpickled
    check = modelCatalog.checkModel(str(path))
    assert not check.ok and "unpickling can run arbitrary code" in check.message


def test_corrupted_weights_are_detected(tmp_path, tinyPack):
    pack = tmp_path / "pack"
    shutil.copytree(tinyPack, pack)
    weights = pack / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    check = modelCatalog.checkModel(str(pack))
    assert not check.ok and "checksum" in check.message


def test_empty_choice_and_missing_default(tmp_path, monkeypatch):
    assert not modelCatalog.checkModel("").ok
    monkeypatch.setenv("MORSE_MODELS", str(tmp_path))
    check = modelCatalog.checkModel("default")
    assert not check.ok and "Reinstall the MORSE extension" in check.message
    assert modelCatalog.bundledModels() == []


def test_full_check_without_torch_and_nothing_heavy_imported(tinyPack, tmp_path):
    """Before PyTorch is installed: the same full check (the engine's loader, the weights' checksum), in a Python
    where torch, safetensors and MONAI cannot be imported."""
    broken = tmp_path / "broken"
    shutil.copytree(tinyPack, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x00")  # same size, other content
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "safetensors", "monai"):
            sys.modules[name] = None  # importing any of them now raises ImportError
        sys.path.insert(0, {str(Path(modelCatalog.__file__).parents[1])!r})
        from MORSESegmentationLib import modelCatalog
        good = modelCatalog.checkModel({str(tinyPack)!r})
        bad = modelCatalog.checkModel({str(broken)!r})
        print("GOOD", good.ok, good.message)
        print("BAD", bad.ok, bad.message)
        print("DEFAULT", modelCatalog.bundledModels()[0].key == modelCatalog.DEFAULT_KEY)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["GOOD"].startswith("True tiny-test 0.0.1: 3 labels (liver, spleen, aorta)")
    assert lines["BAD"].startswith("False") and "do not match the checksum" in lines["BAD"]
    assert lines["DEFAULT"] == "True"
