"""``morse bench``: the cost of MORSE over its backbone, as ratios measured side by side in one run.

Tables (medians after a warm-up; every configuration in a fresh child process for a clean peak-memory reading):

1. whole-volume inference of the default model on a 512×512×191 CT: backbone only vs MORSE refined vs MORSE refined
   with gating maps (stride 2) and uncertainty; plus ``morse segment`` end to end (peak memory);
2. one 2D training step (batch 4, 256²): backbone only vs the ``fast`` preset vs the ``paper`` preset (dense gating);
3. one 3D patch (96³) for a 3D UNet and UNETR: backbone vs MORSE inference;
4. the whole-volume comparison on CUDA with bf16 autocast, when a GPU is present.

Targets (DESIGN §6 and the performance requirements) are checked and every miss is reported with its size.
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
    "refined_over_backbone": 1.3,
    "full_over_backbone": 2.0,
    "fast_step_over_backbone": 1.5,
    "paper_step_over_fast": 10.0,
    "segment_peak_gb": 6.0,
}


def _child(name: str, threads: int, timeout: float = 3600, **kwargs) -> dict:
    """Run one workload in a fresh Python process and return its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "morse.bench.workloads", name, json.dumps({**kwargs, "threads": threads})]
    log.info("bench: %s %s", name, json.dumps(kwargs))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("MORSE-BENCH-RESULT "):
            return json.loads(line.split(" ", 1)[1])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    raise MorseError(f"benchmark workload {name} failed (exit {proc.returncode}): " + " | ".join(tail))


def _verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return "met" if ok else "**missed**"


def run(args) -> int:
    from ..data.fetch import data_root
    from ..experiments.runs import hardware
    from ..modelpack import load_model_pack
    from .workloads import bench_ct

    quick = bool(args.quick)
    threads = os.cpu_count() or 1
    repeats = 1 if quick else 3
    pack = load_model_pack("default")
    model = str(pack.path)
    ct = bench_ct(data_root() / "bench")
    results: dict = {
        "hardware": hardware(),
        "quick": quick,
        "threads": threads,
        "model": f"{pack.model_id} {pack.version}",
    }
    vol_path = str(ct)
    if quick:  # a few slices of the same CT keep the smoke run short
        vol_path = str(_slab(ct, 24))
    results["whole_volume"] = {
        mode: _child("whole_volume", threads, path=vol_path, model=model, mode=mode, repeats=repeats)
        for mode in ("backbone", "refined", "full", "full_float")
    }
    results["stage_flops"] = _child("stage_flops", threads, path=vol_path, model=model)
    with tempfile.TemporaryDirectory() as tmp:
        results["segment_cli"] = _child("segment_cli_memory", threads, path=vol_path, model=model, out_dir=tmp)
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
    text = render(results)
    print(text)
    out = Path(args.out)
    if not quick:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"\nwrote {out}")
    return 0


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


def render(r: dict) -> str:
    wv = r["whole_volume"]
    base = wv["backbone"]["seconds"]
    ratio_ref, ratio_full = wv["refined"]["seconds"] / base, wv["full"]["seconds"] / base
    ts = r["train_step"]
    fast_ratio = ts["fast"]["seconds"] / ts["backbone"]["seconds"]
    paper_over_fast = ts["paper"]["seconds"] / ts["fast"]["seconds"]
    peak_gb = r["segment_cli"]["peak_rss_mb"] / 1024
    shape = "×".join(str(s) for s in reversed(wv["backbone"]["shape_kji"]))
    lines = [
        "# Benchmark: the cost of MORSE over its backbone",
        "",
        f"Machine: {r['hardware']}; {r['threads']} threads. Model: {r['model']}. "
        + ("**Quick smoke run (small sizes, one repeat): not representative.**" if r["quick"] else "")
        + " Times are medians after a warm-up, every configuration in its own process; ratios are what counts.",
        "",
        f"## 1. Whole-volume inference ({shape} CT, I×J×K, CPU)",
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
        f"- MORSE refined: **{ratio_ref:.2f}×** the backbone (target ≤ {TARGETS['refined_over_backbone']}×: "
        f"{_verdict(ratio_ref, TARGETS['refined_over_backbone'])}).",
        f"- With gating maps and uncertainty: **{ratio_full:.2f}×** (target ≤ {TARGETS['full_over_backbone']}×: "
        f"{_verdict(ratio_full, TARGETS['full_over_backbone'])}).",
        *_whole_volume_misses(wv, ratio_ref, ratio_full),
        *_work_per_slice(r.get("stage_flops"), wv),
        f"- `morse segment` end to end (read, infer with every map, write every output): "
        f"{r['segment_cli']['seconds']:.1f} s, peak RSS **{peak_gb:.2f} GB** "
        f"(target ≤ {TARGETS['segment_peak_gb']} GB: "
        f"{_verdict(peak_gb, TARGETS['segment_peak_gb'])}).",
        "",
        f"## 2. One 2D training step (batch {ts['batch']}, {ts['size']}², forward + backward + AdamW, CPU)",
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
        f"- `fast` step: **{fast_ratio:.2f}×** the backbone step (target ≤ {TARGETS['fast_step_over_backbone']}×: "
        f"{_verdict(fast_ratio, TARGETS['fast_step_over_backbone'])}).",
        f"- `paper` step: **{paper_over_fast:.1f}×** the `fast` step "
        f"(target: `fast` ≥ {TARGETS['paper_step_over_fast']:.0f}× "
        f"faster: {_verdict(paper_over_fast, TARGETS['paper_step_over_fast'], lower_is_better=False)}).",
        "- Accuracy of `fast` against `paper` on the same data: see `ablation.md` (section *fast vs paper preset*).",
        "",
        f"## 3. One 3D patch ({r['patch_3d']['size']}³, inference, CPU)",
        "",
        "| network | backbone (s) | + MORSE (s) | ratio | MORSE stages: backbone / refine (s) |",
        "|:---|---:|---:|---:|:---|",
    ]
    for name in ("unet3d", "unetr"):
        b, m = r["patch_3d"][name], r["patch_3d"][f"{name}+morse"]
        st = m["stages"]
        lines.append(f"| {name} | {b['seconds']:.2f} | {m['seconds']:.2f} | {m['seconds'] / b['seconds']:.2f}× | "
                     f"{st.get('backbone', 0):.2f} / {st.get('refine', 0):.2f} |")  # fmt: skip
    lines += ["", "## 4. CUDA, bf16 autocast", ""]
    cuda = r["cuda"]
    if "skipped" in cuda:
        lines.append(
            f"Skipped: {cuda['skipped']}. Run `make bench` on a machine with an NVIDIA GPU to fill this table."
        )
    else:
        lines.append(f"{cuda['gpu']}: backbone {cuda['backbone']:.2f} s, MORSE refined {cuda['refined']:.2f} s "
                     f"({cuda['refined'] / cuda['backbone']:.2f}×), "
                     f"peak GPU memory {cuda['peak_gpu_mb']:.0f} MB.")  # fmt: skip
    lines += ["", "## How to reproduce", "", "```bash", "make bench        # = morse bench (writes this file)",
              "morse bench --quick   # smoke run with small sizes", "```", ""]  # fmt: skip
    return "\n".join(lines)
