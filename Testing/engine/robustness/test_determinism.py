"""Determinism: the same input, model and device give bit-identical outputs twice in a row (CPU), also after the
cached network is rebuilt from disk; training records its seed before the first iteration."""

from __future__ import annotations

import numpy as np
import yaml
from morse.cli import main
from morse.geometry import ijk_to_ras_from_lps
from morse.imageio import read_image, write_image
from morse.inference.outputs import OUTPUT_FILES
from morse.inference.pipeline import release_models, segment_volume
from synthetic import LABELS, LPS_1MM, ring_slices, ring_volume, tiny_experiment

ARRAYS = ("labels", "coarse_labels", "rectified", "uncertainty", "gating", "dominant_expert")


def _same(a, b) -> list[str]:
    return [name for name in ARRAYS if not np.array_equal(getattr(a, name), getattr(b, name))]


def test_2d_twice_and_after_reloading_the_model(trained_rings):
    image, _ = ring_slices(6, seed=17)
    first = segment_volume(image, LPS_1MM, model=trained_rings[1], device="cpu")
    second = segment_volume(image, LPS_1MM, model=trained_rings[1], device="cpu")
    release_models()  # the next run builds the network again from model.safetensors
    third = segment_volume(image, LPS_1MM, model=trained_rings[1], device="cpu")
    assert _same(first, second) == [] and _same(first, third) == []
    assert first.labels.any() and first.rectified.any()


def test_3d_twice(pack3d):
    volume = np.random.default_rng(4).random((40, 36, 36)).astype(np.float32)
    m = np.diag([-2.0, -2.0, 2.0, 1.0])
    first = segment_volume(volume, m, model=pack3d, device="cpu")
    release_models()
    second = segment_volume(volume, m, model=pack3d, device="cpu")
    assert _same(first, second) == []


def test_segment_command_twice_writes_the_same_images(trained_rings, tmp_path):
    m = ijk_to_ras_from_lps((5.0, -3.0, 12.0), (0.9, 0.9, 2.5), np.eye(3).ravel())
    path = write_image(tmp_path / "ct.nii.gz", ring_slices(4, seed=19)[0], m)
    for out in ("a", "b"):
        args = ["segment", str(path), "-o", str(tmp_path / out), "--model", str(trained_rings[1]), "--device", "cpu"]
        assert main(args) == 0
    for name in OUTPUT_FILES:
        if name.endswith((".nii.gz", ".nrrd")):
            a, b = read_image(tmp_path / "a" / "ct" / name), read_image(tmp_path / "b" / "ct" / name)
            assert np.array_equal(a.array, b.array) and np.array_equal(a.ijk_to_ras, b.ijk_to_ras), name
    png = [(tmp_path / out / "ct" / "preview.png").read_bytes() for out in ("a", "b")]
    assert png[0] == png[1]


def test_training_records_its_seed_before_the_first_iteration(tmp_path):
    cfg = tiny_experiment(iterations=4)
    cfg.train.seed = 31337
    cfg.train.batch_size = 2
    from morse.train.trainer import Trainer

    result = Trainer(cfg, tmp_path / "run", [ring_volume(4, seed=1)], LABELS, device="cpu").run(until=1)
    assert result.pack_dir is None  # stopped early: no model pack yet, but the settings are on record
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))
    assert recorded["train"]["seed"] == 31337 and recorded["name"] == "rings"
