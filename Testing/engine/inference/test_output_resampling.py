"""Mapping model-grid predictions back to the input slices: labels without resizing the logits, gate maps in one
interpolation between super-cell centres, and uint8 maps that are exactly the quantised float maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from morse.inference.label_resize import upsampled_labels
from morse.inference.map_values import quantize_unit
from morse.inference.pipeline import _gates_on_input_grid, segment_volume
from morse.inference.preprocess import resize
from synthetic import LPS_1MM, ring_slices


def _reference_labels(logits, size):
    return resize(logits, size).argmax(1).to(torch.uint8).numpy()


@pytest.mark.parametrize("src,out", [((37, 50), (74, 100)), ((37, 50), (111, 149)), ((37, 50), (37, 50)),
                                     ((40, 41), (40, 97)), ((12, 9), (100, 100))])  # fmt: skip
def test_labels_equal_the_argmax_of_resized_logits(src, out):
    """Random logits: nearly every output pixel has a mixed 2×2 support, so the blend itself is checked."""
    torch.manual_seed(sum(src) + sum(out))
    logits = torch.randn(3, 9, *src)
    expected = _reference_labels(logits, out)
    assert np.array_equal(upsampled_labels(logits, out), expected)
    nhwc = logits.contiguous(memory_format=torch.channels_last)
    assert np.array_equal(upsampled_labels(nhwc, out), expected)
    cropped = torch.randn(3, 9, src[0] + 3, src[1] + 5)[:, :, : src[0], : src[1]]  # a padded prediction, cropped
    assert np.array_equal(upsampled_labels(cropped, out), _reference_labels(cropped, out))


def test_labels_of_smooth_logits_and_of_a_shrinking_axis():
    """Organ-like logits (large uniform regions, thin boundaries) and the antialiased down-sampling fallback."""
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    disc = 10 - ((yy - 20) ** 2 + (xx - 30) ** 2).sqrt()
    logits = torch.stack([torch.zeros_like(disc), disc, (xx - 50) / 3])[None].repeat(2, 1, 1, 1)
    for out in ((96, 128), (150, 211), (30, 128), (24, 32)):
        assert np.array_equal(upsampled_labels(logits, out), _reference_labels(logits, out)), out


def test_gate_maps_interpolate_linearly_between_super_cell_centres():
    """A gate map that is linear in the super-cell index comes back linear at every input pixel, with the slope and
    offset that the align_corners=False geometry gives (padding cropped away, stride 2)."""
    padded, size, full, stride = (32, 48), (30, 45), (75, 90), 2
    grid = (padded[0] // stride, padded[1] // stride)
    gx = torch.arange(grid[1], dtype=torch.float64)
    ramp = (0.2 + 0.02 * gx).expand(grid)  # in [0, 1]
    gates = torch.stack([ramp, 1 - ramp])[None].float()  # (B=1, N=2, gh, gw)
    maps = _gates_on_input_grid(gates, padded, size, full)
    assert maps.shape == (2, 1, *full)
    x = np.arange(full[1])
    coord = (x + 0.5) * size[1] * grid[1] / (full[1] * padded[1]) - 0.5  # super-cell coordinate of each pixel
    inside = (coord >= 0) & (coord <= grid[1] - 1)
    assert inside.sum() > 80
    expected = 0.2 + 0.02 * coord[inside]
    assert np.allclose(maps[0, 0][:, inside].numpy(), expected[None, :], atol=1e-6)
    assert np.allclose(maps.sum(0).numpy(), 1.0, atol=1e-6)


def test_uint8_maps_are_the_quantised_float_maps(trained_rings):
    _, pack = trained_rings
    image, _ = ring_slices(6, seed=3)
    floats = segment_volume(image, LPS_1MM, model=pack, device="cpu", gating_stride=2)
    ints = segment_volume(image, LPS_1MM, model=pack, device="cpu", gating_stride=2, maps_uint8=True)
    assert ints.gating.dtype == np.uint8 and ints.uncertainty.dtype == np.uint8
    assert np.array_equal(ints.labels, floats.labels) and np.array_equal(ints.rectified, floats.rectified)
    for a, b in ((ints.gating, floats.gating), (ints.uncertainty, floats.uncertainty)):
        assert np.array_equal(a, np.rint(np.clip(b, 0, 1) * 255).astype(np.uint8))
        assert np.array_equal(a, quantize_unit(b))  # the one quantiser of every stored map
    assert np.array_equal(ints.dominant_expert, ints.gating.argmax(0).astype(np.uint8) + 1)
    assert ints.gating.astype(int).sum(0).min() >= 255 - 3  # five rounded weights still sum to about 1
