"""Whole-volume inference: a numpy volume and its geometry in, every MORSE output on the same grid out.

2D models run slice by slice in batches; 3D models run MONAI's sliding-window inference, stitching coarse logits,
refined logits, rectified points and gate maps together. Memory stays bounded: full-resolution per-class float
volumes are never kept, only uint8 labels and the maps that were asked for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..device import resolve_device
from ..errors import CancelledError
from ..modelpack import ModelPack, load_model_pack
from ..timing import stage
from .preprocess import PreparedVolume, crop, pad_to_multiple, prepare, resize
from .result import SegmentationResult
from .validation import validate_volume

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]
CancelCheck = Callable[[], bool]

_MODEL_CACHE: dict[tuple, torch.nn.Module] = {}


def get_model(pack: ModelPack, device: torch.device) -> torch.nn.Module:
    """The pack's network on ``device``; the last one built is kept so repeated runs (Slicer) skip loading."""
    key = (str(pack.path.resolve()), pack.meta["weights"].get("sha256"), str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        net = pack.build(device)
        if pack.config.spatial_dims == 2:  # NHWC convolutions are faster, and point sampling reads NHWC rows directly
            net = net.to(memory_format=torch.channels_last)
        _MODEL_CACHE[key] = net
    return _MODEL_CACHE[key]


def release_models() -> None:
    """Drop the cached network and free GPU memory (between cases or when Slicer's scene closes)."""
    _MODEL_CACHE.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _uncertainty_map(coarse: torch.Tensor) -> torch.Tensor:
    """1 − (p_max − p_second) of the softmax, ``(B, C, *S) → (B, 1, *S)`` in [0, 1]."""
    top2 = torch.softmax(coarse.float(), dim=1).topk(2, dim=1).values
    return 1.0 - (top2[:, :1] - top2[:, 1:2])


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class _Run:
    """Everything one inference run needs besides the prepared volume and the output arrays."""

    net: torch.nn.Module
    pack: ModelPack
    device: torch.device
    refine: bool
    gating: bool
    stride: int
    batch_size: int | None
    timings: dict[str, float]
    report: ProgressCallback
    is_cancelled: CancelCheck

    def check_cancel(self) -> None:
        if self.is_cancelled():
            raise CancelledError()

    def predict(self, x: torch.Tensor):
        with _autocast(self.device):
            return self.net.predict(
                x, refine=self.refine, gating_stride=self.stride if self.gating else None, timings=self.timings
            )


class _Outputs:
    """Output arrays on the reoriented input grid (D, H, W), filled batch by batch."""

    def __init__(self, shape, num_experts: int, refine: bool, gating: bool, uncertainty: bool):
        self.labels = np.zeros(shape, np.uint8)
        self.coarse = np.zeros(shape, np.uint8) if refine else self.labels
        self.rectified = np.zeros(shape, np.uint8) if refine else None
        self.uncertainty = np.zeros(shape, np.float32) if uncertainty else None
        self.gating = np.zeros((num_experts, *shape), np.float32) if gating else None


def segment_volume(
    volume: np.ndarray,
    ijk_to_ras: np.ndarray,
    model: str | Path | ModelPack = "default",
    device: str = "auto",
    refine: bool = True,
    gating: bool = True,
    uncertainty: bool = True,
    gating_stride: int | None = None,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> SegmentationResult:
    """Segment ``volume (K, J, I)`` with IJK→RAS ``ijk_to_ras (4, 4)``.

    Args:
        model: ``"default"``, a model-pack folder, or a loaded :class:`ModelPack`.
        device: ``auto``/``cpu``/``cuda``/``mps``; an unavailable device falls back to the CPU with a message in
            ``result.messages``.
        refine: run the rendering head (else refined = coarse).
        gating / uncertainty: compute the expert gate maps / the uncertainty map.
        gating_stride: grid stride of the gate maps (default from the model pack, 2).
        progress: called as ``progress(stage_name, fraction)`` with fraction in [0, 1].
        cancel: polled between batches; returning True raises :class:`CancelledError`.

    Returns:
        :class:`SegmentationResult` with every array on the input's grid (KJI) and the same ``ijk_to_ras``.
    """
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    report = progress or (lambda _stage, _fraction: None)
    is_cancelled = cancel or (lambda: False)
    volume, messages = validate_volume(volume, ijk_to_ras)
    pack = model if isinstance(model, ModelPack) else load_model_pack(model)
    spatial_dims = pack.config.spatial_dims
    choice = resolve_device(device, spatial_dims)
    if choice.message:
        messages.append(choice.message)
    report("loading model", 0.0)
    with stage(timings, "load"):
        net = get_model(pack, choice.device)
    has_head = net.head is not None
    refine = refine and has_head
    gating = gating and net.features is not None and net.features.cfg.kind == "smoe"
    stride = gating_stride or int(pack.inference["gating_stride"])
    report("preprocessing", 0.0)
    with stage(timings, "preprocess"):
        prep = prepare(volume, ijk_to_ras, pack.preprocessing, spatial_dims)
    outputs = _Outputs(prep.shape, net.num_experts, refine, gating, uncertainty)
    run = _Run(net, pack, choice.device, refine, gating, stride, batch_size, timings, report, is_cancelled)
    (_run_slices if spatial_dims == 2 else _run_volume)(run, prep, outputs)
    report("finishing", 1.0)
    with stage(timings, "postprocess"):
        result = SegmentationResult(
            labels=np.ascontiguousarray(prep.reorder.invert(outputs.labels)),
            coarse_labels=np.ascontiguousarray(prep.reorder.invert(outputs.coarse)),
            ijk_to_ras=np.asarray(ijk_to_ras, dtype=np.float64).copy(),
            labels_info=list(pack.labels),
            rectified=None
            if outputs.rectified is None
            else np.ascontiguousarray(prep.reorder.invert(outputs.rectified)),
            uncertainty=None
            if outputs.uncertainty is None
            else np.ascontiguousarray(prep.reorder.invert(outputs.uncertainty)),
            gating=None if outputs.gating is None else np.ascontiguousarray(prep.reorder.invert(outputs.gating)),
            model_id=pack.model_id,
            model_version=pack.version,
            device=choice.name,
            messages=messages,
        )
        if result.gating is not None:
            result.dominant_expert = (result.gating.argmax(axis=0) + 1).astype(np.uint8)
    timings["total"] = time.perf_counter() - t_start
    result.timings = timings
    return result


def _run_slices(run: _Run, prep: PreparedVolume, out: _Outputs) -> None:
    """2D model: batches of slices along the reoriented k axis."""
    depth, height, width = prep.shape
    model_hw = prep.model_shape[1:]
    bs = run.batch_size or int(run.pack.inference["batch_size"])
    for start in range(0, depth, bs):
        run.check_cancel()
        stop = min(depth, start + bs)
        run.report("segmenting", start / depth)
        with stage(run.timings, "preprocess"):
            x = torch.from_numpy(prep.image[start:stop]).unsqueeze(1)  # (B, 1, H, W)
            x = resize(x, model_hw)
            x, size = pad_to_multiple(x, run.net.size_multiple)
            x = x.to(run.device).contiguous(memory_format=torch.channels_last)
        pred = run.predict(x)
        with stage(run.timings, "postprocess", run.device):
            _store_slices(out, pred, size, (height, width), slice(start, stop))
    run.report("segmenting", 1.0)


def _store_slices(out: _Outputs, pred, size, full_hw, rows: slice) -> None:
    """Map one batch of predictions (model grid) back to the reoriented input slices."""
    scale = pred.refined.shape[-1] // pred.coarse.shape[-1]
    refined = resize(crop(pred.refined.float(), size, scale), full_hw)
    out.labels[rows] = refined.argmax(1).to(torch.uint8).cpu().numpy()
    coarse = crop(pred.coarse.float(), size)
    if out.coarse is not out.labels:
        out.coarse[rows] = resize(coarse, full_hw).argmax(1).to(torch.uint8).cpu().numpy()
    if out.rectified is not None and pred.rectified is not None:
        rect = crop(pred.rectified[:, None].float(), size, scale)
        out.rectified[rows] = resize(rect, full_hw, mode="nearest")[:, 0].to(torch.uint8).cpu().numpy()
    if out.uncertainty is not None:
        out.uncertainty[rows] = resize(_uncertainty_map(coarse), full_hw)[:, 0].clamp(0, 1).cpu().numpy()
    if out.gating is not None and pred.gating is not None:
        padded = tuple(pred.coarse.shape[2:])
        gates = crop(resize(pred.gating.float(), padded), size)
        out.gating[:, rows] = resize(gates, full_hw).clamp(0, 1).permute(1, 0, 2, 3).cpu().numpy()


def _run_volume(run: _Run, prep: PreparedVolume, out: _Outputs) -> None:
    """3D model: sliding windows over the volume resized to the model's voxel size."""
    from monai.inferers import sliding_window_inference

    net = run.net
    roi = tuple(getattr(net.backbone, "img_size", None) or run.pack.inference.get("roi_size") or (96, 96, 96))
    overlap = float(run.pack.inference["sw_overlap"])
    with stage(run.timings, "preprocess"):
        x = torch.from_numpy(prep.image)[None, None]
        x = resize(x, prep.model_shape)
        x, size = pad_to_multiple(x, net.size_multiple, minimum=max(roi))
        x = x.to(run.device)
    steps = [-(-(s - r) // max(1, int(r * (1 - overlap)))) + 1 if s > r else 1 for s, r in zip(x.shape[2:], roi)]
    windows = {"done": 0, "total": int(np.prod(steps))}

    def predictor(patch: torch.Tensor):
        run.check_cancel()
        pred = run.predict(patch)
        windows["done"] += patch.shape[0]
        run.report("segmenting", min(0.99, windows["done"] / windows["total"]))
        parts = [pred.refined.float(), pred.coarse.float()]
        if pred.rectified is not None:
            parts.append(pred.rectified[:, None].float())
        if pred.gating is not None:
            parts.append(resize(pred.gating.float(), tuple(patch.shape[2:])))
        return tuple(parts)

    stitched = sliding_window_inference(
        x,
        roi,
        sw_batch_size=run.batch_size or 1,
        predictor=predictor,
        overlap=overlap,
        mode="gaussian",
        sw_device=run.device,
        device=torch.device("cpu"),
    )
    with stage(run.timings, "postprocess"):
        refined, coarse = crop(stitched[0], size), crop(stitched[1], size)
        extra = list(stitched[2:])
        full = prep.shape
        labels = refined.argmax(1, keepdim=True).float()
        out.labels[:] = resize(labels, full, mode="nearest")[0, 0].to(torch.uint8).numpy()
        if out.coarse is not out.labels:
            out.coarse[:] = resize(coarse.argmax(1, keepdim=True).float(), full, mode="nearest")[0, 0].numpy()
        if out.rectified is not None and run.refine:
            rect = crop(extra.pop(0), size)
            out.rectified[:] = (resize(rect, full, mode="nearest")[0, 0] > 0.5).numpy()
        if out.uncertainty is not None:
            out.uncertainty[:] = resize(_uncertainty_map(coarse), full)[0, 0].clamp(0, 1).numpy()
        if out.gating is not None and extra:
            gates = crop(extra.pop(0), size)
            for k in range(gates.shape[1]):  # one expert at a time keeps the full-resolution float footprint small
                out.gating[k] = resize(gates[:, k : k + 1], full)[0, 0].clamp(0, 1).numpy()
