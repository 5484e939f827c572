"""Inference-time refinement: only the selected cells change, they are the right ones in 3D, and the shortcut of
evaluating only newly chosen cells in later rounds gives exactly the naive result."""

from __future__ import annotations

import torch
from morse.config import BackboneConfig, ModelConfig, PointHeadConfig
from morse.heads.point_ops import gather_cells, indices_to_coords, most_uncertain_indices, scatter_cells
from morse.model import MorseModel
from synthetic import pointwise_smoe


def _model(dims: int, test_points: int, steps: int) -> MorseModel:
    backbone = BackboneConfig(name="unet2d" if dims == 2 else "unet3d", features=[4, 8, 8, 16, 16, 4])
    cfg = ModelConfig(
        num_classes=4,
        backbone=backbone,
        features=pointwise_smoe(8),
        point_head=PointHeadConfig(hidden=[16, 16], test_points=test_points, subdivision_steps=steps),
    )
    return MorseModel(cfg).eval()


def _naive_refine(model: MorseModel, coarse, experts):
    """Every round evaluates all chosen cells (what the released code does, with correct indices)."""
    pc = model.cfg.point_head
    current = coarse
    size = tuple(coarse.shape[2:])
    for _ in range(pc.subdivision_steps):
        idx = most_uncertain_indices(current, pc.test_points)
        coords = indices_to_coords(idx, size)
        fine, _ = model.features.at_points(experts, coords, size)
        current = scatter_cells(current, idx, model.head(fine, gather_cells(coarse, idx), coords))
    return current


def test_2d_one_round_changes_exactly_the_most_uncertain_cells():
    torch.manual_seed(0)
    model = _model(2, test_points=100, steps=1)
    x = torch.randn(2, 1, 32, 48)
    pred = model.predict(x)
    assert pred.refined.shape == pred.coarse.shape and pred.refined.dtype == torch.float32
    rect = pred.rectified.reshape(2, -1)
    assert rect.sum(1).tolist() == [100, 100]
    expected = most_uncertain_indices(pred.coarse, 100)
    for b in range(2):
        assert set(torch.nonzero(rect[b]).flatten().tolist()) == set(expected[b].tolist())
    changed = (pred.refined != pred.coarse).any(1).reshape(2, -1)
    assert not (changed & ~rect).any()  # nothing outside the selected cells moved
    assert changed.any()


