"""The workloads of ``morse bench``, each a function that runs one configuration and returns its measurements.

Every workload runs in a fresh child process (see :mod:`morse.bench.bench_command`) so that peak memory is that of
the configuration alone, and all configurations of one table are measured side by side in the same run.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

import torch

BENCH_CT_SHAPE = (512, 512)  # in-plane size of the benchmark CT (KJI: k slices of 512×512)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def bench_ct(cache_dir: Path) -> Path:
    """A 512×512×191 abdominal CT (NIfTI) made from the registry CT angiography (233×167×191 at 1.5 mm):
    resampled in-plane to 0.75 mm and padded with air to 512×512, the size of a clinical scan. Cached."""
    import SimpleITK as sitk  # noqa: N813

    from ..data.cases import case_path

    out = cache_dir / "bench-ct-512x512x191.nii.gz"
    if out.is_file():
        return out
    src = sitk.ReadImage(str(case_path("cta-chest-abdomen")))
    spacing = (0.75, 0.75, src.GetSpacing()[2])
    size = (BENCH_CT_SHAPE[1], BENCH_CT_SHAPE[0], src.GetSize()[2])
    extent = [sz * sp for sz, sp in zip(src.GetSize(), src.GetSpacing())]
    # centre the original field of view in the larger 512×512 grid
    origin = [o + (e - n * s) / 2 for o, e, n, s in zip(src.GetOrigin(), extent, size, spacing)]
    origin[2] = src.GetOrigin()[2]
    ref = sitk.Image(size, sitk.sitkInt16)
    ref.SetSpacing(spacing)
    ref.SetOrigin(origin)
    ref.SetDirection(src.GetDirection())
    image = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial.nii.gz")
    sitk.WriteImage(image, str(tmp), useCompression=True)
    tmp.replace(out)
    return out


def whole_volume(path: str, model: str, mode: str, repeats: int, device: str = "cpu") -> dict:
    """Whole-volume inference timings (median over ``repeats`` after a warm-up) for ``mode`` in
    ``backbone`` (coarse only), ``refined`` (rendering head), ``full`` (refined, gating maps at stride 2,
    uncertainty, stored as uint8 as the Slicer module receives them), ``full_float`` (the same as float32 arrays)."""
    from ..imageio import read_image
    from ..inference.pipeline import segment_volume
    from ..modelpack import load_model_pack

    image = read_image(path)
    pack = load_model_pack(model)
    options = {
        "backbone": dict(refine=False, gating=False, uncertainty=False),
        "refined": dict(refine=True, gating=False, uncertainty=False),
        "full": dict(refine=True, gating=True, uncertainty=True, gating_stride=2, maps_uint8=True),
        "full_float": dict(refine=True, gating=True, uncertainty=True, gating_stride=2),
    }[mode]
    segment_volume(image.array[:8], image.ijk_to_ras, model=pack, device=device, **options)  # warm-up
    times, stages = [], []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = segment_volume(image.array, image.ijk_to_ras, model=pack, device=device, **options)
        _sync(device)
        times.append(time.perf_counter() - start)
        stages.append(result.timings)
    median_stage = {k: statistics.median(s.get(k, 0.0) for s in stages) for k in stages[0]}
    return {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "stages": median_stage,
        "shape_kji": list(image.array.shape),
        "peak_rss_mb": peak_rss_mb(),
        "device": result.device,
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def segment_cli_memory(path: str, model: str, out_dir: str) -> dict:
    """``morse segment`` end to end (read, infer with every map, write every output): wall time and peak RSS."""
    from ..cli import main

    start = time.perf_counter()
    code = main(["segment", path, "-o", out_dir, "--model", model, "--device", "cpu", "--overwrite"])
    return {"seconds": time.perf_counter() - start, "exit_code": code, "peak_rss_mb": peak_rss_mb()}


def _train_step_fn(preset: str, size: int, batch: int):
    from ..config import load_experiment
    from ..losses import MorseLoss
    from ..model import MorseModel

    repo = Path(__file__).resolve().parents[3]
    overrides = {"model": {"num_classes": 9}}
    if preset == "backbone":
        cfg = load_experiment(repo / "configs" / "presets" / "fast.yaml", overrides)
        cfg.model.features = None
        cfg.model.point_head = None
    else:
        cfg = load_experiment(repo / "configs" / "presets" / f"{preset}.yaml", overrides)
    torch.manual_seed(0)
    model = MorseModel(cfg.model).to(memory_format=torch.channels_last)
    model.set_generator(torch.Generator().manual_seed(0))
    loss_fn = MorseLoss(cfg.loss)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 9, (batch, size, size))

    def step():
        out = model(x)
        loss = loss_fn(out, y, 3, 4)["total"]  # second half of the schedule: the rendering loss is on
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def train_step(preset: str, size: int, batch: int, repeats: int) -> dict:
    """Median time of one 2D training step (forward, losses, backward, AdamW) for ``preset`` in
    ``backbone`` / ``fast`` / ``paper``."""
    step = _train_step_fn(preset, size, batch)
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "all_seconds": times, "peak_rss_mb": peak_rss_mb()}


def patch_3d(backbone: str, with_heads: bool, size: int, repeats: int) -> dict:
    """Median inference time of one 3D patch (``size``³) for a UNet3D or UNETR, alone or with MORSE heads
    (the fast preset's heads, test points and subdivision)."""
    from ..config import BackboneConfig, load_experiment
    from ..model import MorseModel

    repo = Path(__file__).resolve().parents[3]
    cfg = load_experiment(repo / "configs" / "presets" / "fast.yaml", {"model": {"num_classes": 9}}).model
    cfg.backbone = BackboneConfig(name=backbone, img_size=[size] * 3 if backbone == "unetr" else None)
    if not with_heads:
        cfg.features = None
        cfg.point_head = None
    torch.manual_seed(0)
    model = MorseModel(cfg).eval()
    x = torch.randn(1, 1, size, size, size)
    model.predict(x)
    times, stages = [], []
    for _ in range(repeats):
        timings: dict[str, float] = {}
        start = time.perf_counter()
        model.predict(x, timings=timings)
        times.append(time.perf_counter() - start)
        stages.append(timings)
    return {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "stages": {k: statistics.median(s.get(k, 0.0) for s in stages) for k in stages[0]},
        "peak_rss_mb": peak_rss_mb(),
    }


def cuda_bf16(model: str, path: str, repeats: int) -> dict:
    """The whole-volume comparison on CUDA with bf16 autocast (the pipeline's default on CUDA)."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU on this machine"}
    from ..imageio import read_image
    from ..inference.pipeline import segment_volume

    image = read_image(path)
    out = {}
    for mode, opts in (("backbone", dict(refine=False, gating=False, uncertainty=False)), ("refined", {})):
        segment_volume(image.array[:8], image.ijk_to_ras, model=model, device="cuda", **opts)
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            segment_volume(image.array, image.ijk_to_ras, model=model, device="cuda", **opts)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        out[mode] = statistics.median(times)
    out["gpu"] = torch.cuda.get_device_name(0)
    out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def stage_flops(path: str, model: str) -> dict:
    """Multiply-add work (FLOPs of convolutions and matrix products, PyTorch's counter) of the backbone, the
    rendering head and the stride-2 gate map on one slice of the CT at the model's resolution."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..imageio import read_image
    from ..inference.pipeline import get_model
    from ..inference.preprocess import pad_to_multiple, prepare, resize
    from ..modelpack import load_model_pack

    image = read_image(path)
    pack = load_model_pack(model)
    net = get_model(pack, torch.device("cpu")).eval()
    middle = image.array.shape[0] // 2
    prep = prepare(image.array[middle : middle + 1], image.ijk_to_ras, pack.preprocessing, 2)
    x = resize(torch.from_numpy(prep.image).unsqueeze(1), prep.model_shape[1:])
    x, _ = pad_to_multiple(x, net.size_multiple)
    x = x.contiguous(memory_format=torch.channels_last)
    flops = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            out = net.backbone(x)
        flops["backbone"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            prepared = net.features.prepare(out.experts, net.cfg.point_head.test_points)
            _, rectified = net._refine(out.logits, out.experts, prepared)
        flops["refine"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            net.gate_map(out.experts, tuple(out.logits.shape[2:]), 2, prepared)
        flops["gating"] = counter.get_total_flops()
    return {"flops": flops, "model_slice": list(x.shape[2:]), "rectified_cells": int(rectified.sum())}


def segment_stages(path: str, model: str, out_dir: str, device: str = "cpu") -> dict:
    """``morse segment`` end to end, per step and engine stage (see :mod:`morse.bench.end_to_end`)."""
    from .end_to_end import segment_stages as measure

    return {**measure(path, model, out_dir, device), "peak_rss_mb": peak_rss_mb()}


def peer_network(
    name: str, path: str, windows: int, device: str = "cpu", bf16: bool = False, quick: bool = False
) -> dict:
    """A peer network's sliding-window cost on the CT (see :mod:`morse.bench.peers`)."""
    from .peers import peer_network as measure

    return {**measure(name, path, windows, device=device, bf16=bf16, quick=quick), "peak_rss_mb": peak_rss_mb()}


def uncertainty_options(path: str, model: str, stride: int) -> dict:
    """Each uncertainty option's cost over the refined run's network (see :mod:`morse.bench.uncertainty_cost`)."""
    from .uncertainty_cost import option_costs

    return {**option_costs(path, model, stride), "peak_rss_mb": peak_rss_mb()}


WORKLOADS = {
    "uncertainty_options": uncertainty_options,
    "segment_stages": segment_stages,
    "peer_network": peer_network,
    "stage_flops": stage_flops,
    "whole_volume": whole_volume,
    "segment_cli_memory": segment_cli_memory,
    "train_step": train_step,
    "patch_3d": patch_3d,
    "cuda_bf16": cuda_bf16,
}


def worker_main(argv: list[str]) -> int:
    """Child-process entry: ``python -m morse.bench.workloads NAME JSON_KWARGS`` → one JSON line on stdout."""
    import json

    name, kwargs = argv[0], json.loads(argv[1])
    torch.set_num_threads(int(kwargs.pop("threads", torch.get_num_threads())))
    result = WORKLOADS[name](**kwargs)
    print("MORSE-BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
