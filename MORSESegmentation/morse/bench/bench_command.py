"""``morse bench``: what a user waits for, and the cost of MORSE over its backbone and against its peers, as ratios
measured side by side in one run.

Tables (medians after a warm-up; every configuration in a fresh child process for a clean peak-memory reading):

1. ``morse segment`` end to end on a 512×512×191 CT, read → every file written, per stage; the Slicer module's
   first and second Apply through its logic, on slicer-core (``tools/bench_slicer_apply.py``);
2. whole-volume inference of the default model: backbone only vs MORSE refined vs MORSE refined with gating maps
   (stride 2) and uncertainty;
3. the peers a user would run instead (MONAI SegResNet as Auto3DSeg builds it, an nnU-Net-style 3D full-resolution
   UNet), random weights, MONAI's sliding window, a fixed number of windows timed and scaled to the whole CT;
4. the adaptive rendering budget against the fixed one on the BTCV cases (``docs/results/render_budget.json``, written
   by :mod:`morse.bench.render_budget`);
5. what each uncertainty option costs over the refined run (:mod:`morse.bench.uncertainty_cost`);
6. one 2D training step (batch 4, 256²): backbone only vs the ``fast`` preset vs the ``paper`` preset;
7. one 3D patch (96³) for a 3D UNet and UNETR: backbone vs MORSE inference;
8. CUDA with bf16 autocast, when ``--device cuda`` runs on a GPU.

Every target is listed first, met or missed; a missed whole-volume target says by how much and where the time went.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import MorseError

log = logging.getLogger(__name__)

TARGETS = {
    "segment_over_full": 1.5,
    "refined_over_backbone": 1.15,
    "full_over_backbone": 1.6,
    "fast_step_over_backbone": 1.5,
    "paper_step_over_fast": 10.0,
    "segment_peak_gb": 6.0,
    "gpu_segment_s": 3.0,
}
REPO = Path(__file__).resolve().parents[3]
BUDGET_REPORT = REPO / "docs" / "results" / "render_budget.json"  # written by morse.bench.render_budget


def _child(workload: str, threads: int, /, timeout: float = 3600, cmd: list[str] | None = None, **kwargs) -> dict:
    """Run one workload in a fresh Python process and return its JSON result (``cmd``: a script of its own that
    prints the same result line). ``workload`` and ``threads`` are positional only, so that a workload may take
    arguments of any name (the peers take ``name``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = cmd or [sys.executable, "-m", "morse.bench.workloads", workload, json.dumps({**kwargs, "threads": threads})]
    log.info("bench: %s %s", workload, json.dumps(kwargs))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("MORSE-BENCH-RESULT "):
            return json.loads(line.split(" ", 1)[1])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    raise MorseError(f"benchmark workload {workload} failed (exit {proc.returncode}): " + " | ".join(tail))


def _verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return "met" if ok else "**missed**"


def run(args) -> int:
    from ..data.cases import case_path
    from ..data.fetch import data_root
    from ..experiments.runs import hardware
    from ..modelpack import load_model_pack
    from .workloads import bench_ct

    quick = bool(args.quick)
    device = getattr(args, "device", "cpu")
    bf16 = bool(getattr(args, "bf16", False))
    threads = os.cpu_count() or 1
    repeats = 1 if quick else 3
    pack = load_model_pack("default")
    model = str(pack.path)
    ct = bench_ct(data_root() / "bench")
    results: dict = {
        "hardware": hardware(),
        "quick": quick,
        "threads": threads,
        "device": device,
        "model": f"{pack.model_id} {pack.version}",
        "render_margin": pack.inference.get("render_margin"),
    }
    vol_path = str(ct)
    if quick:  # a few slices of the same CT keep the smoke run short
        vol_path = str(_slab(ct, 24))
    with tempfile.TemporaryDirectory() as tmp:
        results["segment_stages"] = _child(
            "segment_stages", threads, path=vol_path, model=model, out_dir=tmp, device=device
        )
    results["slicer_apply"] = _slicer_apply(str(case_path("abdomen-ct-dicom")), device, threads)
    results["whole_volume"] = {
        mode: _child("whole_volume", threads, path=vol_path, model=model, mode=mode, repeats=repeats, device=device)
        for mode in ("backbone", "refined", "full", "full_float")
    }
    results["stage_flops"] = _child("stage_flops", threads, path=vol_path, model=model)
    results["uncertainty"] = _child(
        "uncertainty_options", threads, path=vol_path, model=model, stride=4 if quick else 2
    )
    with tempfile.TemporaryDirectory() as tmp:
        results["segment_cli"] = _child("segment_cli_memory", threads, path=vol_path, model=model, out_dir=tmp)
    windows = 1 if quick else max(1, int(getattr(args, "peer_windows", 2)))
    results["peers"] = {
        name: _child(
            "peer_network", threads, name=name, path=vol_path, windows=windows, device=device, bf16=bf16, quick=quick
        )
        for name in ("segresnet", "nnunet")
    }
    size, batch = (96, 2) if quick else (256, 4)
    results["train_step"] = {
        preset: _child(
            "train_step",
            threads,
            preset=preset,
            size=size,
            batch=batch,
            repeats=1 if preset == "paper" else repeats + 2,
        )
        for preset in ("backbone", "fast", "paper")
    }
    results["train_step"]["size"], results["train_step"]["batch"] = size, batch
    patch = 32 if quick else 96
    results["patch_3d"] = {
        f"{name}{'+morse' if heads else ''}": _child(
            "patch_3d", threads, backbone=name, with_heads=heads, size=patch, repeats=repeats
        )
        for name in ("unet3d", "unetr")
        for heads in (False, True)
    }
    results["patch_3d"]["size"] = patch
    results["cuda"] = _child("cuda_bf16", threads, model=model, path=vol_path, repeats=repeats)
    from .memory_rows import SIZES, run_sizes  # estimate vs measured peak, one child process per CT size

    results["memory"] = run_sizes(model, data_root() / "bench", sizes=(8,) if quick else SIZES, threads=threads)
    if BUDGET_REPORT.is_file():
        results["render_budget"] = json.loads(BUDGET_REPORT.read_text(encoding="utf-8"))
    text = render(results)
    print(text)
    out = Path(args.out)
    if not quick:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"\nwrote {out}")
    return 0


