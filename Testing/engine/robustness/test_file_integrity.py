"""Damaged image files are errors, never silently zero-filled scans: a compressed stream that ends early or fails its
checksum, a NIfTI cut short, NaN/Inf voxels (which ITK's NIfTI reader turns into 0), and header files whose data file
would block the reader."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from morse.errors import InputError
from morse.geometry import ijk_to_ras_from_lps
from morse.imageio import read_image, write_image

M = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3).ravel())


def _ct(path, dtype=np.int16):
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1000, size=(6, 40, 40)).astype(dtype)
    return write_image(path, array, M), array


def test_intact_files_read_unchanged(tmp_path):
    for name in ("ct.nii.gz", "ct.nii", "ct.nrrd"):
        path, array = _ct(tmp_path / name)
        np.testing.assert_array_equal(read_image(path).array, array)
    path, array = _ct(tmp_path / "f.nii.gz", np.float32)
    np.testing.assert_array_equal(read_image(path).array, array)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_gzip_is_an_error(tmp_path, keep):
    path, _ = _ct(tmp_path / "ct.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="the file is damaged"):
        read_image(path)


def test_bit_flip_in_gzip_is_an_error(tmp_path):
    path, _ = _ct(tmp_path / "ct.nii.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="the file is damaged"):
        read_image(path)


def test_uncompressed_nifti_cut_short_is_an_error(tmp_path):
    path, _ = _ct(tmp_path / "ct.nii")
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(InputError, match="it is truncated or its header is corrupt"):
        read_image(path)


def test_a_gzip_that_only_wraps_a_short_nifti_is_an_error(tmp_path):
    path, _ = _ct(tmp_path / "ct.nii")
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(path.read_bytes()[:-500]))  # a valid stream of a cut file
    with pytest.raises(InputError, match=r"cut short \(\d+ of \d+ bytes"):
        read_image(short)


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_nifti_voxels_are_an_error(tmp_path, name, value):
    array = np.zeros((4, 16, 16), np.float32)
    array[2, 3, 4] = value
    array[3, 0, 0] = value
    path = write_image(tmp_path / name, array, M)
    with pytest.raises(InputError, match=r"^.*: 2 voxels are NaN or infinite"):
        read_image(path)


def test_all_nan_nifti_says_nan_not_constant(tmp_path):
    path = write_image(tmp_path / "nan.nii.gz", np.full((3, 8, 8), np.nan, np.float64), M)
    with pytest.raises(InputError, match="192 voxels are NaN or infinite"):
        read_image(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
@pytest.mark.parametrize("kind", ["nhdr", "mhd"])
def test_header_whose_data_file_is_a_pipe_is_refused_without_blocking(tmp_path, kind):
    os.mkfifo(tmp_path / "data.raw")
    header = tmp_path / f"ct.{kind}"
    if kind == "nhdr":
        header.write_text(
            "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\nendian: little\ndata file: data.raw\n\n",
            encoding="latin-1",
        )
    else:
        header.write_text(
            "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\nElementDataFile = data.raw\n",
            encoding="latin-1",
        )
    with pytest.raises(InputError, match="is not a regular file"):
        read_image(header)


@pytest.mark.parametrize("name", ["scaled.nii", "scaled.nii.gz"])
def test_scaled_multi_component_nifti_is_refused_before_itk_aborts(tmp_path, name):
    """SimpleITK 2.5 aborts the whole process (a heap overrun) reading integer vector NIfTI with scl_slope ≠ 1."""
    import struct

    from morse.nifti_writer import nifti_header

    header = bytearray(nifti_header((4, 5, 6), np.uint8, np.eye(4), components=3))
    struct.pack_into("<f", header, 112, 1 / 255)  # scl_slope
    data = bytes(header) + np.ones((3, 4, 5, 6), np.uint8).tobytes()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(InputError, match=r"3 values per voxel and an intensity scale \(scl_slope 0.00392157"):
        read_image(path)
