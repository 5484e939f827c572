"""Geometry: exact reorientation by permutation/flip for every orientation, oblique matrices, and image I/O."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from morse.geometry import AxisReorder, ijk_to_ras_from_lps, lps_geometry, orientation_code, spacing_ijk
from morse.imageio import read_image, write_image


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _all_orientations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            d = np.zeros((3, 3))
            for a, (world, sign) in enumerate(zip(perm, signs)):
                d[world, a] = sign
            yield d


def _ras_of(m, k, j, i):
    return (m @ np.array([i, j, k, 1.0]))[:3]


@pytest.mark.parametrize("direction", list(_all_orientations()), ids=lambda d: str(d.astype(int).tolist()))
def test_reorder_is_exact_for_all_48_orientations(direction):
    oblique = _rotation(0.2, -0.15, 0.1) @ direction  # oblique, still closest to `direction`
    m = ijk_to_ras_from_lps((10.0, -20.0, 5.0), (0.8, 1.1, 2.5), oblique.ravel())
    shape = (4, 5, 6)
    volume = np.arange(np.prod(shape)).reshape(shape)
    reorder = AxisReorder.to_orientation(m, shape, "LPS")
    out = reorder.apply(volume)
    m2 = reorder.reoriented_ijk_to_ras(m)
    assert orientation_code(m2) == "LPS"
    last = [n - 1 for n in out.shape]
    for k, j, i in [(0, 0, 0), tuple(last), (1, 2, 3), (last[0], 0, last[2])]:
        ((kk, jj, ii),) = np.argwhere(volume == out[k, j, i])
        assert np.allclose(_ras_of(m2, k, j, i), _ras_of(m, kk, jj, ii))  # same voxel, same place
    assert np.array_equal(reorder.invert(out), volume)
    assert np.array_equal(reorder.invert(reorder.apply(np.stack([volume, volume + 1])))[1], volume + 1)


def test_orientation_codes_and_spacing():
    lps = ijk_to_ras_from_lps((0, 0, 0), (1, 2, 3), np.eye(3).ravel())
    assert orientation_code(lps) == "LPS"
    assert np.allclose(spacing_ijk(lps), [1, 2, 3])
    ras_dir = np.diag([-1.0, -1.0, 1.0])
    assert orientation_code(ijk_to_ras_from_lps((0, 0, 0), (1, 1, 1), ras_dir.ravel())) == "RAS"
    with pytest.raises(ValueError):
        AxisReorder.to_orientation(lps, (2, 2, 2), "LPX")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_write_read_round_trip_keeps_oblique_lps_geometry(tmp_path, suffix):
    direction = _rotation(0.3, 0.1, -0.2) @ np.diag([1.0, -1.0, 1.0])  # left-handed, oblique
    m = ijk_to_ras_from_lps((-100.0, 50.0, 12.5), (0.7, 0.9, 3.0), direction.ravel())
    volume = np.random.default_rng(0).integers(-1000, 1000, (5, 6, 7)).astype(np.int16)
    path = write_image(tmp_path / f"v{suffix}", volume, m)
    back = read_image(path)
    assert np.array_equal(back.array, volume)
    assert np.allclose(back.ijk_to_ras, m, atol=1e-4)
    _, spacing, direction9 = lps_geometry(m)
    assert np.allclose(spacing, (0.7, 0.9, 3.0))
    assert np.allclose(np.array(direction9).reshape(3, 3), direction, atol=1e-9)
