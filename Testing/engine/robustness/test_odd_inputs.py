"""Odd but legitimate inputs, end to end with a trained model: they are segmented (same labels as the plain float32
volume where the values are the same), and what is odd about them is in ``result.messages``."""

from __future__ import annotations

import numpy as np
import pytest
from morse.geometry import AxisReorder, ijk_to_ras_from_lps
from morse.inference.pipeline import segment_volume
from morse.metrics import compute_metrics
from morse.modelpack import load_model_pack
from synthetic import LPS_1MM, ring_slices

NO_MAPS = {"gating": False, "uncertainty": False}


@pytest.fixture(scope="module")
def pack(trained_rings):
    return load_model_pack(trained_rings[1])


@pytest.fixture(scope="module")
def rings():
    return ring_slices(4, seed=13)


@pytest.fixture(scope="module")
def reference(pack, rings):
    return segment_volume(rings[0], LPS_1MM, model=pack, device="cpu", **NO_MAPS)


@pytest.fixture(scope="module")
def pack_0_100(trained_rings, tmp_path_factory):
    """The trained pack with its intensity window stretched to 0..100 (for images stored as integers 0..100)."""
    import json
    import shutil

    folder = shutil.copytree(trained_rings[1], tmp_path_factory.mktemp("window") / "pack")
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    meta["preprocessing"]["intensity"]["high"] = 100.0
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    return load_model_pack(folder)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.uint8, np.int8, np.uint16, np.int32, np.uint32])
def test_voxel_types_are_converted_sensibly(pack, pack_0_100, rings, dtype):
    """Integer volumes: the ring image as integers 0..100 (int8 holds them) gives the same labels as the same values
    in float32; float64/float16: the same labels as their values in float32."""
    if np.issubdtype(dtype, np.integer):
        model, values = pack_0_100, np.clip(np.round(rings[0] * 100), 0, 100)
    else:
        model, values = pack, rings[0].astype(dtype)
    expected = segment_volume(values.astype(np.float32), LPS_1MM, model=model, device="cpu", **NO_MAPS)
    result = segment_volume(values.astype(dtype), LPS_1MM, model=model, device="cpu", **NO_MAPS)
    assert np.array_equal(result.labels, expected.labels) and result.messages == []
    assert expected.labels.any()


def test_constant_image_gives_background_and_a_warning(pack):
    result = segment_volume(np.full((2, 40, 40), 0.1, np.float32), LPS_1MM, model=pack, device="cpu")
    assert result.messages == [
        "every voxel has the same value (0.1): there is nothing to segment, expect an empty result"
    ]
    assert result.labels.shape == (2, 40, 40) and not result.labels.any()
    assert np.isfinite(result.uncertainty).all() and np.isfinite(result.gating).all()


def test_single_slice_and_tiny_volumes(pack, rings, reference):
    one = segment_volume(rings[0][1:2], LPS_1MM, model=pack, device="cpu", **NO_MAPS)
    assert np.array_equal(one.labels[0], reference.labels[1])  # a slice is segmented on its own by a 2D model
    tiny = segment_volume(np.full((1, 1, 1), 0.5, np.float32), LPS_1MM, model=pack, device="cpu")
    assert tiny.labels.shape == (1, 1, 1) and tiny.gating.shape == (5, 1, 1, 1)


def test_partly_nan_volume_is_segmented_like_its_repaired_copy(pack, rings):
    image = rings[0].copy()
    image[2, 10:20, 10:20] = np.nan
    result = segment_volume(image, LPS_1MM, model=pack, device="cpu", **NO_MAPS)
    fill = float(np.nanmin(image))
    assert result.messages == [
        f"100 NaN/infinite voxels were treated as {fill:g} (the lowest finite value; 0.61 % of the volume)"
    ]
    repaired = segment_volume(np.nan_to_num(image, nan=fill), LPS_1MM, model=pack, device="cpu", **NO_MAPS)
    assert np.array_equal(result.labels, repaired.labels)


@pytest.mark.parametrize(("spacing", "factor"), [(0.1, "10× coarser"), (10.0, "10× finer")])
def test_extreme_in_plane_spacing_works_with_a_warning(pack, spacing, factor):
    shape = (2, 64, 64) if spacing < 1 else (2, 12, 12)
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (spacing, spacing, 1.0), np.eye(3).ravel())
    result = segment_volume(np.random.default_rng(0).random(shape, np.float32), m, model=pack, device="cpu")
    assert result.labels.shape == shape and result.gating.shape == (5, *shape)
    assert [msg.split(": ")[0] for msg in result.messages] == [
        f"voxel size {spacing:g} mm along the row (y) axis is resampled to the model's 1 mm ({factor})",
        f"voxel size {spacing:g} mm along the column (x) axis is resampled to the model's 1 mm ({factor})",
    ]


def test_thick_slices_need_no_warning_for_a_2d_model(pack, rings, reference):
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 10.0), np.eye(3).ravel())
    result = segment_volume(rings[0], m, model=pack, device="cpu", **NO_MAPS)
    assert result.messages == [] and np.array_equal(result.labels, reference.labels)


def test_left_handed_and_ras_storage_give_the_same_labels(pack, rings, reference):
    """One flipped axis (a left-handed IJK frame, determinant -1) and RAS storage: the same physical voxels get the
    same labels as the LPS original."""
    image, label = rings
    for flip in [(False, False, True), (False, True, True), (True, False, False)]:
        layout = AxisReorder(transpose=(0, 1, 2), flip=flip, shape=image.shape)
        m = layout.reoriented_ijk_to_ras(LPS_1MM)
        stored = np.ascontiguousarray(layout.apply(image))
        result = segment_volume(stored, m, model=pack, device="cpu", **NO_MAPS)
        assert np.array_equal(layout.invert(result.labels), reference.labels), flip
    scores = compute_metrics(reference.labels, label, {1: "disc", 2: "ring"}, units="voxel")
    assert scores.mean["dsc"] > 0.9


def test_3d_model_on_a_strongly_anisotropic_volume(pack3d):
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 10.0), np.eye(3).ravel())
    volume = np.random.default_rng(2).random((5, 40, 40)).astype(np.float32)
    result = segment_volume(volume, m, model=pack3d, device="cpu", gating=False)
    assert result.labels.shape == (5, 40, 40) and result.uncertainty.shape == (5, 40, 40)
    assert result.messages == [
        "voxel size 10 mm along the slice (z) axis is resampled to the model's 2 mm (5× finer): segmentation quality "
        "may suffer"
    ]


def test_segment_command_names_the_file_in_notes_and_errors(trained_rings, tmp_path, capsys):
    import SimpleITK as sitk  # noqa: N813
    from morse.cli import main

    model = ["--model", str(trained_rings[1]), "--device", "cpu"]
    blank = tmp_path / "blank.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 32, 32), 0.1, np.float32)), str(blank))
    assert main(["segment", str(blank), "-o", str(tmp_path / "out"), *model]) == 0
    assert "note: every voxel has the same value (0.1): there is nothing to segment" in capsys.readouterr().out
    colour = tmp_path / "colour.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 8, 8, 3), np.uint8), isVector=True), str(colour))
    assert main(["segment", str(colour), "-o", str(tmp_path / "out"), *model]) == 2
    assert capsys.readouterr().err.startswith(f"error: {colour}: 3 values per voxel (array of shape (2, 8, 8, 3)")
