"""Reading what a PACS export or a colleague's script produces: every unusable file is refused by
:func:`morse.imageio.read_image` with what was wrong and what to do, before any voxel memory is allocated."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from morse.errors import InputError
from morse.imageio import read_image
from morse.inference.validation import validate_volume


def _write(path, array, is_vector=False):
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=is_vector), str(path))
    return path


def test_missing_folder_device_and_permissions(tmp_path):
    with pytest.raises(InputError, match=r"nope\.nii\.gz: no such file or folder"):
        read_image(tmp_path / "nope.nii.gz")
    fifo = tmp_path / "pipe.nii"
    os.mkfifo(fifo)  # a reader would block forever on it
    with pytest.raises(InputError, match=r"not a regular file or folder \(a device or pipe\?\)"):
        read_image(fifo)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="a folder with no DICOM series in it; give an image file or a DICOM folder"):
        read_image(empty)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = _write(tmp_path / "ct.nrrd", np.zeros((2, 3, 4), np.int16))
    path.chmod(0)
    with pytest.raises(InputError, match=r"not readable \(check the file permissions\)"):
        read_image(path)


def test_unsupported_or_garbage_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_image(text)
    assert "could not be read as an image" in str(err.value)
    assert str(err.value).endswith(
        "Supported: NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha/.mhd) and DICOM series folders."
    )
    fake = tmp_path / "scan.nii.gz"
    fake.write_bytes(gzip.compress(b"\x00" * 100))
    with pytest.raises(InputError, match="could not be read as an image"):
        read_image(fake)


def test_2d_image_is_refused(tmp_path):
    path = _write(tmp_path / "slice.png", np.zeros((30, 40), np.uint8))
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value) == (
        f"{path}: a 2D image (40×30 pixels); MORSE segments volumes (NIfTI, NRRD, MHA, DICOM series). "
        f"Save the slice as a one-slice 3D volume: 2D models segment single slices."
    )


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
def test_4d_with_one_time_point_is_squeezed_and_keeps_its_geometry(tmp_path, suffix):
    vol = sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5))
    vol.SetSpacing((0.5, 0.7, 2.5))
    vol.SetOrigin((10.0, -20.0, 30.0))
    path = tmp_path / f"t1{suffix}"
    sitk.WriteImage(sitk.JoinSeries([vol]), str(path))
    image = read_image(path)
    assert image.array.shape == (3, 4, 5) and np.array_equal(image.array, np.arange(60).reshape(3, 4, 5))
    assert np.allclose(np.linalg.norm(image.ijk_to_ras[:3, :3], axis=0), (0.5, 0.7, 2.5))
    assert np.allclose(image.ijk_to_ras[:3, 3], (-10.0, 20.0, 30.0))  # LPS origin → RAS


def test_time_series_is_refused(tmp_path):
    vol = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16))
    path = tmp_path / "dce.nrrd"
    sitk.WriteImage(sitk.JoinSeries([vol] * 6), str(path))
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value) == (
        f"{path}: a 4D image (5×4×3×6: 6 volumes of 5×4×3, e.g. a time series or several echoes). MORSE segments one "
        f"3D volume: extract one first (in 3D Slicer: load it as a sequence and save the frame you want; in Python: "
        f"SimpleITK.Extract)."
    )


def test_rgb_volume_is_read_then_refused_as_input(tmp_path):
    path = _write(tmp_path / "colour.nrrd", np.zeros((3, 4, 5, 3), np.uint8), is_vector=True)
    image = read_image(path)  # outputs such as gating.nii.gz are vector images too: reading them is fine
    assert image.array.shape == (3, 4, 5, 3)
    with pytest.raises(InputError) as err:
        validate_volume(image.array, image.ijk_to_ras, name=str(path))
    assert str(err.value) == (
        f"{path}: 3 values per voxel (array of shape (3, 4, 5, 3): RGB colour, a vector field, several echoes or time "
        f"points). MORSE segments one scalar 3D volume: extract a single component first (in 3D Slicer: Vector to "
        f"Scalar Volume; for a time series, one frame of the sequence)."
    )


def test_complex_voxels_are_refused(tmp_path):
    path = _write(tmp_path / "kspace.nrrd", np.zeros((2, 3, 4), np.complex64))
    with pytest.raises(InputError, match=r"complex-valued voxels \(complex of 32-bit float\); .* save the magnitude"):
        read_image(path)


def _nifti_with_dims(tmp_path, name, dims, compress):
    """A small valid NIfTI whose header is edited to declare ``dims`` (i, j, k) voxels of int16."""
    small = tmp_path / "small.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(small))
    data = bytearray(small.read_bytes())
    struct.pack_into("<8h", data, 40, 3, *dims, 1, 1, 1, 1)  # dim[0..7] at byte 40 of the NIfTI-1 header
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(data)) if compress else bytes(data))
    return path, small.stat().st_size


def test_header_declaring_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    path, size = _nifti_with_dims(tmp_path, "big.nii", (30000, 30000, 30000), compress=False)
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value) == (
        f"{path}: the header declares 30000×30000×30000 voxels (54 TB) but the file ({size} bytes) cannot hold them: "
        f"it is truncated or its header is corrupt. Re-export or re-download it."
    )
    gz, _ = _nifti_with_dims(tmp_path, "big.nii.gz", (2000, 2000, 1000), compress=True)  # 8 GB from a few bytes
    with pytest.raises(InputError, match=r"declares 2000×2000×1000 voxels \(8 GB\) but the file \(\d+ bytes\)"):
        read_image(gz)


def _scaled_uint8_nifti(tmp_path, name, values, slope, intercept, compress=False):
    """A uint8 NIfTI with ``scl_slope``/``scl_inter`` set (bytes 112 and 116 of the NIfTI-1 header)."""
    plain = _write(tmp_path / "plain-u8.nii", values)
    data = bytearray(plain.read_bytes())
    struct.pack_into("<2f", data, 112, slope, intercept)
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(data)) if compress else bytes(data))
    return path


def test_a_scaled_uint8_nifti_is_read_with_its_slope_not_refused_as_truncated(tmp_path):
    # ITK reports such a file as float voxels (4 bytes each) although it stores 1 byte per voxel
    values = (np.arange(30 * 40 * 50) % 200).astype(np.uint8).reshape(30, 40, 50)
    for name, compress in (("ct-u8.nii", False), ("ct-u8.nii.gz", True)):
        path = _scaled_uint8_nifti(tmp_path, name, values, 2.0, -10.0, compress)
        image = read_image(path)
        assert image.array.dtype == np.float32
        assert np.array_equal(image.array, values.astype(np.float32) * 2 - 10)
    cut = tmp_path / "cut-u8.nii"
    cut.write_bytes((tmp_path / "ct-u8.nii").read_bytes()[: 352 + values.size // 2])
    with pytest.raises(InputError, match=r"declares 50×40×30 voxels \(0\.06 MB\) but the file \(30352 bytes\)"):
        read_image(cut)


def test_header_declaring_more_than_memory_is_refused(tmp_path, monkeypatch):
    import morse.imageio as imageio

    path = _write(tmp_path / "ct.nrrd", np.zeros((20, 30, 40), np.int16))
    monkeypatch.setattr(imageio, "available_memory", lambda: 10_000)
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value) == (
        f"{path}: the header declares 40×30×20 voxels (0.048 MB as stored), more than the 0.01 MB of memory "
        f"available. Crop or down-sample the volume first (or check the header: it may be corrupt)."
    )


def test_dicom_series_complete_missing_or_repeated_slices(tmp_path, dicom_series):
    image = (np.arange(6 * 8 * 8).reshape(6, 8, 8) % 97).astype(np.int16)
    good = dicom_series(tmp_path / "good", image, [2.5 * k for k in range(6)])
    loaded = read_image(good)
    assert loaded.array.shape == (6, 8, 8) and np.array_equal(loaded.array, image)
    assert np.isclose(np.linalg.norm(loaded.ijk_to_ras[:3, 2]), 2.5)
    gap = dicom_series(tmp_path / "gap", image[[0, 1, 2, 4, 5]], [0.0, 2.5, 5.0, 10.0, 12.5])
    with pytest.raises(InputError) as err:
        read_image(gap)
    assert str(err.value) == (
        f"{gap}: the DICOM slices are not evenly spaced (a gap of 5 mm after slice 3 of 5, where the closest slices "
        f"are 2.5 mm apart): missing slices or mixed acquisitions. Give the complete series, or load it in 3D Slicer "
        f"(which resamples irregular series) and save it as a NRRD or NIfTI volume."
    )
    twice = dicom_series(tmp_path / "twice", image[[0, 1, 1, 2]], [0.0, 2.5, 2.5, 5.0])
    with pytest.raises(InputError, match="2 slices of the DICOM series lie at the same position"):
        read_image(twice)
    mixed = tmp_path / "mixed"
    dicom_series(mixed, image[:3], [0.0, 2.5, 5.0])
    dicom_series(mixed / "other", image[:3], [0.0, 2.5, 5.0], series_uid="9.9.9")
    for f in (mixed / "other").iterdir():
        f.rename(mixed / f"b{f.name}")
    (mixed / "other").rmdir()
    with pytest.raises(InputError, match="holds 2 DICOM series; put each series in its own folder"):
        read_image(mixed)


def test_datasets_read_dicom_with_the_same_rules(tmp_path, dicom_series):
    """The dataset reader applies the checks of :func:`read_image`: training data passes exactly what ``morse segment``
    accepts, and a folder with several series is refused, naming them, instead of one being picked."""
    from morse.data.readers import read_image as read_dataset_image
    from morse.errors import DataError

    image = (np.arange(3 * 8 * 8).reshape(3, 8, 8) % 97).astype(np.int16)
    good = dicom_series(tmp_path / "good", image, [0.0, 2.5, 5.0])
    assert np.array_equal(sitk.GetArrayFromImage(read_dataset_image(good)), read_image(good).array)
    mixed = tmp_path / "mixed"
    dicom_series(mixed, image, [0.0, 2.5, 5.0])
    dicom_series(mixed / "other", image[:2], [0.0, 2.5], series_uid="9.9.9")
    for f in (mixed / "other").iterdir():
        f.rename(mixed / f"b{f.name}")
    (mixed / "other").rmdir()
    with pytest.raises(InputError) as inference_error:
        read_image(mixed)
    with pytest.raises(DataError) as data_error:
        read_dataset_image(mixed)
    assert str(data_error.value) == str(inference_error.value)
    assert "holds 2 DICOM series; put each series in its own folder and give that folder" in str(data_error.value)
    assert "9.9.9 (2 files)" in str(data_error.value) and "(3 files)" in str(data_error.value)
