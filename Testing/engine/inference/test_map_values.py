"""One quantiser for every stored 0..1 map: uint8 round(value·255), the same in the pipeline, its chunked resampling
and the files, and the same values torch's own rounding gives."""

from __future__ import annotations

import numpy as np
import torch
from morse.inference.chunked import resize_linear_into
from morse.inference.map_values import MAP_SCALE, quantize_unit, quantize_unit_slabs
from morse.inference.pipeline import _as_stored


def test_levels_round_to_the_nearest_of_255_steps():
    k = np.arange(256, dtype=np.float32)
    for offset in (-0.49, 0.0, 0.49):
        values = np.clip((k + offset) / 255, 0, 1).astype(np.float32)
        assert np.array_equal(quantize_unit(values), k.astype(np.uint8))
    assert quantize_unit(np.array([-3.0, 0.0, 1.0, 7.0])).tolist() == [0, 0, 255, 255]
    assert MAP_SCALE * 255 == 1.0


def test_equals_torch_rounding_half_to_even():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(10000), (np.arange(255) + 0.5) / 255, [-0.2, 1.3]]).astype(np.float32)
    expected = torch.from_numpy(values.copy()).clamp_(0, 1).mul_(255).round_().to(torch.uint8).numpy()
    assert np.array_equal(quantize_unit(values), expected)
    # exact halves go to the even level, as torch.round and np.rint do
    halves = np.array([0.5, 1.5, 2.5], np.float32) / np.float32(255) * np.float32(255) / 255
    assert quantize_unit(halves).tolist() == torch.tensor(halves).mul(255).round().to(torch.uint8).tolist()


def test_input_is_kept_unless_in_place_and_out_can_be_a_strided_view():
    values = np.linspace(-0.5, 1.5, 60, dtype=np.float32).reshape(3, 4, 5)
    copy = values.copy()
    first = quantize_unit(values)
    assert np.array_equal(values, copy)  # not in place: the caller's map is untouched
    out = np.zeros((5, 4, 3), np.uint8)
    quantize_unit(values.copy(), out=out.transpose(2, 1, 0), in_place=True)
    assert np.array_equal(out.transpose(2, 1, 0), first)


def test_slabs_and_the_pipeline_paths_give_the_same_bytes():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 17, 9, 11)).astype(np.float32)
    reference = quantize_unit(maps)
    assert np.array_equal(quantize_unit_slabs(maps, slab_bytes=1), reference)  # one slice per slab
    as_uint8 = reference.copy()
    assert quantize_unit_slabs(as_uint8) is as_uint8  # already stored: kept as it is
    assert np.array_equal(_as_stored(torch.from_numpy(maps.copy()), np.uint8), reference)
    assert _as_stored(torch.from_numpy(maps), np.float32).dtype == np.float32
    # the chunked resampling writes the quantised values straight into a uint8 output
    src = torch.from_numpy(maps[0])
    floats = np.zeros((20, 12, 13), np.float32)
    ints = np.zeros((20, 12, 13), np.uint8)
    resize_linear_into(floats, src, clamp=(0.0, 1.0), budget=4 * 12 * 13 * 3)
    resize_linear_into(ints, src, clamp=(0.0, 1.0), budget=4 * 12 * 13 * 3)
    assert np.array_equal(ints, quantize_unit(floats))