def test_3d_refined_values_land_in_the_right_voxels():
    torch.manual_seed(0)
    model = _model(3, test_points=12, steps=1)
    x = torch.randn(1, 1, 16, 16, 32)  # D, H, W all different from each other's products
    out = model.backbone(x)
    d, h, w = out.logits.shape[2:]
    coarse = torch.zeros_like(out.logits)
    coarse[:, 0] = 10.0  # confident background everywhere ...
    wanted = [(d - 1, h - 1, w - 1), (d - 1, 3, 5), (d // 2, 0, w - 2), (5, h - 2, 1)]
    for k, j, i in wanted:  # ... except a few voxels deep in the volume, made maximally uncertain
        coarse[0, :, k, j, i] = 0.0
    for step in range(8):  # and some moderately uncertain ones to fill the 12 points
        coarse[0, 0, 10 + step % 4, 7, 3 + step] = 0.5
    refined, rectified = model._refine(coarse, out.experts)
    flat = [k * h * w + j * w + i for k, j, i in wanted]
    chosen = set(torch.nonzero(rectified.reshape(-1)).flatten().tolist())
    assert set(flat) <= chosen and len(chosen) == 12
    changed = (refined != coarse).any(1)
    assert (changed <= rectified).all()
    for k, j, i in wanted:
        assert changed[0, k, j, i]  # the released code's modulo-H·W indexing would have written into slab k=0
    assert not changed[0, 0].any()  # nothing was selected in the first slab


def test_later_rounds_evaluating_only_new_cells_equal_the_naive_rounds():
    torch.manual_seed(1)
    for dims, shape in ((2, (2, 1, 32, 32)), (3, (1, 1, 16, 16, 16))):
        model = _model(dims, test_points=150, steps=3)
        out = model.backbone(torch.randn(shape))
        with torch.no_grad():
            fast, _ = model._refine(out.logits, out.experts)
            naive = _naive_refine(model, out.logits, out.experts)
        assert torch.allclose(fast, naive, atol=1e-5)


def test_no_refinement_without_a_head_or_when_disabled():
    model = _model(2, test_points=50, steps=2)
    x = torch.randn(1, 1, 32, 32)
    off = model.predict(x, refine=False)
    assert off.rectified is None and torch.equal(off.refined, off.coarse)
    backbone_only = MorseModel(ModelConfig(num_classes=4, features=None, point_head=None)).eval()
    pred = backbone_only.predict(x, gating_stride=2)
    assert pred.rectified is None and pred.gating is None and torch.equal(pred.refined, pred.coarse)


def test_gate_map_at_stride_one_equals_dense_weights():
    torch.manual_seed(2)
    model = _model(2, test_points=50, steps=1)
    out = model.backbone(torch.randn(1, 1, 32, 32))
    with torch.no_grad():
        dense_w = model.features.dense(out.experts, (32, 32))[1]
        grid = model.gate_map(out.experts, (32, 32), stride=1)
        strided = model.gate_map(out.experts, (32, 32), stride=4)
    assert torch.allclose(grid, dense_w, atol=1e-5)
    assert strided.shape == (1, 5, 8, 8)
    assert torch.allclose(strided.sum(1), torch.ones(1, 8, 8), atol=1e-5)


def test_gate_map_on_a_divisible_grid_equals_the_point_evaluator():
    from morse.heads.point_ops import grid_coords

    torch.manual_seed(3)
    for dims, shape in ((2, (2, 1, 32, 48)), (3, (1, 1, 16, 16, 32))):
        model = _model(dims, test_points=50, steps=1)
        out = model.backbone(torch.randn(shape))
        size = tuple(out.logits.shape[2:])
        for stride in (2, 4):
            with torch.no_grad():
                fast = model.gate_map(out.experts, size, stride)
                coords, grid = grid_coords(size, stride)
                pts = model.features.gate_weights_at_points(out.experts, coords.expand(shape[0], -1, -1), size)
            slow = pts.transpose(1, 2).reshape(shape[0], -1, *grid)
            assert fast.shape == slow.shape
            assert (fast - slow).abs().max() <= 1e-5


def test_channels_last_maps_refine_exactly_like_contiguous_ones():
    """Inference keeps 2D maps channels-last (their cells are rows): gathering and scattering rows must give the very
    values of the channel-first path, round after round."""
    torch.manual_seed(4)
    model = _model(2, test_points=90, steps=3)
    x = torch.randn(3, 1, 32, 48)
    with torch.no_grad():
        out = model.backbone(x)
        nchw = model._refine(out.logits.contiguous(), [e.contiguous() for e in out.experts])
        cl = [t.contiguous(memory_format=torch.channels_last) for t in (out.logits, *out.experts)]
        nhwc = model._refine(cl[0], cl[1:])
    assert torch.equal(nchw[1], nhwc[1]) and nhwc[1].sum() > 90
    assert torch.equal(nchw[0], nhwc[0].contiguous())
    with torch.no_grad():
        naive = _naive_refine(model, out.logits, out.experts)
    assert torch.equal(naive, nhwc[0])


def test_scatter_and_gather_cells_in_both_memory_formats():
    from morse.heads.point_ops import scatter_cells_

    torch.manual_seed(5)
    for shape, fmt in (((2, 3, 5, 7), torch.channels_last), ((2, 3, 4, 5, 6), torch.channels_last_3d)):
        feature = torch.randn(shape)
        cells_total = feature[0, 0].numel()
        idx = torch.stack([torch.randperm(cells_total)[:9] for _ in range(2)])
        values = torch.randn(2, 9, 3)
        expected = feature.clone().flatten(2)
        for b in range(2):
            expected[b][:, idx[b]] = values[b].T
        expected = expected.reshape(shape)
        for f in (feature, feature.contiguous(memory_format=fmt)):
            assert torch.equal(gather_cells(f, idx), feature.flatten(2).gather(2, idx[:, None].expand(-1, 3, -1)).mT)
            copied = scatter_cells(f, idx, values)
            assert torch.equal(copied, expected) and not torch.equal(f, expected)
            assert copied.is_contiguous(memory_format=fmt) == f.is_contiguous(memory_format=fmt)
            in_place = f.clone()
            assert scatter_cells_(in_place, idx, values) is in_place and torch.equal(in_place, expected)


def _margins(logits: torch.Tensor) -> torch.Tensor:
    """Top-2 margin per cell ``(B, cells)`` of logits ``(B, C, *S)``."""
    top = logits.flatten(2).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def test_adaptive_budget_renders_only_doubtful_cells_of_the_fixed_choice():
    torch.manual_seed(3)
    model = _model(2, test_points=200, steps=1)
    out = model.backbone(torch.randn(2, 1, 32, 48))
    with torch.no_grad():
        fixed, fixed_cells = model._refine(out.logits, out.experts)
        margin = float(_margins(out.logits).flatten().kthvalue(150).values)  # about 75 doubtful cells per slice
        adaptive, cells = model._refine(out.logits, out.experts, margin=margin)
    doubtful = (_margins(out.logits) < margin).reshape(cells.shape)
    chosen = torch.zeros_like(fixed_cells)
    chosen.view(2, -1).scatter_(1, most_uncertain_indices(out.logits, 200), True)
    assert torch.equal(cells, chosen & doubtful)
    assert 0 < int(cells.sum()) < int(fixed_cells.sum())
    keep = cells[:, None].expand_as(fixed)
    assert torch.allclose(adaptive[keep], fixed[keep], atol=1e-5)  # a rendered cell gets the fixed budget's value
    assert torch.equal(adaptive[~keep], out.logits[~keep])  # the others keep the coarse logits


def test_adaptive_budget_with_an_unbounded_margin_is_the_fixed_budget():
    torch.manual_seed(4)
    model = _model(2, test_points=120, steps=3)
    out = model.backbone(torch.randn(3, 1, 32, 32))
    with torch.no_grad():
        fixed, fixed_cells = model._refine(out.logits, out.experts)
        same, same_cells = model._refine(out.logits, out.experts, margin=1e9)
    assert torch.equal(same_cells, fixed_cells) and torch.allclose(same, fixed, atol=1e-6)


def test_adaptive_budget_stays_in_the_region_and_skips_confident_slices():
    torch.manual_seed(5)
    model = _model(2, test_points=100, steps=2)
    out = model.backbone(torch.randn(2, 1, 32, 32))
    coarse = out.logits.clone()
    coarse[1] = 0.0
    coarse[1, 0] = 20.0  # slice 1: confident background everywhere
    within = torch.zeros(2, 32, 32, dtype=torch.bool)
    within[:, 8:24, 8:24] = True
    with torch.no_grad():
        _, inside = model._refine(coarse, out.experts, margin=1e9, within=within)
        refined, cells = model._refine(coarse, out.experts, margin=5.0)
        _, none = model._refine(coarse, out.experts, margin=0.0)
    assert inside.any() and not (inside & ~within).any()
    assert cells[0].any() and not cells[1].any() and torch.equal(refined[1], coarse[1])
    assert not none.any()


def test_render_region_is_tissue_and_its_neighbourhood_for_ct_windows_only():
    from morse.config import IntensityConfig
    from morse.inference.pipeline import BODY_REACH_CELLS, render_region

    x = torch.zeros(1, 1, 20, 20)
    x[0, 0, 10, 10] = 0.3  # one cell above the bottom of the window
    region = render_region(x, IntensityConfig(mode="window", low=-125.0, high=275.0))
    r = BODY_REACH_CELLS
    expected = torch.zeros(1, 20, 20, dtype=torch.bool)
    expected[0, 10 - r : 11 + r, 10 - r : 11 + r] = True
    assert torch.equal(region, expected)
    assert render_region(x, IntensityConfig(mode="zscore")) is None
