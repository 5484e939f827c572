"""Input checks without a model: every bad array/matrix is refused with what was wrong and what to do; what can be
segmented is converted sensibly and the oddities are reported."""

from __future__ import annotations

import numpy as np
import pytest
from morse.config import IntensityConfig, PreprocessingConfig
from morse.errors import InputError
from morse.geometry import ijk_to_ras_from_lps
from morse.inference.validation import (
    MAX_MODEL_AXIS,
    check_intensities,
    check_model_grid,
    validate_volume,
)

LPS_1MM = np.diag([-1.0, -1.0, 1.0, 1.0])


def _matrix(spacing_ijk, direction=None):
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    return ijk_to_ras_from_lps((0.0, 0.0, 0.0), spacing_ijk, direction.ravel())


# -- dimensionality and components ------------------------------------------------------------------------------------


def test_2d_array_is_refused_with_advice():
    with pytest.raises(InputError) as err:
        validate_volume(np.zeros((64, 48), np.int16), LPS_1MM, name="slice.png")
    assert str(err.value) == (
        "slice.png: a 2D image of shape (64, 48); MORSE segments volumes. Give the slice as a one-slice 3D volume "
        "(shape (1, 64, 48)); 2D models segment single slices."
    )


@pytest.mark.parametrize("shape", [(4, 8, 8, 3), (4, 8, 8, 2), (3, 4, 8, 8)])
def test_multi_component_arrays_are_refused(shape):
    with pytest.raises(InputError, match=r"values per voxel .*extract a single component first"):
        validate_volume(np.zeros(shape, np.float32), LPS_1MM)


@pytest.mark.parametrize("shape", [(4, 8, 8, 1), (1, 4, 8, 8)])
def test_one_component_is_squeezed(shape):
    values = np.arange(4 * 8 * 8, dtype=np.float32).reshape(shape)
    out, messages = validate_volume(values, LPS_1MM)
    assert out.shape == (4, 8, 8) and messages == []
    assert np.array_equal(out, values.reshape(4, 8, 8))


@pytest.mark.parametrize("shape", [(0, 8, 8), (4, 0, 8), (4, 8, 0)])
def test_empty_volume_is_refused(shape):
    with pytest.raises(InputError, match=r"empty volume .*has no voxels"):
        validate_volume(np.zeros(shape, np.float32), LPS_1MM)


def test_5d_array_is_refused():
    with pytest.raises(InputError, match=r"a 5D array of shape \(2, 2, 4, 8, 8\); MORSE segments single 3D volumes"):
        validate_volume(np.zeros((2, 2, 4, 8, 8)), LPS_1MM)


# -- voxel types ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int64, np.float16, np.float64])
def test_integer_and_float_types_are_accepted_unchanged(dtype):
    values = (np.arange(2 * 6 * 5) % 100).reshape(2, 6, 5).astype(dtype)
    out, messages = validate_volume(values, LPS_1MM)
    assert out.dtype == dtype and np.array_equal(out, values) and messages == []


def test_bool_complex_and_text_are_refused():
    with pytest.raises(InputError, match="voxel type bool: this is a mask or label map, not a scan"):
        validate_volume(np.zeros((2, 4, 4), bool), LPS_1MM)
    with pytest.raises(InputError, match="voxel type complex64 is not a real number type"):
        validate_volume(np.zeros((2, 4, 4), np.complex64), LPS_1MM)
    with pytest.raises(InputError, match="is not a real number type"):
        validate_volume(np.full((2, 4, 4), "a"), LPS_1MM)


# -- values -----------------------------------------------------------------------------------------------------------


