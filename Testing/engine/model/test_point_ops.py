"""Point sampling, uncertainty, cell indexing and training-time point selection (2D and 3D)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from morse.heads.point_ops import (
    gather_cells,
    grid_coords,
    indices_to_coords,
    most_uncertain_indices,
    random_coords,
    sample_points,
    scatter_cells,
    select_training_points,
    select_uncertain,
    uncertainty,
)


def _grid_sample_reference(feature: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """torch's grid_sample with the same conventions: align_corners=False, border padding → (B, P, C)."""
    grid = coords * 2 - 1
    grid = grid.reshape(grid.shape[0], *([1] * (feature.dim() - 3)), grid.shape[1], grid.shape[2])
    out = F.grid_sample(feature, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(feature.shape[0], feature.shape[1], -1).transpose(1, 2)


def test_uncertainty_is_second_minus_first():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 0.0, -1.0]]).T.reshape(1, 3, 2)  # two cells, three classes
    u = uncertainty(logits)
    assert torch.allclose(u, torch.tensor([[2.5 - 3.0, 0.0 - 0.0]]))
    assert (u <= 0).all()


@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (2, 4, 5, 6, 7)])
def test_linear_sampling_matches_grid_sample_including_borders(shape):
    feature = torch.randn(shape)
    coords = torch.rand(shape[0], 300, len(shape) - 2)
    coords[:, :20] = 0.0  # exact borders and beyond the outer cell centres
    coords[:, 20:40] = 1.0
    coords[:, 40:60] = torch.rand(shape[0], 20, len(shape) - 2) * 0.02
    assert torch.allclose(sample_points(feature, coords), _grid_sample_reference(feature, coords), atol=1e-5)


def test_sampling_at_cell_centres_returns_the_cells():
    feature = torch.randn(2, 3, 4, 5, 6)
    idx = torch.randint(0, 4 * 5 * 6, (2, 50))
    coords = indices_to_coords(idx, (4, 5, 6))
    expected = gather_cells(feature, idx)
    assert torch.allclose(sample_points(feature, coords), expected, atol=1e-6)
    assert torch.equal(sample_points(feature, coords, mode="nearest"), expected)


def test_indices_unravel_over_all_axes_in_3d():
    # non-cubic grid; indices deep in the volume (k > 0) must not wrap into the first slab (modulo H·W bug)
    shape = (5, 3, 4)
    idx = torch.tensor([[0, 11, 12, 47, 59]])
    coords = indices_to_coords(idx, shape)
    k, j, i = torch.meshgrid(*(torch.arange(s) for s in shape), indexing="ij")
    centres = [(i.flatten()[idx] + 0.5) / 4, (j.flatten()[idx] + 0.5) / 3, (k.flatten()[idx] + 0.5) / 5]
    expected = torch.stack(centres, -1)
    assert torch.allclose(coords, expected)
    assert coords[0, -1, 2] == pytest.approx((4 + 0.5) / 5)  # index 59 lies in the last slab


def test_fn_before_blending_equals_fn_on_whole_map_then_interpolation():
    feature = torch.randn(1, 4, 6, 7)
    weight = torch.randn(3, 4)
    fn = lambda x: x @ weight.T + 0.5  # noqa: E731 - affine per-cell function
    coords = torch.rand(1, 100, 2)
    whole = (feature.movedim(1, -1) @ weight.T + 0.5).movedim(-1, 1)
    assert torch.allclose(sample_points(feature, coords, fn=fn), sample_points(whole, coords), atol=1e-5)
    relu = torch.nn.ReLU()
    whole_relu = relu(feature)
    assert torch.allclose(sample_points(feature, coords, fn=relu), sample_points(whole_relu, coords), atol=1e-6)


