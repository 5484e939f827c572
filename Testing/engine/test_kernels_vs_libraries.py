"""Kernels of our own that earn their place (memory or speed), each against the library call it stands in for.

- AxisReorder (exact reorientation as a view) against SimpleITK's DICOMOrient;
- resize_linear_into / resize_nearest_into (chunked, written into the output) against F.interpolate;
- upsampled_labels (argmax on the small map, then blend) against F.interpolate followed by argmax;
- point sampling (rows, with a per-cell function before blending, ragged batches) against F.grid_sample.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
import torch
import torch.nn.functional as F  # noqa: N812
from morse.geometry import AxisReorder, ijk_to_ras_from_lps
from morse.heads.point_ops import sample_points
from morse.inference.chunked import resize_linear_into, resize_nearest_into
from morse.inference.label_resize import upsampled_labels


@pytest.mark.parametrize("code", ["LPS", "RAS", "RAI", "PLI", "SAL"])
def test_axis_reorder_equals_dicom_orient(code):
    arr = np.random.default_rng(0).integers(0, 100, (5, 6, 7)).astype(np.int16)
    image = sitk.GetImageFromArray(arr)
    image.SetDirection([0, 0, -1, 1, 0, 0, 0, -1, 0])  # columns: i, j, k in LPS
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    ijk_to_ras = ijk_to_ras_from_lps(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    reorder = AxisReorder.to_orientation(ijk_to_ras, arr.shape, code)
    oriented = sitk.DICOMOrient(image, code)
    np.testing.assert_array_equal(reorder.apply(arr), sitk.GetArrayFromImage(oriented))
    expected = ijk_to_ras_from_lps(oriented.GetOrigin(), oriented.GetSpacing(), oriented.GetDirection())
    np.testing.assert_allclose(reorder.reoriented_ijk_to_ras(ijk_to_ras), expected, atol=1e-9)
    np.testing.assert_array_equal(reorder.invert(reorder.apply(arr)), arr)


@pytest.mark.parametrize("out_shape", [(23, 19, 30), (7, 9, 6), (11, 16, 16)])
def test_chunked_resizes_equal_interpolate(out_shape):
    src = torch.rand((11, 16, 16), generator=torch.Generator().manual_seed(1))
    dst = np.empty(out_shape, np.float32)
    resize_linear_into(dst, src, budget=4096)  # a tiny budget: many chunks
    expected = F.interpolate(src[None, None], size=out_shape, mode="trilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(dst, expected.numpy(), atol=2e-6)
    labels = (src * 9).to(torch.uint8)
    out = np.empty(out_shape, np.uint8)
    resize_nearest_into(out, labels, budget=4096)
    nearest = F.interpolate(labels[None, None].float(), size=out_shape, mode="nearest-exact")[0, 0]
    np.testing.assert_array_equal(out, nearest.to(torch.uint8).numpy())


def test_upsampled_labels_equal_interpolate_then_argmax():
    logits = torch.randn((2, 5, 12, 9), generator=torch.Generator().manual_seed(2))
    size = (31, 27)
    expected = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)
    ours = upsampled_labels(logits, size)
    # argmax of a blend can differ from the blend of argmaxes only where two classes tie within rounding
    agree = (torch.from_numpy(ours.astype(np.int64)) == expected).float().mean().item()
    assert ours.dtype == np.uint8 and ours.shape == (2, *size)
    assert agree >= 0.999


def _grid_sample(feature: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    grid = (coords * 2 - 1).reshape(coords.shape[0], 1, *([1] * (feature.dim() - 4)), coords.shape[1], -1)
    out = F.grid_sample(feature, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.flatten(2).transpose(1, 2)


@pytest.mark.parametrize("spatial", [(9, 13), (5, 7, 6)])
def test_point_sampling_with_a_cell_function_and_ragged_batch_equals_grid_sample(spatial):
    g = torch.Generator().manual_seed(3)
    feature = torch.randn((2, 4, *spatial), generator=g)
    coords = torch.rand((2, 50, len(spatial)), generator=g) * 1.2 - 0.1  # some outside [0, 1]: border clamping
    weight = torch.randn((4, 3), generator=g)
    affine = lambda rows: rows @ weight  # noqa: E731 (affine, so it commutes with blending)
    expected = _grid_sample(feature, coords) @ weight
    torch.testing.assert_close(sample_points(feature, coords, fn=affine), expected, atol=2e-5, rtol=1e-5)
    batch = torch.tensor([0] * 30 + [1] * 20)
    ragged_coords = torch.cat([coords[0, :30], coords[1, :20]])[None]
    ragged = sample_points(feature, ragged_coords, batch=batch)[0]
    torch.testing.assert_close(
        ragged,
        torch.cat([_grid_sample(feature, coords)[0, :30], _grid_sample(feature, coords)[1, :20]]),
        atol=2e-5,
        rtol=1e-5,
    )
