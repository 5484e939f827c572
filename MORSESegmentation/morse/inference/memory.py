"""Peak host-memory estimate of one inference run, and the tiling decisions that keep it within free memory.

Where the memory goes (bytes; V = voxels of the input grid, M = voxels of the padded model grid, C classes, N experts):

- the input as given (already in memory): ``V·itemsize``;
- the prepared copy (reoriented, normalised float32): ``4V``;
- the full-resolution outputs, the only other volume-sized arrays: labels 1 B, coarse labels and rectified mask 1 B
  each (with refinement), uncertainty 4 B, gating ``4N`` B plus the dominant-expert map 1 B (per voxel);
- 2D models: per batch of B slices, the network's activations and point features on the model grid and the logits
  and maps resized to the input slice (streamed: nothing else grows with the number of slices);
- 3D models, in phases that never overlap (the pipeline frees each phase's arrays before the next allocates):
  preprocessing (the prepared copy and the input resampled to the model grid, ``4M``); stitching (the resampled
  input, compact model-grid results — labels 1 B each, uncertainty 4 B, gating ``4N`` B per model voxel — the
  sliding-window buffers of one slab: float32, one channel per class of the refined and of the coarse logits,
  rectified, N gates, one weight map per output — and the activations of one batch of windows); resampling (the
  compact results, the full-resolution outputs and one chunk).

:func:`plan_inference` estimates the peak, logs it, and when it exceeds the memory available it lowers the 2D batch
size, or splits the 3D stitching into slabs along z; it refuses (:class:`InputError`, with what to turn off) only
when even one slice or the thinnest slab cannot fit. The activation terms are approximations; measured on the CPU
with small UNet backbones (``docs/results/robustness.md``) the estimate lies within about ±20 % of the measured peak
of the process; the volume-sized terms are exact.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from ..errors import InputError
from ..fileutils import available_memory, size_text

log = logging.getLogger(__name__)

BYTES_F32 = 4
CHUNK_BYTES = 64 << 20  # float32 working memory of one chunk of the 3D resampling (morse.inference.chunked)
HEADROOM = 0.85  # plan to use at most this fraction of the available memory (the OS, caches, fragmentation)
MIN_SLAB_FRACTION = 0.5  # the thinnest 3D slab core is this fraction of the window depth
# After the network, measured on 512×512×{100, 600} CTs (docs/results/robustness.md, "Memory"): the anatomical
# post-processing holds a body mask on its 2 mm grid, per-organ boxes and component labels (about 7 bytes per input
# voxel at its peak); writing every file holds SimpleITK's copy of the labels for the .seg.nrrd, ITK's buffer of it
# and the deflate chunks in flight.
POSTPROCESS_BYTES_PER_VOXEL = 7
WRITE_BYTES_PER_VOXEL = 4
WRITE_FIXED_BYTES = 64 << 20
# Of the live point features the head formula counts, the fraction alive at once (the heads run after the
# backbone's activations are freed, point batch by point batch): measured on the default pack, 512² slices.
HEAD_LIVE_FRACTION = 0.06
# Of the 2D backbone's activations :func:`backbone_floats_per_cell` counts, the fraction resident at the peak of a
# batch (PyTorch frees each stage's inputs as the next one runs): 512² slices of the default pack measured 23 MB per
# slice with every output, against 50 MB from the counts alone.
BACKBONE_LIVE_FRACTION_2D = 0.3


@dataclass
class MemoryEstimate:
    """Peak host memory of one run, by part (bytes).

    2D runs hold everything at once: ``peak = input + prepared + outputs + working`` (``working`` per batch).
    3D runs go through phases, and the pipeline frees each phase's arrays before the next allocates its own:
    preprocessing (``prepared`` + the resampled input ``model_grid``), stitching (``model_grid`` + ``compact`` +
    ``working``: one slab's buffers and one batch of windows), resampling (``compact`` + ``outputs`` + a chunk);
    ``peak = input + the largest phase``.
    """

    input: int
    prepared: int
    outputs: int
    working: int
    model_grid: int = 0
    compact: int = 0
    phased: bool = False
    outputs_detail: dict[str, int] = field(default_factory=dict)
    postprocessing: int = 0
    writing: int = 0

    @property
    def phases(self) -> dict[str, int]:
        """Bytes allocated (besides the input) in each phase of the run; after the network the outputs stay while
        the post-processing and then the writing of every file (``morse segment``) add their scratch."""
        after = {"postprocessing": self.outputs + self.postprocessing, "writing": self.outputs + self.writing}
        if not self.phased:
            return {"inference": self.prepared + self.outputs + self.working, **after}
        return {
            "preprocessing": self.prepared + self.model_grid,
            "stitching": self.model_grid + self.compact + self.working,
            "resampling": self.compact + self.outputs + min(CHUNK_BYTES, 2 * self.prepared),
            **after,
        }

    @property
    def peak(self) -> int:
        return self.input + max(self.phases.values())

    @property
    def to_allocate(self) -> int:
        """What the run still has to allocate at its peak (the input is already in memory)."""
        return self.peak - self.input

    def describe(self) -> str:
        if not self.phased:
            parts = [
                ("input", self.input),
                ("prepared copy", self.prepared),
                ("full-resolution outputs", self.outputs),
                ("working", self.working),
            ]
            text = f"{size_text(self.peak)} (" + ", ".join(f"{n} {size_text(b)}" for n, b in parts if b)
            after = self.phases
            return (
                text + f"; after the network: post-processing {size_text(after['postprocessing'])}, writing the "
                f"files {size_text(after['writing'])})"
            )
        phases = ", ".join(f"{n} {size_text(b)}" for n, b in self.phases.items())
        return (
            f"{size_text(self.peak)} (input {size_text(self.input)} + the largest phase: {phases}; full-resolution "
            f"outputs {size_text(self.outputs)}, stitching buffers and windows {size_text(self.working)})"
        )


@dataclass
class Plan:
    """What :func:`plan_inference` decided.

    batch_size: slices (2D) or windows (3D) per network call. slab: 3D stitching slab core depth in model voxels
    (None: the whole volume at once). messages: what was reduced and why (for ``result.messages``).
    """

    estimate: MemoryEstimate
    batch_size: int
    slab: int | None
    available: int
    messages: list[str] = field(default_factory=list)


def output_bytes_per_voxel(
    num_experts: int, refine: bool, gating: bool, uncertainty: bool, map_bytes: int = BYTES_F32
) -> dict[str, int]:
    """Bytes per input voxel of each full-resolution output of :class:`SegmentationResult` (``map_bytes``: 4 for
    float32 gate/uncertainty maps, 1 for uint8)."""
    parts = {"labels": 1}
    if refine:
        parts.update({"coarse labels": 1, "rectified": 1})
    if uncertainty:
        parts["uncertainty"] = map_bytes
    if gating:
        parts.update({"gating": map_bytes * num_experts, "dominant expert": 1})
    return parts


def writing_bytes(voxels: int, num_experts: int, gating: bool, uncertainty: bool, map_bytes: int) -> int:
    """Scratch of :func:`morse.inference.outputs.write_case` beyond the outputs it writes: the measured constant (the
    deflate chunks in flight, never more than a small volume's own data) and per-voxel share (see
    :data:`WRITE_BYTES_PER_VOXEL`), plus the uint8 copy of the largest float32 map when the maps
    are float32 (the files store them as uint8 levels, converted once)."""
    scratch = min(WRITE_FIXED_BYTES, WRITE_BYTES_PER_VOXEL * voxels) + WRITE_BYTES_PER_VOXEL * voxels  # chunks ≤ data
    if map_bytes > 1:
        scratch += voxels * (num_experts if gating else 1 if uncertainty else 0)
    return int(scratch)


def backbone_floats_per_cell(model_cfg) -> float:
    """Approximate float32 activations alive per model-grid cell at the peak of one inference forward pass.

    UNets: the full-resolution stages (first encoder and last decoder stage, ~4 live tensors each) plus the deeper
    stages at 1/2^dims, 1/4^dims, ... of the cells (~3 live tensors each: skip, output, concatenation) and the logits.
    Transformer backbones: a conservative constant (their token maps are 1/16 per axis; their CNN stems dominate).
    """
    b = model_cfg.backbone
    dims = model_cfg.spatial_dims
    classes = model_cfg.num_classes
    if b.name in ("unet2d", "unet3d"):
        f = list(b.features)
        r = 2**dims
        deep = sum(f[level] / r**level for level in range(1, 5))
        return 4 * (f[0] + f[5]) + 3 * deep + 3 * classes
    return 256 + 3 * classes


def head_floats_per_slice(model_cfg, cells: int, refine: bool, gating: bool, stride: int) -> float:
    """Approximate float32 values of the point features for one slice/window of ``cells`` model cells: the refined
    points, the gate-map grid (one point per ``stride^dims`` cells), or the dense gating of the paper preset."""
    fcfg, pcfg = model_cfg.features, model_cfg.point_head
    if fcfg is None or pcfg is None:
        return 0.0
    dims = model_cfg.spatial_dims
    n = 5 if model_cfg.backbone.name == "unet2d" else 3
    d = fcfg.expert_dim
    per_point = n * d * 2 + sum(fcfg.gating_widths) + sum(fcfg.fusion_widths) + fcfg.out_dim + sum(pcfg.hidden)
    per_point += 2 * pcfg.pe.num_frequencies
    total = 0.0
    if fcfg.gating == "dense" and fcfg.kind == "smoe":
        total += cells * (n * d + sum(fcfg.gating_widths) + sum(fcfg.fusion_widths) + fcfg.out_dim) * 2
    if refine:
        total += min(cells, pcfg.test_points) * per_point * 2
    if gating:
        total += math.ceil(cells / stride**dims) * (n * d * 2 + sum(fcfg.gating_widths) + n)
    return total


def estimate(
    input_shape: tuple[int, int, int],
    input_itemsize: int,
    model_shape: tuple[int, int, int],
    model_cfg,
    *,
    refine: bool,
    gating: bool,
    uncertainty: bool,
    batch_size: int,
    gating_stride: int = 2,
    roi: tuple[int, int, int] | None = None,
    slab: int | None = None,
    size_multiple: int = 16,
    num_experts: int | None = None,
    map_bytes: int = BYTES_F32,
) -> MemoryEstimate:
    """Peak host memory of :func:`morse.inference.pipeline.segment_volume` for these sizes (see the module doc).

    Args:
        input_shape: (K, J, I) voxels of the input. input_itemsize: its bytes per voxel as given.
        model_shape: (D', H', W') grid at the model's voxel size (2D models: D' = K, slices stay slices).
        model_cfg: the pack's :class:`morse.config.ModelConfig` (classes, experts, widths).
        refine / gating / uncertainty: the requested outputs.
        batch_size: slices (2D) or windows (3D) per network call.
        roi: 3D window size (z, y, x) in model voxels. slab: 3D stitching slab core depth (None: whole volume).
        num_experts: the network's experts (default: 5 for the 2D UNet, else 3).
        map_bytes: bytes per voxel of each full-resolution gate/uncertainty map (4 float32, 1 uint8).
    """
    voxels = math.prod(input_shape)
    classes, dims = model_cfg.num_classes, model_cfg.spatial_dims
    experts = num_experts or (5 if model_cfg.backbone.name == "unet2d" else 3)
    gating = gating and model_cfg.has_point_head and model_cfg.features.kind == "smoe"
    refine = refine and model_cfg.has_point_head
    detail = {k: v * voxels for k, v in output_bytes_per_voxel(experts, refine, gating, uncertainty, map_bytes).items()}
    padded = tuple(max(-(-s // size_multiple) * size_multiple, 1) for s in model_shape)
    act = backbone_floats_per_cell(model_cfg)
    after_network = writing_bytes(voxels, experts, gating, uncertainty, map_bytes)
    if dims == 2:
        slice_cells = padded[1] * padded[2]
        full_slice = voxels // max(1, model_shape[0])  # voxels of one reoriented input slice
        per_slice = slice_cells * (BACKBONE_LIVE_FRACTION_2D * act + 4 * classes + 1)  # activations, logits, crops
        per_slice += HEAD_LIVE_FRACTION * head_floats_per_slice(model_cfg, slice_cells, refine, gating, gating_stride)
        per_slice += full_slice * (classes + 3)  # one set of logits resized to the slice, and the maps' scratch
        working = int(batch_size * per_slice * BYTES_F32)
        return MemoryEstimate(
            input=voxels * int(input_itemsize),
            prepared=voxels * BYTES_F32,
            outputs=sum(detail.values()),
            working=working,
            outputs_detail=detail,
            postprocessing=POSTPROCESS_BYTES_PER_VOXEL * voxels,
            writing=after_network,
        )
    roi = tuple(roi or (96, 96, 96))
    padded = tuple(max(p, r) for p, r in zip(padded, roi))
    cells = math.prod(padded)
    window = math.prod(roi)
    stitched = classes * (2 if refine else 1) + (1 if refine else 0) + (experts if gating else 0)
    weight_maps = (3 if refine else 1) + (1 if gating else 0)  # MONAI keeps one weight map per output
    per_window = window * (act + 2 * stitched + 1) + head_floats_per_slice(
        model_cfg, window, refine, gating, gating_stride
    )
    depth = padded[0] if slab is None else min(padded[0], slab + roi[0])  # core + margins of roi/2 per side
    slab_cells = depth * padded[1] * padded[2]
    # stitched channels and weight maps, plus the softmax and top-2 of the coarse logits when reducing a slab
    working = int((batch_size * per_window + slab_cells * (stitched + weight_maps + classes + 2)) * BYTES_F32)
    compact = 1 + (2 if refine else 0) + (BYTES_F32 if uncertainty else 0) + (BYTES_F32 * experts if gating else 0)
    return MemoryEstimate(
        input=voxels * int(input_itemsize),
        prepared=voxels * BYTES_F32,
        outputs=sum(detail.values()),
        working=working,
        model_grid=cells * BYTES_F32,  # the input resampled to the model grid and padded
        compact=cells * compact,
        phased=True,
        outputs_detail=detail,
        postprocessing=POSTPROCESS_BYTES_PER_VOXEL * voxels,
        writing=after_network,
    )


def plan_inference(
    input_shape: tuple[int, int, int],
    input_itemsize: int,
    model_shape: tuple[int, int, int],
    model_cfg,
    *,
    refine: bool,
    gating: bool,
    uncertainty: bool,
    batch_size: int,
    gating_stride: int = 2,
    roi: tuple[int, int, int] | None = None,
    size_multiple: int = 16,
    available: int | None = None,
    num_experts: int | None = None,
    name: str = "input",
    map_bytes: int = BYTES_F32,
) -> Plan:
    """Estimate the peak, log it, and fit the run into ``available`` bytes (default: :func:`available_memory`).

    The run should use at most :data:`HEADROOM` of the available memory. 2D: halve the batch until it fits. 3D:
    stitch the whole volume if it fits, else the deepest slab that does (at least half a window deep). Raises
    :class:`InputError` (what needs how much, what to turn off) when even one slice or the thinnest slab needs more
    than all of the available memory.
    """
    available = available_memory() if available is None else int(available)
    budget = int(available * HEADROOM)
    common = dict(
        refine=refine,
        gating=gating,
        uncertainty=uncertainty,
        gating_stride=gating_stride,
        size_multiple=size_multiple,
        num_experts=num_experts,
        map_bytes=map_bytes,
    )

    def est(batch: int, slab: int | None = None) -> MemoryEstimate:
        return estimate(input_shape, input_itemsize, model_shape, model_cfg, batch_size=batch, roi=roi, slab=slab,
                        **common)  # fmt: skip

    messages: list[str] = []
    batch, slab = max(1, int(batch_size)), None
    e = est(batch)
    if model_cfg.spatial_dims == 2:
        while batch > 1 and e.to_allocate > budget:
            batch = max(1, batch // 2)
            e = est(batch)
        if batch < batch_size:
            messages.append(
                f"{batch} slice{'s' if batch > 1 else ''} per batch instead of {batch_size}, to stay within the "
                f"{size_text(available)} of free memory"
            )
    elif e.phases["stitching"] > budget:  # only the stitching phase depends on the slab depth
        roi_z = int((roi or (96, 96, 96))[0])
        thinnest = max(1, int(roi_z * MIN_SLAB_FRACTION))
        margins_only = est(batch, slab=0).phases["stitching"]
        per_slice = max(1, est(batch, slab=1).phases["stitching"] - margins_only)
        slab = int(max(thinnest, (budget - margins_only) // per_slice))
        e = est(batch, slab)
        messages.append(
            f"the sliding-window results are stitched in slabs of {slab} model slices (z) to stay within the "
            f"{size_text(available)} of free memory"
        )
    log.info(
        "%s: estimated peak memory %s; %s available",
        name,
        e.describe(),
        size_text(available),
        extra={"morse_estimate": e},  # for `morse bench`, which compares it with the measured peak
    )
    if e.to_allocate > available:  # reductions aim below the headroom; refuse only what cannot fit at all
        raise InputError(_too_large(name, input_shape, e, available, gating, uncertainty))
    for msg in messages:
        log.warning("%s: %s", name, msg)
    return Plan(estimate=e, batch_size=batch, slab=slab, available=available, messages=messages)


def _too_large(name, input_shape, e: MemoryEstimate, available: int, gating: bool, uncertainty: bool) -> str:
    advice = []
    if gating and "gating" in e.outputs_detail:
        advice.append(f"turn off the gating maps (--no-gating; {size_text(e.outputs_detail['gating'])})")
    if uncertainty and "uncertainty" in e.outputs_detail:
        advice.append(f"the uncertainty map (--no-uncertainty; {size_text(e.outputs_detail['uncertainty'])})")
    advice.append("crop the volume to the region of interest, or use a computer with more memory")
    shape = "×".join(str(s) for s in input_shape)
    return (
        f"{name}: segmenting this {shape} volume needs about {size_text(e.peak)} of memory "
        f"({e.describe().split('(', 1)[1].rstrip(')')}) but only {size_text(available)} is available. "
        + "; ".join(advice)[:1].upper()
        + "; ".join(advice)[1:]
        + "."
    )
