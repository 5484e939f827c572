"""Training cache: the model-grid arrays of an nnU-Net folder, read back without it, tied to its settings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from morse.errors import DataError
from morse.train.dataset import load_training_data
from synthetic import tiny_experiment


def _dataset(root):
    """Two CT-like cases (HU), 12 × 20 × 24 voxels at 0.7 × 0.8 × 3 mm, labels 0..2."""
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
            "numTraining": 2, "file_ending": ".nii.gz"}  # fmt: skip
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps(meta))
    rng = np.random.default_rng(5)
    for name in ("c1", "c2"):
        for folder, array in (
            ("imagesTr/%s_0000", rng.normal(40, 150, (12, 20, 24)).astype(np.int16)),
            ("labelsTr/%s", rng.integers(0, 3, (12, 20, 24)).astype(np.uint8)),
        ):
            img = sitk.GetImageFromArray(array)
            img.SetSpacing((0.7, 0.8, 3.0))
            sitk.WriteImage(img, str(root / f"{folder % name}.nii.gz"))
    return root


def _cfg(root):
    cfg = tiny_experiment(2)
    cfg.data.dataset = str(root)
    cfg.data.format = "nnunet"
    cfg.data.train_cases = ["c1", "c2"]
    cfg.preprocessing.spacing = [1.0, 1.0, 3.0]
    cfg.preprocessing.intensity.low, cfg.preprocessing.intensity.high = -125.0, 275.0
    return cfg


def test_cached_arrays_match_the_dataset_and_need_no_dataset(tmp_path):
    root = _dataset(tmp_path / "Dataset001_CT")
    cache = tmp_path / "cache" / "train.npz"
    direct, labels, provenance = load_training_data(_cfg(root))
    built, _, _ = load_training_data(_cfg(root), cache)
    assert cache.is_file()
    shutil.rmtree(root)  # from now on only the cache can provide the cases
    cached, cached_labels, cached_provenance = load_training_data(_cfg(root), cache)
    assert [v.name for v in cached] == ["c1", "c2"] and cached_provenance == provenance
    classes = [(i.value, i.name) for i in cached_labels]
    assert classes == [(i.value, i.name) for i in labels] == [(1, "liver"), (2, "spleen")]
    for a, b in zip(direct, cached):
        assert a.image.shape == b.image.shape == (12, 16, 17) and b.image.dtype == np.float32
        assert np.array_equal(a.label, b.label)
        # uint8 steps of the window: at most half a step (0.78 HU of 400) from the float arrays
        assert np.abs(a.image - b.image).max() <= 0.5 / 255 + 1e-6
        assert np.abs(a.image - b.image).max() > 0  # it is a quantised copy, not the same arrays
    assert [v.image.tobytes() for v in built] == [v.image.tobytes() for v in direct]  # building returns the originals


def test_a_cache_built_for_other_settings_or_damaged_is_refused(tmp_path):
    root = _dataset(tmp_path / "Dataset001_CT")
    cache = tmp_path / "train.npz"
    load_training_data(_cfg(root), cache)
    other = _cfg(root)
    other.preprocessing.spacing = [2.0, 2.0, 3.0]
    with pytest.raises(DataError, match=r"built for other settings \(preprocessing differ"):
        load_training_data(other, cache)
    fewer = _cfg(root)
    fewer.data.train_cases = ["c1"]
    with pytest.raises(DataError, match=r"train_cases differ"):
        load_training_data(fewer, cache)
    cache.write_bytes(cache.read_bytes()[:200])  # an interrupted copy
    with pytest.raises(DataError, match=r"cannot read the training cache .*delete it"):
        load_training_data(_cfg(root), cache)