def test_some_nan_and_inf_are_replaced_and_reported():
    v = np.linspace(-5, 5, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    v[0, 0, 0], v[1, 2, 3], v[1, 3, 3] = np.nan, np.inf, -np.inf
    out, messages = validate_volume(v, LPS_1MM)
    finite_min = float(np.nanmin(np.where(np.isfinite(v), v, np.nan)))
    assert messages == [
        f"3 NaN/infinite voxels were treated as {finite_min:g} (the lowest finite value; 9.4 % of the volume)"
    ]
    assert np.isfinite(out).all() and out[0, 0, 0] == out[1, 2, 3] == out[1, 3, 3] == np.float32(finite_min)
    assert np.array_equal(out[np.isfinite(v)], v[np.isfinite(v)])


def test_float64_beyond_float32_range_counts_as_non_finite():
    v = np.arange(32, dtype=np.float64).reshape(2, 4, 4)
    v[0, 0, 0], v[1, 3, 3] = 1e300, -1e300  # would become ±inf in the float32 preprocessing
    out, messages = validate_volume(v, LPS_1MM)
    assert out[0, 0, 0] == out[1, 3, 3] == 1.0
    assert messages == ["2 NaN/infinite voxels were treated as 1 (the lowest finite value; 6.2 % of the volume)"]
    v[1, 3, 3] = 31.0
    _, messages = validate_volume(v, LPS_1MM)
    assert messages == ["1 NaN/infinite voxel was treated as 1 (the lowest finite value; 3.1 % of the volume)"]


def test_all_nan_is_refused():
    with pytest.raises(InputError, match="every voxel is NaN or infinite; the image holds no data"):
        validate_volume(np.full((2, 4, 4), np.inf, np.float32), LPS_1MM)


def test_constant_volume_is_accepted_with_a_warning():
    out, messages = validate_volume(np.full((3, 4, 4), -1024, np.int16), LPS_1MM)
    assert out.shape == (3, 4, 4) and messages == [
        "every voxel has the same value (-1024): there is nothing to segment, expect an empty result"
    ]


# -- the matrix -------------------------------------------------------------------------------------------------------


def test_bad_matrices_are_refused():
    v = np.zeros((2, 4, 4), np.float32)
    v[0, 0, 0] = 1
    m = LPS_1MM.copy()
    m[0, 3] = np.nan
    with pytest.raises(InputError, match=r"invalid IJK→RAS matrix \(must be a finite 4×4\)"):
        validate_volume(v, m)
    m = LPS_1MM.copy()
    m[:3, 1] = 0
    with pytest.raises(InputError, match="voxel size is zero along the j axis"):
        validate_volume(v, m)
    m = LPS_1MM.copy()
    m[:3, 2] = m[:3, 0] * 2  # k parallel to i
    with pytest.raises(InputError, match="its voxel axes are parallel"):
        validate_volume(v, m)
    with pytest.raises(InputError, match="must be a finite 4×4"):
        validate_volume(v, np.eye(3))


# -- intensities against the model ------------------------------------------------------------------------------------

CT = IntensityConfig(mode="window", low=-125.0, high=275.0)


def test_ct_model_warns_for_images_that_are_not_hounsfield_units():
    raw_ct = np.array([[[0, 1000, 1100, 4095]]], np.uint16)  # CT stored without its -1024 rescale intercept
    (msg,) = check_intensities(raw_ct, CT)
    assert msg.startswith("the image has no negative values (0..4095) but the model expects CT in Hounsfield units")
    assert "subtract 1024" in msg
    (msg,) = check_intensities(np.array([[[-3000.0, -2000.0]]]), CT)
    assert msg.startswith("every voxel (-3000..-2000) is below the model's intensity window (-125..275)")
    assert check_intensities(np.array([[[-1000.0, 40.0, 300.0]]]), CT) == []
    assert check_intensities(raw_ct, IntensityConfig(mode="zscore")) == []  # MR models: no absolute scale


# -- the model grid ---------------------------------------------------------------------------------------------------


def _pre(spacing=1.0):
    return PreprocessingConfig(orientation="LPS", spacing=[spacing] * 3)


def test_extreme_spacing_warns_then_refuses():
    fine = check_model_grid((4, 512, 512), _matrix((0.1, 0.1, 1.0)), _pre(1.0), spatial_dims=2)
    assert fine.model_shape == (4, 51, 51)
    assert fine.messages == [
        f"voxel size 0.1 mm along the {axis} axis is resampled to the model's 1 mm (10× coarser): segmentation "
        f"quality may suffer"
        for axis in ("row (y)", "column (x)")
    ]
    coarse = check_model_grid((4, 40, 40), _matrix((10.0, 10.0, 1.0)), _pre(1.0), spatial_dims=2)
    assert coarse.model_shape == (4, 400, 400) and "(10× finer)" in coarse.messages[0]
    with pytest.raises(InputError) as err:
        check_model_grid((4, 512, 512), _matrix((0.01, 0.01, 1.0)), _pre(1.0), spatial_dims=2)
    assert "voxel size 0.01 mm along the row (y) axis is resampled to the model's 1 mm (100× coarser)" in str(err.value)
    assert "the header is almost certainly wrong" in str(err.value)


def test_absurd_model_grids_are_refused_before_allocation():
    # 45 mm voxels on a 0.9 mm model: each in-plane axis would be 5000 model pixels (a 25-megapixel slice)
    with pytest.raises(InputError) as err:
        check_model_grid((2, 100, 100), _matrix((45.0, 45.0, 1.0)), _pre(0.9), spatial_dims=2)
    assert f"larger than MORSE allows ({MAX_MODEL_AXIS} per axis)" in str(err.value)
    assert "Crop the volume" in str(err.value)
    with pytest.raises(InputError, match=r"2\^30 in all"):
        check_model_grid((1100, 1100, 1100), _matrix((1.0, 1.0, 1.0)), _pre(1.0), spatial_dims=3)


def test_single_slice_suits_2d_models_but_not_3d_models():
    one = check_model_grid((1, 64, 64), _matrix((1.0, 1.0, 3.0)), _pre(1.0), spatial_dims=2)
    assert one.model_shape == (1, 64, 64) and one.messages == []
    with pytest.raises(InputError) as err:
        check_model_grid((3, 64, 64), _matrix((1.0, 1.0, 3.0)), _pre(2.0), spatial_dims=3)
    assert str(err.value) == (
        "input: too small for a 3D model: it covers 3 voxels × 3 mm = 9 mm along the slice (z) axis, and a 3D model "
        "needs at least 16 voxels of its 2 mm grid (32 mm) along every axis. Use a 2D model (it segments single "
        "slices) or a scan that covers more."
    )


def test_anisotropic_voxels_warn_only_on_the_axes_the_model_resamples():
    m = _matrix((0.7, 0.7, 10.0))
    assert check_model_grid((20, 64, 64), m, _pre(1.0), spatial_dims=2).messages == []  # 2D: slices stay slices
    grid3 = check_model_grid((20, 64, 64), m, _pre(2.0), spatial_dims=3)
    assert grid3.model_shape == (100, 22, 22)
    assert grid3.messages == [
        "voxel size 10 mm along the slice (z) axis is resampled to the model's 2 mm (5× finer): segmentation quality "
        "may suffer"
    ]


def test_grid_follows_the_reorientation_of_oblique_and_left_handed_matrices():
    """The spacing per model axis is that of the input axis the model's axis comes from, whatever the storage."""
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    # columns = LPS directions of i, j, k: i→P and j→S tilted by 20° about L, k→L (a tilted sagittal stack)
    sagittal = np.array([[0, 0, 1.0], [c, -s, 0], [s, c, 0]])
    grid = check_model_grid((30, 40, 50), _matrix((0.5, 2.0, 4.0), sagittal), _pre(1.0), spatial_dims=3)
    # model axes (z=S, y=P, x=L) come from (j, i, k): 40 × 2 mm, 50 × 0.5 mm, 30 × 4 mm
    assert grid.spacing == pytest.approx((2.0, 0.5, 4.0)) and grid.model_shape == (80, 25, 120)
    left_handed = np.diag([1.0, -1.0, 1.0])  # one flipped axis: determinant -1
    grid = check_model_grid((4, 30, 20), _matrix((0.8, 1.2, 3.0), left_handed), _pre(1.0), spatial_dims=2)
    assert grid.spacing == pytest.approx((3.0, 1.2, 0.8)) and grid.model_shape == (4, 36, 16)