def _slicer_apply(volume: str, device: str, threads: int) -> dict:
    """The Slicer module's first and second Apply (``tools/bench_slicer_apply.py``), or why it was not measured."""
    script = REPO / "tools" / "bench_slicer_apply.py"
    if not script.is_file():
        return {"skipped": "tools/bench_slicer_apply.py is not in this installation (a source checkout has it)"}
    try:
        return _child("slicer_apply", threads, cmd=[sys.executable, str(script), volume, "--device", device])
    except MorseError as exc:
        return {"skipped": str(exc)}


def _slab(ct: Path, slices: int) -> Path:
    import SimpleITK as sitk  # noqa: N813

    out = ct.with_name(f"bench-ct-slab{slices}.nii.gz")
    if not out.is_file():
        image = sitk.ReadImage(str(ct))
        mid = image.GetSize()[2] // 2
        sitk.WriteImage(image[:, :, mid - slices // 2 : mid + slices // 2], str(out), useCompression=True)
    return out


def _whole_volume_misses(wv: dict, ratio_ref: float, ratio_full: float) -> list[str]:
    """Where a whole-volume target is missed: by how much, and which stages the extra time went to."""
    base = wv["backbone"]
    lines = []
    for mode, ratio, key in (
        ("refined", ratio_ref, "refined_over_backbone"),
        ("full", ratio_full, "full_over_backbone"),
    ):
        if ratio <= TARGETS[key]:
            continue
        m = wv[mode]
        extra = m["seconds"] - base["seconds"]
        st, bst = m["stages"], base["stages"]
        parts = {
            "rendering head": st.get("refine", 0.0),
            "gate maps": st.get("gating", 0.0),
            "backbone (run to run)": st.get("backbone", 0.0) - bst.get("backbone", 0.0),
            "writing the extra outputs on the input grid": st.get("postprocess", 0.0) - bst.get("postprocess", 0.0),
            "preprocessing (run to run)": st.get("preprocess", 0.0) - bst.get("preprocess", 0.0),
        }
        split = ", ".join(f"{name} {sec:.1f} s" for name, sec in parts.items() if abs(sec) >= 0.05)
        over = (ratio - TARGETS[key]) * base["seconds"]
        lines.append(
            f"  - *{mode}* misses by {ratio - TARGETS[key]:.2f}× ({over:.1f} s): of its {extra:.1f} s over the "
            f"backbone, {split}."
        )
    return lines


def _work_per_slice(info: dict | None, wv: dict) -> list[str]:
    """Arithmetic of each stage against its share of the time: why the heads cost more time than work."""
    if not info:
        return []
    flops, base = info["flops"], wv["backbone"]["stages"].get("backbone", 0.0)
    if not flops.get("backbone") or base <= 0:
        return []
    times = {"refine": wv["refined"]["stages"].get("refine", 0.0), "gating": wv["full"]["stages"].get("gating", 0.0)}
    shares = []
    for key, name in (("refine", "rendering head"), ("gating", "gate map (stride 2)")):
        shares.append(
            f"the {name} {flops[key] / 1e9:.2f} GFLOP ({flops[key] / flops['backbone']:.0%} of the backbone's work, "
            f"{times[key] / base:.0%} of its time)"
        )
    h, w = info["model_slice"]
    return [
        f"- Work per slice ({h}×{w} model grid, {info['rectified_cells']} cells re-predicted): the backbone "
        f"{flops['backbone'] / 1e9:.2f} GFLOP; " + "; ".join(shares) + ". The heads do a fraction of the "
        "backbone's arithmetic, but as many small per-point matrix products, gathers and element-wise passes, "
        "which run several times less efficiently on a CPU than the backbone's convolutions."
    ]


def _ratio_row(label: str, value: float | None, target: float, measured: str, lower: bool = True) -> str:
    if value is None:
        return f"| {label} | {measured} | not measured |"
    return f"| {label} | {measured} | {_verdict(value, target, lower)} |"


def _targets(r: dict) -> list[str]:
    """One row per target of the benchmark, met or missed (or why it was not measured)."""
    wv, ts = r["whole_volume"], r["train_step"]
    base = wv["backbone"]["seconds"]
    ref, full = wv["refined"]["seconds"] / base, wv["full"]["seconds"] / base
    e2e = r["segment_stages"]["seconds"] / wv["full"]["seconds"]
    fast = ts["fast"]["seconds"] / ts["backbone"]["seconds"]
    paper = ts["paper"]["seconds"] / ts["fast"]["seconds"]
    peak = r["segment_cli"]["peak_rss_mb"] / 1024
    t = TARGETS
    rows = [
        "| target | measured | verdict |",
        "|:---|:---|:---|",
        _ratio_row(f"`morse segment` end to end ≤ {t['segment_over_full']}× the engine's full run", e2e,
                   t["segment_over_full"],
                   f"**{e2e:.2f}×** ({r['segment_stages']['seconds']:.1f} s / {wv['full']['seconds']:.1f} s)"),
        _ratio_row(f"MORSE refined ≤ {t['refined_over_backbone']}× the backbone", ref, t["refined_over_backbone"],
                   f"**{ref:.2f}×**"),
        _ratio_row(f"refined + gating maps + uncertainty ≤ {t['full_over_backbone']}× the backbone", full,
                   t["full_over_backbone"], f"**{full:.2f}×**"),
        _budget_target(r.get("render_budget")),
        _ratio_row(f"`fast` training step ≤ {t['fast_step_over_backbone']}× the backbone step", fast,
                   t["fast_step_over_backbone"], f"**{fast:.2f}×**"),
        _ratio_row(f"`fast` step ≥ {t['paper_step_over_fast']:.0f}× faster than `paper`", paper,
                   t["paper_step_over_fast"], f"**{paper:.1f}×**", lower=False),
        _ratio_row(f"`morse segment` peak memory ≤ {t['segment_peak_gb']} GB", peak, t["segment_peak_gb"],
                   f"**{peak:.2f} GB**"),
    ]  # fmt: skip
    cuda = r.get("cuda", {})
    if "skipped" in cuda or r.get("device") != "cuda":
        rows.append(f"| GPU: end to end ≤ {t['gpu_segment_s']:.0f} s on an H200 | not measured here (no GPU) | — |")
    else:
        gpu_e2e = r["segment_stages"]["seconds"]
        rows.append(_ratio_row(f"GPU: end to end ≤ {t['gpu_segment_s']:.0f} s on an H200", gpu_e2e,
                               t["gpu_segment_s"], f"**{gpu_e2e:.1f} s** ({cuda.get('gpu', 'GPU')})"))  # fmt: skip
    return rows


def _budget_target(budget: dict | None) -> str:
    label = "adaptive rendering budget: labels differ from the fixed budget on < 0.1 % of voxels, or DSC within 0.1"
    test = (budget or {}).get("test")
    if not test:
        return f"| {label} | not measured (run `morse.bench.render_budget`, see below) | not measured |"
    row = test["summary"][f"{test['margins'][0]:g}"]
    measured = (
        f"BTCV test, margin {test['margins'][0]:g}: at most **{row['max_changed_share']:.4%}** of voxels, "
        f"DSC change {100 * row['dsc_change']:+.2f} points, {row['cells_share_of_fixed']:.0%} of the cells"
    )
    from .render_budget import acceptable

    return f"| {label} | {measured} | {'met' if acceptable(row) else '**missed**'} |"


def _waiting(r: dict) -> list[str]:
    from .end_to_end import stage_rows

    seg = r["segment_stages"]
    total = seg["seconds"]
    shape = "×".join(str(n) for n in reversed(r["whole_volume"]["backbone"]["shape_kji"]))
    lines = [
        f"### `morse segment` on the {shape} CT, every output (read → every file written)",
        "",
        "| stage | time (s) | share |",
        "|:---|---:|---:|",
    ]
    for name, seconds in stage_rows(seg):
        lines.append(f"| {name} | {seconds:.1f} | {seconds / total:.0%} |")
    lines += [f"| **total** | **{total:.1f}** | 100% |", ""]
    apply = r.get("slicer_apply") or {}
    lines += ["### Slicer: Apply → result, through the module logic on slicer-core", ""]
    if "skipped" in apply:
        lines.append(f"Not measured: {apply['skipped']}.")
        return lines
    ashape = "×".join(str(n) for n in reversed(apply["shape_kji"]))
    lines += [
        f"The {ashape} sample CT; {apply['api']}; each Apply from the call to the outcome.",
        "",
        "| Apply | time (s) | worker start-up (s) | model build (s) | engine (s) | creating the nodes (s) |",
        "|:---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("first", "first (starts the worker)"), ("second", "second")):
        a = apply[key]
        start = "—" if a["startup_s"] is None else f"{a['startup_s']:.1f}"
        model = "—" if a["model_s"] is None else f"{a['model_s']:.2f}"
        lines.append(
            f"| {label} | {a['seconds']:.1f} | {start} | {model} | {a['engine_s']:.1f} | {a['import_s']:.1f} |"
        )
    warm = "the same worker process, model cached" if apply["same_worker"] and apply["second"]["model_cached"] else (
        "a new worker (the logic did not keep it warm)")  # fmt: skip
    lines += ["", f"Second Apply: {warm}; {apply['second']['seconds'] / apply['first']['seconds']:.2f}× the first."]
    return lines


def _peers(r: dict) -> list[str]:
    peers = r.get("peers") or {}
    if not peers:
        return []
    e2e = r["segment_stages"]["seconds"]
    lines = [
        "| network (random weights) | grid (z×y×x) | window, overlap | windows timed / whole CT | s per window | "
        "whole CT (s, est.) | MORSE end to end ÷ peer |",
        "|:---|:---|:---|---:|---:|---:|---:|",
    ]
    for p in peers.values():
        grid = "×".join(map(str, p["grid_zyx"]))
        roi = "×".join(map(str, p["roi_zyx"]))
        lines.append(
            f"| {p['label']} | {grid} | {roi}, {p['overlap']:g} | {p['windows_timed']} / {p['windows_total']} | "
            f"{p['seconds_per_window']:.1f} | {p['estimated_seconds']:.0f} | **{e2e / p['estimated_seconds']:.2f}×** |"
        )
    lines += [
        "",
        "The peers' whole-CT times are estimates: one warm-up window, then a fixed number of windows through MONAI's "
        "`sliding_window_inference` (Gaussian weighting) on a part of the CT that holds exactly that many, scaled to "
        "the number of windows MONAI places over the whole resampled CT, plus the resampling itself (measured). "
        "They count the network only, not reading or writing files, so the ratio favours the peers. MORSE's "
        f"end to end ({e2e:.1f} s) includes everything from reading the file to the last file written.",
    ]
    return lines


def _budget_section(budget: dict | None) -> list[str]:
    if not budget or "validation" not in budget:
        return ["Not run here: `python -m morse.bench.render_budget` writes `docs/results/render_budget.json`."]
    val = budget["validation"]
    lines = [
        f"Default pack {val['model']}; the head renders, of the {budget.get('test_points', 2048)} most uncertain cells "
        "of a slice per round, only those inside the body whose top-2 logit margin is below the threshold. Chosen on "
        f"the validation cases ({', '.join(val['cases'])}), labels before post-processing:",
        "",
        "| margin | cells rendered (share of fixed) | head time (share of fixed) | voxels changed (worst case) | "
        "mean DSC change (points) |",
        "|:---|---:|---:|---:|---:|",
    ]
    for key, row in val["summary"].items():
        if key == "fixed":
            continue
        lines.append(
            f"| {key} | {row['cells_share_of_fixed']:.0%} | {row['refine_share_of_fixed']:.0%} | "
            f"{row['max_changed_share']:.4%} | {100 * row['dsc_change']:+.2f} |"
        )
    lines += ["", f"Chosen: **{val['chosen']}** (the smallest margin meeting the criterion on every validation case)."]
    test = budget.get("test")
    if test:
        row = test["summary"][f"{test['margins'][0]:g}"]
        lines.append(
            f"Test ({len(test['cases'])} BTCV cases, run once with it): {row['cells_share_of_fixed']:.0%} of the "
            f"cells, labels changed on at most {row['max_changed_share']:.4%} of a case's voxels (mean "
            f"{row['mean_changed_share']:.4%}), mean DSC {100 * test['summary']['fixed']['mean_dsc']:.2f} → "
            f"{100 * row['mean_dsc']:.2f}."
        )
    return lines


def render(r: dict) -> str:
    from .uncertainty_cost import render as render_uncertainty

    wv = r["whole_volume"]
    base = wv["backbone"]["seconds"]
    ratio_ref, ratio_full = wv["refined"]["seconds"] / base, wv["full"]["seconds"] / base
    ts = r["train_step"]
    shape = "×".join(str(s) for s in reversed(wv["backbone"]["shape_kji"]))
    device = r.get("device", "cpu")
    margin = r.get("render_margin")
    lines = [
        "# Benchmark: what a user waits for, and what MORSE costs",
        "",
        f"Machine: {r['hardware']}; {r['threads']} threads; device {device}. Model: {r['model']} (rendering budget: "
        + ("the fixed 2 × test_points" if margin is None else f"adaptive, top-2 margin < {margin:g}")
        + "). "
        + ("**Quick smoke run (small sizes, one repeat): not representative.**" if r["quick"] else "")
        + " Times are medians after a warm-up, every configuration in its own process; ratios are what counts.",
        "",
        "## Targets",
        "",
        *_targets(r),
        "",
        "## 1. What a user waits for",
        "",
        *_waiting(r),
        "",
        f"## 2. Whole-volume inference ({shape} CT, I×J×K, {device})",
        "",
        "| configuration | time (s) | ratio | stages: backbone / refine / gating / rest (s) | peak RSS (MB) |",
        "|:---|---:|---:|:---|---:|",
    ]
    modes = (("backbone", "backbone only (coarse)"), ("refined", "MORSE refined"),
             ("full", "MORSE refined + gating maps (stride 2) + uncertainty, uint8 maps (as Slicer gets them)"),
             ("full_float", "the same with float32 maps (the engine's default arrays)"))  # fmt: skip
    for mode, label in modes:
        if mode not in wv:
            continue
        m = wv[mode]
        st = m["stages"]
        other = st.get("total", m["seconds"]) - st.get("backbone", 0) - st.get("refine", 0) - st.get("gating", 0)
        stages = f"{st.get('backbone', 0):.1f} / {st.get('refine', 0):.1f} / {st.get('gating', 0):.1f} / {other:.1f}"
        lines.append(
            f"| {label} | {m['seconds']:.1f} | {m['seconds'] / base:.2f}× | {stages} | {m['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        *_whole_volume_misses(wv, ratio_ref, ratio_full),
        *_work_per_slice(r.get("stage_flops"), wv),
        f"- `morse segment` with every output: peak RSS {r['segment_cli']['peak_rss_mb'] / 1024:.2f} GB.",
        "",
        f"## 3. The networks a user would run instead ({shape} CT, {device}"
        + (", bf16" if any(p.get("bf16") for p in (r.get("peers") or {}).values()) else "")
        + ")",
        "",
        *_peers(r),
        "",
        "## 4. Adaptive rendering budget (BTCV)",
        "",
        *_budget_section(r.get("render_budget")),
        "",
        "## 5. What each uncertainty option costs",
        "",
        *render_uncertainty(r.get("uncertainty")),
        "",
        f"## 6. One 2D training step (batch {ts['batch']}, {ts['size']}², forward + backward + AdamW, CPU)",
        "",
        "| configuration | step (s) | ratio to backbone | peak RSS (MB) |",
        "|:---|---:|---:|---:|",
    ]
    for preset, label in (("backbone", "backbone only (CE + Dice)"), ("fast", "MORSE `fast` (point-wise SMoE + IAR)"),
                          ("paper", "MORSE `paper` (dense 3×3 gating)")):  # fmt: skip
        m = ts[preset]
        lines.append(f"| {label} | {m['seconds']:.2f} | {m['seconds'] / ts['backbone']['seconds']:.2f}× | "
                     f"{m['peak_rss_mb']:.0f} |")  # fmt: skip
    lines += [
        "",
        "- Accuracy of `fast` against `paper` on the same data: see `ablation.md` (section *fast vs paper preset*).",
        "",
        f"## 7. One 3D patch ({r['patch_3d']['size']}³, inference, CPU)",
        "",
        "| network | backbone (s) | + MORSE (s) | ratio | MORSE stages: backbone / refine (s) |",
        "|:---|---:|---:|---:|:---|",
    ]
    for name in ("unet3d", "unetr"):
        b, m = r["patch_3d"][name], r["patch_3d"][f"{name}+morse"]
        st = m["stages"]
        lines.append(f"| {name} | {b['seconds']:.2f} | {m['seconds']:.2f} | {m['seconds'] / b['seconds']:.2f}× | "
                     f"{st.get('backbone', 0):.2f} / {st.get('refine', 0):.2f} |")  # fmt: skip
    lines += ["", "## 8. CUDA, bf16 autocast", ""]
    cuda = r["cuda"]
    if "skipped" in cuda:
        lines.append(
            f"Not measured here: {cuda['skipped']}. On a machine with an NVIDIA GPU, "
            "`morse bench --device cuda --bf16` runs every table above on it (MORSE always autocasts to bf16 on "
            "CUDA) and fills this one."
        )
    else:
        lines.append(f"{cuda['gpu']}: backbone {cuda['backbone']:.2f} s, MORSE refined {cuda['refined']:.2f} s "
                     f"({cuda['refined'] / cuda['backbone']:.2f}×), "
                     f"peak GPU memory {cuda['peak_gpu_mb']:.0f} MB.")  # fmt: skip
    if "memory" in r:
        from .memory_rows import render as render_memory

        lines += ["", *render_memory(r["memory"])]
    lines += ["", "## How to reproduce", "", "```bash", "make bench        # = morse bench (writes this file)",
              "morse bench --quick   # smoke run with small sizes",
              "morse bench --device cuda --bf16   # on a GPU",
              "python -m morse.bench.render_budget DATA --cases ... --margins ... --out FILE  # the budget study",
              "```", ""]  # fmt: skip
    return "\n".join(lines)