def test_scatter_replaces_exactly_the_indexed_cells():
    feature = torch.randn(2, 3, 4, 5, 6)
    idx = torch.stack([torch.randperm(120)[:17] for _ in range(2)])
    values = torch.randn(2, 17, 3)
    out = scatter_cells(feature, idx, values)
    changed = (out != feature).any(dim=1).reshape(2, -1)
    for b in range(2):
        assert set(torch.nonzero(changed[b]).flatten().tolist()) == set(idx[b].tolist())
    assert torch.equal(gather_cells(out, idx), values)


def test_most_uncertain_indices_rank_by_margin():
    logits = torch.zeros(1, 3, 2, 3)
    logits[0, 0] = torch.tensor([[5.0, 4.0, 0.1], [9.0, 1.0, 2.0]])  # class-0 margins against class 1/2 (zeros)
    idx = most_uncertain_indices(logits, 2)
    assert idx[0].tolist() == [2, 4]  # margins 0.1 and 1.0 are the smallest


def test_select_uncertain_keeps_exactly_the_most_uncertain_candidates():
    candidates = torch.rand(2, 60, 2)
    unc = -torch.rand(2, 60)
    chosen = select_uncertain(candidates, unc, 15)
    for b in range(2):
        best = set(torch.argsort(unc[b], descending=True)[:15].tolist())
        got = {int(torch.nonzero((candidates[b] == c).all(-1))[0]) for c in chosen[b]}
        assert got == best


def test_training_point_selection_on_a_synthetic_logit_map():
    # Logits whose uncertainty is known everywhere: a vertical class boundary at x = 0.5 (margin grows with |x-0.5|).
    h = w = 32
    x = (torch.arange(w) + 0.5) / w
    margin = (x - 0.5).abs() * 20
    logits = torch.zeros(1, 2, h, w)
    logits[0, 0] = margin.expand(h, w)
    n, k, rho = 64, 3, 0.75
    g = torch.Generator().manual_seed(5)
    coords = select_training_points(logits, n, k, rho, generator=g)
    # Redraw the same candidates with the same generator state and rank them by the interpolated logits.
    g2 = torch.Generator().manual_seed(5)
    candidates = random_coords(1, k * n, 2, g2, "cpu")
    cand_unc = uncertainty(sample_points(logits, candidates), dim=-1)
    expected = select_uncertain(candidates, cand_unc, int(rho * n))
    assert coords.shape == (1, n, 2)
    assert torch.equal(coords[:, : int(rho * n)], expected)
    # the important points are those nearest the boundary among the candidates
    cutoff = (candidates[0, :, 0] - 0.5).abs().sort().values[int(rho * n) - 1]
    assert ((coords[0, : int(rho * n), 0] - 0.5).abs() <= cutoff + 1e-6).all()
    fresh = random_coords(1, n - int(rho * n), 2, g2, "cpu")
    assert torch.equal(coords[:, int(rho * n) :], fresh)


@pytest.mark.parametrize("size,stride", [((8, 12), 2), ((8, 8, 16), 4), ((10, 6), 1)])
def test_grid_coords_are_super_cell_centres(size, stride):
    coords, grid_shape = grid_coords(size, stride)
    assert grid_shape == tuple(-(-s // stride) for s in size)
    assert coords.shape == (1, int(torch.tensor(grid_shape).prod()), len(size))
    if all(s % stride == 0 for s in size):
        # a field sampled at the super-cell centres and resized back is the same linear field (interior cells)
        lin = [torch.arange(s, dtype=torch.float32) for s in size]
        field = sum(torch.meshgrid(*lin, indexing="ij"))[None, None]
        coarse = sample_points(field, coords)[..., 0].reshape(1, 1, *grid_shape)
        mode = "bilinear" if len(size) == 2 else "trilinear"
        back = F.interpolate(coarse, size=size, mode=mode, align_corners=False)
        inner = tuple(slice(stride, s - stride) for s in size)
        assert torch.allclose(back[(0, 0, *inner)], field[(0, 0, *inner)], atol=1e-4)
