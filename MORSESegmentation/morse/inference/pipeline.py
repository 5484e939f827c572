"""Whole-volume inference: a numpy volume and its geometry in, every MORSE output on the same grid out.

2D models run slice by slice in batches; 3D models run MONAI's sliding-window inference, stitching coarse logits,
refined logits, rectified points and gate maps together (on the CPU, in slabs along z when memory is short).
Memory stays bounded: the full-resolution outputs (allocated once, in the input's own layout) are the only
volume-sized arrays besides the input and its prepared float32 copy; :mod:`morse.inference.memory` estimates the
peak before running, logs it, and lowers the batch or the stitching slab to fit the free memory.

Device faults: when the network runs out of memory (CUDA, MPS or CPU), the batch is halved and retried, down to one
slice or window; a GPU that still runs out hands over to the CPU. Each step is reported in ``result.messages``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ..device import resolve_device
from ..errors import CancelledError, InputError, ModelPackError
from ..geometry import AxisReorder
from ..heads.point_ops import uncertainty
from ..modelpack import ModelPack, load_model_pack
from ..timing import stage
from ..uncertainty.calibration import map_settings
from ..uncertainty.maps import from_logits
from ..uncertainty.review import build_review
from ..uncertainty.review import settings_from_pack as review_settings
from .anatomy import is_hounsfield, postprocess_volume, settings_from_pack
from .chunked import dominant_expert, resize_linear_into, resize_nearest_into
from .domain import DomainReport, check_domain, domain_of
from .label_resize import upsampled_labels
from .map_values import quantize_unit
from .memory import plan_inference
from .preprocess import PreparedVolume, crop, pad_to_multiple, prepare, resize
from .result import SegmentationResult
from .validation import check_intensities, check_model_grid, validate_volume
from .windows import window_count

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


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the out-of-memory errors of CUDA (``torch.OutOfMemoryError``), Apple MPS and the CPU allocator, and
    numpy's ``MemoryError``."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(s in text for s in ("out of memory", "can't allocate memory", "not enough memory"))
    return False


def _free_device_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def _uncertainty_map(coarse: torch.Tensor, refined: torch.Tensor | None = None, how=None) -> torch.Tensor:
    """``(B, C, *S) → (B, 1, *S)`` in [0, 1]: the pack's calibrated option ``how = (option, temperature)``
    (:func:`morse.uncertainty.calibration.map_settings`); None: 1 − (p_max − p_second) of the coarse softmax."""
    if how is None:
        return 1.0 + uncertainty(torch.softmax(coarse.float(), dim=1)).unsqueeze(1)
    return from_logits(coarse, coarse if refined is None else refined, None, how[0], how[1])


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _cat_predictions(parts: list):
    """One :class:`morse.model.Prediction` from predictions of consecutive sub-batches."""
    first = parts[0]
    fields = {}
    for name in ("coarse", "refined", "rectified", "gating"):
        values = [getattr(p, name) for p in parts]
        fields[name] = None if values[0] is None else torch.cat(values, dim=0)
    return type(first)(**fields)


BODY_REACH_CELLS = 2  # cells the body region reaches past tissue: organ borders lie in fat next to soft tissue


def render_region(x: torch.Tensor, intensity) -> torch.Tensor | None:
    """Where the rendering head may work on a batch ``x (B, 1, *S)`` of normalised model input: cells above the
    bottom of a Hounsfield window (not air, not the fattest fat) and those within :data:`BODY_REACH_CELLS` of
    them, as bool ``(B, *S)``. None (everywhere) for intensities that are not a CT window."""
    if not is_hounsfield(intensity):
        return None
    pool = F.max_pool2d if x.dim() == 4 else F.max_pool3d
    size = 2 * BODY_REACH_CELLS + 1
    return pool((x > 0).to(x.dtype), size, stride=1, padding=BODY_REACH_CELLS)[:, 0] > 0


@dataclass
class _Run:
    """Everything one inference run needs besides the prepared volume and the output arrays.

    ``batch_size`` is the current limit (lowered after an out-of-memory error); ``device``/``net`` change when a GPU
    hands over to the CPU.
    """

    net: torch.nn.Module
    pack: ModelPack
    device: torch.device
    device_name: str
    refine: bool
    gating: bool
    stride: int
    batch_size: int
    timings: dict[str, float]
    report: ProgressCallback
    is_cancelled: CancelCheck
    unit: str = "slice"
    margin: float | None = None  # adaptive rendering budget (top-2 margin), None: the fixed budget
    slab: int | None = None
    oom_batch: tuple[int, int] | None = None  # (batch that failed first, smallest batch used) after OOM
    oom_fallback: str | None = None  # the device that handed over to the CPU
    fault_messages: list[str] = field(default_factory=list)

    def check_cancel(self) -> None:
        if self.is_cancelled():
            raise CancelledError()

    def predict(self, x_host: torch.Tensor):
        """The network on a batch held in host memory ``(B, 1, *S)``; on out-of-memory: halve the batch and retry,
        then (GPU) continue on the CPU; raises :class:`InputError` when one slice/window does not fit on the CPU."""
        try:
            x = x_host.to(self.device)
            within = None
            if self.refine and self.margin is not None:
                within = render_region(x, self.pack.preprocessing.intensity)
            with _autocast(self.device):
                return self.net.predict(
                    x,
                    refine=self.refine,
                    gating_stride=self.stride if self.gating else None,
                    timings=self.timings,
                    render_margin=self.margin,
                    render_within=within,
                )
        except Exception as exc:  # handled below, outside the except block, so the failed tensors are released
            if not is_out_of_memory(exc):
                raise
            log.warning("out of memory on %s with a batch of %d: %s", self.device, x_host.shape[0], str(exc)[:200])
        x = None
        _free_device_cache(self.device)
        n = int(x_host.shape[0])
        if n > 1:
            half = (n + 1) // 2
            self.oom_batch = (self.oom_batch or (n, half))[0], half
            self.batch_size = min(self.batch_size, half)
            return _cat_predictions([self.predict(x_host[:half]), self.predict(x_host[half:])])
        if self.device.type != "cpu":
            self.oom_fallback = self.device_name
            self.device, self.device_name = torch.device("cpu"), "cpu"
            self.net = get_model(self.pack, self.device)
            return self.predict(x_host)
        raise InputError(
            f"not enough memory to run the model on even one {self.unit} ({tuple(x_host.shape[2:])} model voxels) "
            f"on the CPU; close other programs, or crop the volume"
        )

    def summarize_faults(self) -> list[str]:
        """What the out-of-memory handling did, in words for the user."""
        messages = []
        if self.oom_batch is not None:
            first, smallest = self.oom_batch
            messages.append(
                f"out of memory with {first} {self.unit}s per batch: continued with {smallest} {self.unit}"
                f"{'s' if smallest > 1 else ''} per batch"
            )
        if self.oom_fallback is not None:
            messages.append(
                f"out of memory on {self.oom_fallback} even with one {self.unit} per batch: continued on the CPU "
                f"(slower)"
            )
        return messages + self.fault_messages


class _Outputs:
    """Full-resolution outputs, allocated once in the input's own layout (K, J, I) — these arrays become the result.

    The pipeline fills them through the attributes ``labels``, ``coarse``, ... which are views on the reoriented grid
    (D, H, W), so no reoriented copy of any output is ever made.
    """

    uncertainty_how = None  # (option, temperature) of the uncertainty map, from the pack's calibration

    def __init__(
        self, reorder: AxisReorder, num_experts: int, refine: bool, gating: bool, uncertainty: bool, maps_uint8: bool
    ):
        shape = reorder.shape
        maps = np.uint8 if maps_uint8 else np.float32
        self.arrays: dict[str, np.ndarray | None] = {"labels": np.zeros(shape, np.uint8)}
        self.arrays["coarse"] = np.zeros(shape, np.uint8) if refine else self.arrays["labels"]
        self.arrays["rectified"] = np.zeros(shape, np.uint8) if refine else None
        self.arrays["uncertainty"] = np.zeros(shape, maps) if uncertainty else None
        self.arrays["gating"] = np.zeros((num_experts, *shape), maps) if gating else None
        views = {k: None if v is None else reorder.apply(v) for k, v in self.arrays.items()}
        self.labels = views["labels"]
        self.coarse = self.labels if not refine else views["coarse"]
        self.rectified = views["rectified"]
        self.uncertainty = views["uncertainty"]
        self.gating = views["gating"]


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
    name: str = "input",
    maps_uint8: bool = False,
    postprocess: bool | None = None,
    render_margin: float | str | None = "pack",
    review: bool = False,
) -> SegmentationResult:
    """Segment ``volume (K, J, I)`` with IJK→RAS ``ijk_to_ras (4, 4)``.

    Args:
        model: ``"default"``, a model-pack folder, or a loaded :class:`ModelPack`.
        device: ``auto``/``cpu``/``cuda``/``mps``; an unavailable device falls back to the CPU with a message in
            ``result.messages``.
        refine: run the rendering head (else refined = coarse).
        gating / uncertainty: compute the expert gate maps / the uncertainty map.
        gating_stride: grid stride of the gate maps (default from the model pack, 2).
        batch_size: slices (2D) or windows (3D) per network call (default from the model pack; 3D: 1); lowered
            when the memory estimate or an out-of-memory error requires it.
        progress: called as ``progress(stage_name, fraction)`` with fraction in [0, 1].
        cancel: polled between batches; returning True raises :class:`CancelledError`.
        name: what messages call the volume (``morse segment`` passes the file name).
        maps_uint8: the gate and uncertainty maps as uint8 ``round(value·255)``
            (:func:`morse.inference.map_values.quantize_unit`; what ``morse segment``, the Slicer worker and the
            Slicer logic ask for) instead of float32 0..1: a quarter of the memory, and less time writing them.
        postprocess: anatomical post-processing (:mod:`morse.inference.anatomy`: one piece per organ, inside the
            body, of a plausible size) of the refined and the coarse labels alike; None: as the model pack says (on
            unless its ``inference.postprocess`` turns it off). What it removed is in ``result.postprocess``.
        render_margin: the rendering head re-predicts, of the ``test_points`` most uncertain cells per slice, only
            those inside the body whose top-2 logit margin is below this; None: all of them (the fixed budget);
            ``"pack"``: the model pack's ``inference.render_margin`` (None when it has none).
        review: also build the review list (:func:`morse.uncertainty.review.build_review` of the returned result,
            settings from the pack's calibration, ``input`` = ``name``) into ``result.review``: what the Slicer
            worker and the Slicer logic ask for, so both carry the same list. Its regions need the uncertainty map.

    Returns:
        :class:`SegmentationResult` with every array on the input's grid (KJI) and the same ``ijk_to_ras``;
        ``messages`` holds every warning (input values, resampling, device fallback, memory reductions).

    Raises:
        InputError: the volume cannot be segmented (see :mod:`morse.inference.validation`), or does not fit in memory.
        ModelPackError: the model pack is unusable or does not fit the input.
        CancelledError: ``cancel`` returned True.
    """
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    report = progress or (lambda _stage, _fraction: None)
    volume, pack, grid, choice, messages = _checked_inputs(volume, ijk_to_ras, model, device, name)
    spatial_dims = pack.config.spatial_dims
    report("loading model", 0.0)
    with stage(timings, "load"):
        net = get_model(pack, choice.device)
    refine = refine and net.head is not None
    gating = gating and net.features is not None and net.features.cfg.kind == "smoe"
    stride = gating_stride or int(pack.inference["gating_stride"])
    roi = _window_size(net, pack) if spatial_dims == 3 else None
    settings = settings_from_pack(pack)
    if postprocess is not None:
        settings.enabled = bool(postprocess)
    # the confidence rule reads the uncertainty map: computed for it even when not asked for, so that the labels
    # do not depend on which maps were requested
    wanted_uncertainty, uncertainty = uncertainty, uncertainty or (settings.enabled and settings.min_confidence > 0)
    plan = _memory_plan(volume, grid, pack, net, refine, gating, uncertainty, batch_size, stride, roi, maps_uint8, name)
    messages += plan.messages
    report("preprocessing", 0.0)
    with stage(timings, "preprocess"):
        prep = prepare(volume, ijk_to_ras, pack.preprocessing, spatial_dims)
    run = _Run(
        net, pack, choice.device, choice.name, refine, gating, stride, plan.batch_size, timings, report,
        cancel or (lambda: False), margin=_render_margin(pack, render_margin),
    )  # fmt: skip
    outputs = _infer_on_input_grid(run, prep, plan, roi, uncertainty, maps_uint8)
    del prep
    messages += run.summarize_faults()
    report("finishing", 1.0)
    with stage(timings, "postprocess"):
        arrays = outputs.arrays
        post, domain = _postprocess_and_check(volume, ijk_to_ras, arrays, pack, settings)
        if not wanted_uncertainty:
            arrays["uncertainty"] = None
        messages += post.messages + domain.messages
        result = _assemble_result(arrays, ijk_to_ras, pack, run.device_name, messages, settings, post, domain)
    if review:
        with stage(timings, "review"):
            result.review = build_review(result, name, review_settings(pack))
    timings["total"] = time.perf_counter() - t_start
    result.timings = timings
    return result


def _checked_inputs(volume, ijk_to_ras, model, device: str, name: str):
    """The volume, pack, model grid and device after every check that can run before the network is loaded:
    ``(volume, pack, grid, device_choice, messages)``; raises :class:`InputError` / :class:`ModelPackError`."""
    volume, messages = validate_volume(volume, ijk_to_ras, name=name)
    pack = _single_channel_pack(model)
    spatial_dims = pack.config.spatial_dims
    messages += check_intensities(volume, pack.preprocessing.intensity, name=name)
    grid = check_model_grid(volume.shape, ijk_to_ras, pack.preprocessing, spatial_dims, name=name)
    messages += grid.messages
    choice = resolve_device(device, spatial_dims)
    if choice.message:
        messages.append(choice.message)
    return volume, pack, grid, choice, messages


def _memory_plan(volume, grid, pack, net, refine, gating, uncertainty, batch_size, stride, roi, maps_uint8, name):
    """The batch (and 3D stitching slab) that fits the free memory (:func:`morse.inference.memory.plan_inference`),
    starting from the requested batch or the pack's (3D: one window)."""
    spatial_dims = pack.config.spatial_dims
    return plan_inference(
        volume.shape,
        volume.dtype.itemsize,
        grid.model_shape,
        pack.config,
        refine=refine,
        gating=gating,
        uncertainty=uncertainty,
        batch_size=batch_size or (int(pack.inference["batch_size"]) if spatial_dims == 2 else 1),
        gating_stride=stride,
        roi=roi,
        size_multiple=net.size_multiple,
        num_experts=net.num_experts,
        name=name,
        map_bytes=1 if maps_uint8 else 4,
    )


def _postprocess_and_check(volume, ijk_to_ras, arrays: dict, pack: ModelPack, settings):
    """Anatomical post-processing of the refined and coarse labels in place, then the domain check of the result:
    ``(Postprocessed, DomainReport)``."""
    hounsfield = is_hounsfield(pack.preprocessing.intensity)
    post = postprocess_volume(
        volume,
        ijk_to_ras,
        [arrays["labels"], arrays["coarse"]],
        pack.labels,
        settings,
        hounsfield=hounsfield,
        uncertainty=arrays["uncertainty"],
    )
    return post, _domain_report(volume, ijk_to_ras, arrays["labels"], pack, post.body)


def _single_channel_pack(model: str | Path | ModelPack) -> ModelPack:
    """The model pack, refused when its network takes more than the one image channel MORSE gives it."""
    pack = model if isinstance(model, ModelPack) else load_model_pack(model)
    in_channels = int(pack.config.backbone.in_channels)
    if in_channels != 1:
        raise ModelPackError(
            f"{pack.path}: the model takes {in_channels} input channels (several images per case, e.g. MR "
            f"sequences), but MORSE gives it one volume. Use a model trained on single images."
        )
    return pack


def _window_size(net: torch.nn.Module, pack: ModelPack) -> tuple[int, int, int]:
    """Sliding-window size (model voxels) of a 3D network: its fixed input size, else the pack's, else 96³."""
    return tuple(getattr(net.backbone, "img_size", None) or pack.inference.get("roi_size") or (96, 96, 96))


def _render_margin(pack: ModelPack, requested: float | str | None) -> float | None:
    """The top-2 margin below which cells are rendered (None: the fixed budget), ``"pack"`` read from the pack."""
    if requested == "pack":
        value = pack.inference.get("render_margin")
        return None if value is None else float(value)
    return None if requested is None else float(requested)


def _infer_on_input_grid(run: _Run, prep: PreparedVolume, plan, roi, uncertainty: bool, maps_uint8: bool) -> _Outputs:
    """The network over the whole prepared volume, its results on the input grid (allocated here)."""
    net = run.net
    if run.pack.config.spatial_dims == 2:  # the outputs fill up slice batch by slice batch
        outputs = _Outputs(prep.reorder, net.num_experts, run.refine, run.gating, uncertainty, maps_uint8)
        outputs.uncertainty_how = map_settings(run.pack)
        _run_slices(run, prep, outputs)
        return outputs
    # phases (see morse.inference.memory): the stitching buffers are gone before the outputs are allocated
    run.unit, run.slab = "window", plan.slab
    maps, size = _run_volume(run, prep, roi, uncertainty)
    outputs = _Outputs(prep.reorder, net.num_experts, run.refine, run.gating, uncertainty, maps_uint8)
    _resample_to_input(run, maps, size, outputs)
    return outputs


def _domain_report(volume, ijk_to_ras, labels, pack: ModelPack, body) -> DomainReport:
    """The labels checked against the domain the pack declares (model.json ``domain``); empty when it declares
    none, for then there is nothing to check against."""
    declared = domain_of(pack)
    if not declared:
        return DomainReport()
    return check_domain(
        volume,
        ijk_to_ras,
        labels,
        pack.labels,
        declared,
        body=body,
        hounsfield=is_hounsfield(pack.preprocessing.intensity),
    )


def _assemble_result(
    arrays: dict, ijk_to_ras, pack: ModelPack, device_name: str, messages: list[str], settings, post, domain
) -> SegmentationResult:
    """The :class:`SegmentationResult` over the output arrays, with what post-processing and the domain check
    found, and the dominant expert per voxel when the gate maps were computed."""
    result = SegmentationResult(
        labels=arrays["labels"],
        coarse_labels=arrays["coarse"],
        ijk_to_ras=np.asarray(ijk_to_ras, dtype=np.float64).copy(),
        labels_info=list(pack.labels),
        rectified=arrays["rectified"],
        uncertainty=arrays["uncertainty"],
        gating=arrays["gating"],
        model_id=pack.model_id,
        model_version=pack.version,
        device=device_name,
        messages=messages,
        postprocess={
            "enabled": settings.enabled,
            "removed": {organ: change.to_dict() for organ, change in post.changes.items()},
        },
        domain=domain.to_dict(),
        intended_use=str(pack.meta.get("intended_use") or ""),
    )
    if result.gating is not None:
        result.dominant_expert = dominant_expert(result.gating)
    return result


def _run_slices(run: _Run, prep: PreparedVolume, out: _Outputs) -> None:
    """2D model: batches of slices along the reoriented k axis (the batch shrinks after an out-of-memory error)."""
    depth, height, width = prep.shape
    model_hw = prep.model_shape[1:]
    start = 0
    while start < depth:
        run.check_cancel()
        stop = min(depth, start + run.batch_size)
        run.report("segmenting", start / depth)
        with stage(run.timings, "preprocess"):
            x = torch.from_numpy(prep.image[start:stop]).unsqueeze(1)  # (B, 1, H, W)
            x = resize(x, model_hw)
            x, size = pad_to_multiple(x, run.net.size_multiple)
            x = x.contiguous(memory_format=torch.channels_last)
        pred = run.predict(x)
        with stage(run.timings, "to_input_grid", run.device):
            _store_slices(out, pred, size, (height, width), slice(start, stop))
        start = stop
    run.report("segmenting", 1.0)


def _store_slices(out: _Outputs, pred, size, full_hw, rows: slice) -> None:
    """Map one batch of predictions (model grid) back to the reoriented input slices."""
    scale = pred.refined.shape[-1] // pred.coarse.shape[-1]
    coarse = crop(pred.coarse.float(), size)
    coarse_labels = upsampled_labels(coarse, full_hw)
    if pred.refined is pred.coarse:
        out.labels[rows] = coarse_labels
    else:
        out.labels[rows] = upsampled_labels(crop(pred.refined.float(), size, scale), full_hw)
    if out.coarse is not out.labels:
        out.coarse[rows] = coarse_labels
    if out.rectified is not None and pred.rectified is not None:
        rect = crop(pred.rectified[:, None].float(), size, scale)
        out.rectified[rows] = resize(rect, full_hw, mode="nearest")[:, 0].to(torch.uint8).cpu().numpy()
    if out.uncertainty is not None:
        refined = None if pred.refined is pred.coarse else crop(pred.refined.float(), size, scale)
        values = resize(_uncertainty_map(coarse, refined, out.uncertainty_how), full_hw)[:, 0].clamp(0, 1)
        out.uncertainty[rows] = _as_stored(values, out.uncertainty.dtype)
    if out.gating is not None and pred.gating is not None:
        gates = _gates_on_input_grid(pred.gating, tuple(pred.coarse.shape[2:]), size, full_hw)
        out.gating[:, rows] = _as_stored(gates, out.gating.dtype)


def _as_stored(values: torch.Tensor, dtype) -> np.ndarray:
    """A map in [0, 1] on the host in the output array's dtype (uint8: ``round(value·255)``)."""
    values = values.cpu().float()
    return quantize_unit(values.numpy(), in_place=True) if dtype == np.uint8 else values.numpy()


def _gates_on_input_grid(gates: torch.Tensor, padded, size, full_hw) -> torch.Tensor:
    """Gate maps ``(B, N, gh, gw)`` sampled at super-cell centres of the padded model grid → ``(N, B, H, W)`` on the
    input slices, by one bilinear interpolation between the super-cell centres (align_corners=False geometry: input
    pixel x lies at model coordinate (x + ½)·size/W − ½, super-cell coordinate (x + ½)·size·gw/(W·padded) − ½)."""
    grid = tuple(gates.shape[2:])
    gates = gates.float().transpose(0, 1)  # experts first: the result has the output's (N, B, H, W) layout
    if any(f < g for f, g in zip(full_hw, grid)):  # down-sampling: antialiased, in two steps as the labels are
        maps = resize(crop(resize(gates, padded), size), full_hw)
    else:
        # a hair above the exact factor, so that PyTorch's floor(g·factor) output size cannot fall one short
        factors = [f * p / (s * g) * (1 + 1e-9) for f, p, s, g in zip(full_hw, padded, size, grid)]
        maps = F.interpolate(
            gates, scale_factor=factors, mode="bilinear", align_corners=False, recompute_scale_factor=False
        )
        maps = maps[..., : full_hw[0], : full_hw[1]]
    return maps.clamp_(0, 1)


def _sliding_window(x: torch.Tensor, roi, batch: int, predictor, overlap: float) -> tuple[torch.Tensor, ...]:
    """MONAI's Gaussian-weighted sliding window over ``x (1, 1, *S)`` held on the CPU; windows go to the network's
    device inside ``predictor`` and their results come back to the CPU, where they are stitched."""
    from monai.inferers import sliding_window_inference

    cpu = torch.device("cpu")
    with torch.inference_mode():  # the predictions are inference tensors; MONAI weights them in place
        out = sliding_window_inference(
            x,
            roi,
            sw_batch_size=batch,
            predictor=predictor,
            overlap=overlap,
            mode="gaussian",
            sw_device=cpu,
            device=cpu,
        )
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _slabs(depth: int, core: int | None, roi_z: int, start: int = 0) -> list[tuple[int, int, int, int]]:
    """``(a, s, e, b)`` per slab along z, for cores from ``start`` on: the core ``[s, e)`` whose results are kept and
    the extended range ``[a, b)`` (core plus half a window of context per side, at least one window deep) that is
    stitched. ``core=None``: one slab, the whole depth."""
    if core is None or (start == 0 and core >= depth):
        return [(0, 0, depth, depth)]
    margin = roi_z // 2
    slabs = []
    for s in range(start, depth, core):
        e = min(depth, s + core)
        a, b = max(0, s - margin), min(depth, e + margin)
        a, b = max(0, min(a, b - roi_z)), min(depth, max(b, a + roi_z))
        slabs.append((a, s, e, b))
    return slabs


class _ModelGridMaps:
    """Compact per-voxel results on the (padded) model grid of a 3D run: labels as uint8, the maps as float32 — a few
    bytes per model voxel instead of the stitched float32 logits of every class."""

    uncertainty_how = None  # (option, temperature) of the uncertainty map, from the pack's calibration

    def __init__(self, shape, refine: bool, gating: bool, num_experts: int, uncertainty: bool):
        self.labels = torch.zeros(shape, dtype=torch.uint8)
        self.coarse = torch.zeros(shape, dtype=torch.uint8) if refine else self.labels
        self.rectified = torch.zeros(shape, dtype=torch.uint8) if refine else None
        self.uncertainty = torch.zeros(shape, dtype=torch.float32) if uncertainty else None
        self.gating = torch.zeros((num_experts, *shape), dtype=torch.float32) if gating else None

    def store(self, parts: tuple[torch.Tensor, ...], refine: bool, rows: slice, keep: slice) -> None:
        """Reduce the stitched ``parts`` (refined[, coarse, rectified][, gating], each (1, ch, d, H, W)) of one slab
        to the compact maps: rows ``rows`` of the model grid take slab rows ``keep``."""
        parts = [p[:, :, keep] for p in parts]
        refined = parts[0]
        coarse, rect = (parts[1], parts[2]) if refine else (refined, None)
        self.labels[rows] = refined.argmax(1)[0].to(torch.uint8)
        if rect is not None:
            self.coarse[rows] = coarse.argmax(1)[0].to(torch.uint8)
            self.rectified[rows] = (rect[0, 0] > 0.5).to(torch.uint8)
        if self.uncertainty is not None:
            self.uncertainty[rows] = _uncertainty_map(coarse, refined, self.uncertainty_how)[0, 0]
        if self.gating is not None:
            self.gating[:, rows] = parts[-1][0]


def _run_volume(
    run: _Run, prep: PreparedVolume, roi: tuple[int, int, int], uncertainty: bool
) -> tuple[_ModelGridMaps, tuple[int, ...]]:
    """3D model: sliding windows over the volume resized to the model's voxel size, stitched on the CPU (in slabs
    along z when the plan says so, or after an out-of-memory error) and reduced to compact model-grid maps.

    Frees ``prep.image`` once it is resampled. Returns the maps (padded model grid) and the unpadded model size."""
    net = run.net
    overlap = float(run.pack.inference["sw_overlap"])
    with stage(run.timings, "preprocess"):
        x = torch.from_numpy(prep.image)[None, None]
        x = resize(x, prep.model_shape)
        x, size = pad_to_multiple(x, net.size_multiple, minimum=max(roi))
        prep.image = None  # the input-grid copy is not needed any more (x may still share it when no resize was due)
    depth = int(x.shape[2])
    maps = _ModelGridMaps(tuple(x.shape[2:]), run.refine, run.gating, net.num_experts, uncertainty)
    maps.uncertainty_how = map_settings(run.pack)
    slabs = _slabs(depth, run.slab, roi[0])
    windows = {"done": 0, "total": sum(window_count((b - a, *x.shape[3:]), roi, overlap) for a, _, _, b in slabs)}

    def predictor(patch: torch.Tensor):
        run.check_cancel()
        pred = run.predict(patch)
        windows["done"] += patch.shape[0]
        run.report("segmenting", min(0.99, windows["done"] / max(1, windows["total"])))
        parts = [pred.refined.float()]
        if run.refine:
            parts += [pred.coarse.float(), pred.rectified[:, None].float()]
        if pred.gating is not None:
            parts.append(resize(pred.gating.float(), tuple(patch.shape[2:])))
        return tuple(p.cpu() for p in parts)

    i = 0
    while i < len(slabs):
        a, s, e, b = slabs[i]
        try:
            stitched = _sliding_window(x[:, :, a:b], roi, run.batch_size, predictor, overlap)
        except Exception as exc:  # handled below, outside the except block, so the failed buffers are released
            if not is_out_of_memory(exc):
                raise
            stitched = None
        if stitched is None:  # stitching buffers did not fit: thinner slabs from here on
            core = e - s
            thinnest = max(1, roi[0] // 2)
            if core <= thinnest:
                raise InputError(
                    f"not enough memory to stitch even a {core}-slice slab of the {tuple(x.shape[2:])} model grid; "
                    f"close other programs, turn off the gating/uncertainty maps, or crop the volume"
                )
            run.slab = max(thinnest, core // 2)
            slabs = slabs[:i] + _slabs(depth, run.slab, roi[0], start=s)
            run.fault_messages.append(
                f"out of memory while stitching the sliding windows: continued in slabs of {run.slab} model slices"
            )
            continue
        maps.store(stitched, run.refine, slice(s, e), slice(s - a, e - a))
        del stitched
        i += 1
    return maps, size


def _resample_to_input(run: _Run, maps: _ModelGridMaps, size: tuple[int, ...], out: _Outputs) -> None:
    """Compact model-grid maps → full-resolution outputs, a chunk of slices at a time (labels nearest, maps linear)."""
    with stage(run.timings, "to_input_grid"):
        crop_to = tuple(slice(0, n) for n in size)
        resize_nearest_into(out.labels, maps.labels[crop_to])
        if out.coarse is not out.labels:
            resize_nearest_into(out.coarse, maps.coarse[crop_to])
        if out.rectified is not None and maps.rectified is not None:
            resize_nearest_into(out.rectified, maps.rectified[crop_to])
        if out.uncertainty is not None:
            resize_linear_into(out.uncertainty, maps.uncertainty[crop_to], clamp=(0.0, 1.0))
        if out.gating is not None and maps.gating is not None:
            for k in range(maps.gating.shape[0]):  # one expert at a time keeps the working memory small
                resize_linear_into(out.gating[k], maps.gating[(k, *crop_to)], clamp=(0.0, 1.0))
