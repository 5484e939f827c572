"""The benchmark report: ratios, target verdicts and the account of a missed target come from the measurements."""

from __future__ import annotations

from morse.bench.bench_command import render


def _volume(seconds, backbone, refine=0.0, gating=0.0, post=1.0, pre=0.2):
    stages = {"backbone": backbone, "refine": refine, "gating": gating, "postprocess": post, "preprocess": pre}
    return {"seconds": seconds, "stages": {**stages, "total": seconds}, "peak_rss_mb": 1000.0, "shape_kji": [4, 5, 6]}


def _results(refined_s: float, full_s: float) -> dict:
    step = {"seconds": 1.0, "peak_rss_mb": 500.0}
    patch = {"seconds": 1.0, "stages": {"backbone": 0.9, "refine": 0.1}}
    return {
        "hardware": "test machine",
        "quick": False,
        "threads": 2,
        "model": "m 1.0.0",
        "whole_volume": {
            "backbone": _volume(10.0, 8.0),
            "refined": _volume(refined_s, 8.0, refine=refined_s - 10.0 - 0.5, post=1.5),
            "full": _volume(full_s, 8.0, refine=2.0, gating=3.0, post=1.0 + full_s - 15.0),
            "full_float": _volume(full_s + 2, 8.0, refine=2.0, gating=3.0, post=3.0 + full_s - 15.0),
        },
        "stage_flops": {
            "flops": {"backbone": 4e9, "refine": 5e8, "gating": 3e8},
            "model_slice": [192, 192],
            "rectified_cells": 2400,
        },
        "segment_cli": {"seconds": 40.0, "peak_rss_mb": 5 * 1024},
        "train_step": {
            "backbone": {**step, "seconds": 0.5},
            "fast": {**step, "seconds": 0.6},
            "paper": {**step, "seconds": 40.0},
            "size": 256,
            "batch": 4,
        },
        "patch_3d": {"unet3d": patch, "unet3d+morse": patch, "unetr": patch, "unetr+morse": patch, "size": 96},
        "cuda": {"skipped": "no CUDA GPU on this machine"},
    }


def test_met_targets_have_no_miss_account():
    text = render(_results(refined_s=12.0, full_s=19.0))
    assert "MORSE refined: **1.20×** the backbone (target ≤ 1.3×: met)" in text
    assert "**1.90×** (target ≤ 2.0×: met)" in text
    assert "misses by" not in text
    assert "`fast` step: **1.20×**" in text and "`paper` step: **66.7×** the `fast` step" in text
    assert "peak RSS **5.00 GB** (target ≤ 6.0 GB: met)" in text
    assert "the rendering head 0.50 GFLOP (12% of the backbone's work, 19% of its time)" in text


def test_a_missed_target_says_by_how_much_and_where_the_time_went():
    text = render(_results(refined_s=15.0, full_s=25.0))
    assert "**1.50×** the backbone (target ≤ 1.3×: **missed**)" in text
    assert "*refined* misses by 0.20× (2.0 s): of its 5.0 s over the backbone, rendering head 4.5 s" in text
    assert (
        "*full* misses by 0.50× (5.0 s): of its 15.0 s over the backbone, rendering head 2.0 s, gate maps 3.0 s" in text
    )
    assert "the same with float32 maps" in text and "| 27.0 | 2.70× |" in text
