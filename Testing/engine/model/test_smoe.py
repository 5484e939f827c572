"""SMoE: shapes, gate weights, stochastic routing, and the sparse (point) evaluator against the dense computation."""

from __future__ import annotations

import pytest
import torch
from morse.config import RoutingConfig, SMoEConfig
from morse.heads.point_ops import indices_to_coords
from morse.heads.routing import apply_keep_mask, draw_keep_mask
from morse.heads.smoe import SMoE

EXPERTS_2D = ([32, 24, 16, 8, 4], [(2, 3), (4, 6), (8, 12), (16, 24), (32, 48)])  # coarse to fine, like the UNet
EXPERTS_3D = ([12, 8, 4], [(3, 4, 5), (6, 8, 10), (12, 16, 20)])


def _experts(spec, batch=2):
    return [torch.randn(batch, c, *s) for c, s in zip(*spec)]


def _smoe(spec, dims, **kw):
    kw = {"gating": "pointwise", "gating_kernel": 1, "gating_norm": "none", **kw}
    cfg = SMoEConfig(expert_dim=16, gating_widths=[16], fusion_widths=[16], out_dim=8, **kw)
    return SMoE(spec[0], cfg, dims).eval()


@pytest.mark.parametrize("spec,dims", [(EXPERTS_2D, 2), (EXPERTS_3D, 3)])
@pytest.mark.parametrize("gating", ["pointwise", "dense"])
def test_shapes_and_weights_sum_to_one(spec, dims, gating):
    smoe = _smoe(spec, dims, gating=gating, gating_kernel=3 if gating == "dense" else 1)
    experts = _experts(spec)
    size = spec[1][-1]
    with torch.no_grad():
        x_out, weights = smoe.dense(experts, size)
        assert x_out.shape == (2, 8, *size) and x_out.dtype == torch.float32
        assert weights.shape == (2, len(spec[0]), *size)
        assert torch.allclose(weights.sum(1), torch.ones(2, *size), atol=1e-6)
        coords = torch.rand(2, 77, dims)
        pts, w = smoe.at_points(experts, coords, size)
        assert pts.shape == (2, 77, 8) and w.shape == (2, 77, len(spec[0]))
        assert torch.allclose(w.sum(-1), torch.ones(2, 77), atol=1e-6)
        assert (w >= 0).all()


@pytest.mark.parametrize("spec,dims", [(EXPERTS_2D, 2), (EXPERTS_3D, 3)])
@pytest.mark.parametrize("kind,last_act", [("smoe", False), ("smoe", True), ("plain", False)])
def test_sparse_evaluator_equals_dense_at_every_cell_including_borders(spec, dims, kind, last_act):
    smoe = _smoe(spec, dims, kind=kind, expert_last_act=last_act)
    experts = _experts(spec)
    size = spec[1][-1]
    n_cells = int(torch.tensor(size).prod())
    idx = torch.arange(n_cells).expand(2, -1)  # every cell, borders included
    with torch.no_grad():
        dense_out, dense_w = smoe.dense(experts, size)
        sparse_out, sparse_w = smoe.at_points(experts, indices_to_coords(idx, size), size)
    dense_rows = dense_out.flatten(2).transpose(1, 2)
    assert (sparse_out - dense_rows).abs().max() <= 1e-4
    if kind == "smoe":
        assert (sparse_w - dense_w.flatten(2).transpose(1, 2)).abs().max() <= 1e-4


def test_both_exact_routes_give_the_same_points():
    smoe = _smoe(EXPERTS_2D, 2)
    experts = _experts(EXPERTS_2D)
    coords = torch.rand(2, 50, 2)
    with torch.no_grad():
        few = smoe.at_points(experts, coords, (32, 48), prepared=smoe.prepare(experts, max_points=1))[0]
        many = smoe.at_points(experts, coords, (32, 48), prepared=smoe.prepare(experts, max_points=10**6))[0]
    assert torch.allclose(few, many, atol=1e-5)


def test_bernoulli_drop_rate_matches_alpha():
    cfg = RoutingConfig(mode="bernoulli", alpha=0.7)
    g = torch.Generator().manual_seed(0)
    keep = torch.cat([draw_keep_mask(64, 5, cfg, g) for _ in range(200)])  # 64 000 expert draws
    assert abs((1 - keep.mean().item()) - 0.7) < 0.01
    # independent per sample and expert: samples of one batch differ
    assert not torch.equal(keep[0], keep[1]) or not torch.equal(keep[1], keep[2])


def test_uniform_count_drops_whole_experts_for_the_batch():
    cfg = RoutingConfig(mode="uniform_count")
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(6)
    for _ in range(2000):
        keep = draw_keep_mask(4, 5, cfg, g)
        assert (keep == keep[0]).all()  # the same experts for every sample
        counts[int((keep[0] == 0).sum())] += 1  # counts has slots 0..4
    assert counts[5] == 0  # never all five experts
    freq = counts[:5] / counts.sum()  # k uniform on {0..N-1}
    assert torch.allclose(freq, torch.full((5,), 0.2), atol=0.03)


def test_keep_mask_renormalises_or_not():
    w = torch.softmax(torch.randn(3, 4, 10), dim=1)
    keep = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    renorm = apply_keep_mask(w, keep, renormalize=True)
    assert torch.allclose(renorm[0].sum(0), torch.ones(10)) and (renorm[0, [1, 3]] == 0).all()
    assert (renorm[1] == 0).all()  # every expert dropped: zero weights, not NaN
    assert torch.allclose(renorm[2], w[2])
    raw = apply_keep_mask(w, keep, renormalize=False)
    assert torch.allclose(raw[0, [0, 2]], w[0, [0, 2]])


def test_routing_only_in_training_mode():
    smoe = _smoe(EXPERTS_2D, 2, routing=RoutingConfig(mode="bernoulli", alpha=0.7))
    experts = _experts(EXPERTS_2D)
    coords = torch.rand(2, 30, 2)
    smoe.generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        eval_w = smoe.at_points(experts, coords, (32, 48))[1]
        smoe.train()
        train_w = smoe.at_points(experts, coords, (32, 48))[1]
    assert torch.allclose(eval_w.sum(-1), torch.ones(2, 30), atol=1e-6)
    assert (eval_w > 0).all()  # nothing dropped in eval mode
    zeroed = (train_w == 0).all(dim=1)  # (B, N): experts dropped for a whole sample
    assert zeroed.any()
    assert torch.allclose(train_w.sum(-1)[~zeroed.all(-1)], torch.ones_like(train_w.sum(-1)[~zeroed.all(-1)]))
