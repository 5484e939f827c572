"""Bounds on what a ``model.json`` may ask of the machine, checked before any network is built.

A model pack is data from elsewhere: its architecture block decides how many layers and channels get allocated, and
its inference block how many points and slices go through the network at once. Typed construction
(:func:`morse.config.from_dict`) checks names only, so a pack saying ``expert_layers: 50000`` or ``batch_size: "8"``
would reach torch and fail there minutes (and gigabytes) later, or not fail at all. Every number is checked here
for its type and its range; the limits are far above any published model (the paper's widest layer is 3072) and far
below what would exhaust a workstation.

:func:`check_model` returns the list of problems (empty when the pack is sane), each naming the field, the value
and the allowed range, so the caller can refuse the pack with one message.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .config import IntensityConfig, ModelConfig, PreprocessingConfig

MAX_JSON_DEPTH = 32  # nesting of model.json; a model description is a few levels deep
MAX_WIDTH = 4096  # channels of any layer (the paper's widest is TransUNet's 3072 MLP)
MAX_LIST = 16  # entries of a list of widths (layers of a head, levels of a UNet)

# field path -> (kind, low, high); kind "int", "float" (finite), "ints" (a list of ints, each in range)
_ARCHITECTURE: dict[str, tuple[str, float, float]] = {
    "num_classes": ("int", 2, 256),
    "backbone.in_channels": ("int", 1, 16),
    "backbone.features": ("ints", 1, MAX_WIDTH),
    "backbone.dropout": ("float", 0.0, 1.0),
    "backbone.img_size": ("ints", 8, 1024),
    "backbone.hidden_size": ("int", 1, MAX_WIDTH),
    "backbone.mlp_dim": ("int", 1, 4 * MAX_WIDTH),
    "backbone.num_heads": ("int", 1, 64),
    "backbone.num_layers": ("int", 1, 48),
    "backbone.feature_size": ("int", 1, 512),
    "features.expert_dim": ("int", 1, MAX_WIDTH),
    "features.expert_layers": ("int", 1, 8),
    "features.gating_kernel": ("int", 1, 7),
    "features.gating_widths": ("ints", 1, MAX_WIDTH),
    "features.fusion_widths": ("ints", 1, MAX_WIDTH),
    "features.out_dim": ("int", 1, MAX_WIDTH),
    "features.fusion_dropout": ("float", 0.0, 1.0),
    "features.routing.alpha": ("float", 0.0, 1.0),
    "features.routing.max_drop": ("int", 0, 16),
    "features.routing.probability": ("float", 0.0, 1.0),
    "point_head.pe.num_frequencies": ("int", 1, 1024),
    "point_head.pe.scale": ("float", 1e-6, 1e4),
    "point_head.hidden": ("ints", 1, MAX_WIDTH),
    "point_head.train_points": ("int", 1, 1 << 20),
    "point_head.oversample": ("int", 1, 16),
    "point_head.importance": ("float", 0.0, 1.0),
    "point_head.test_points": ("int", 1, 1 << 20),
    "point_head.subdivision_steps": ("int", 0, 8),
}
_DEFAULT_WHEN_NULL = ("backbone.features", "backbone.img_size", "features.routing.max_drop")  # None: own default
_BOOLEANS = (
    "features.expert_last_act",
    "features.gating_final_relu",
    "features.routing.renormalize",
    "point_head.pe.trainable",
    "point_head.coarse_each_layer",
    "point_head.detach_coarse",
    "point_head.upsample",
)
# model.json "inference": what inference computes with (other keys belong to later stages and check themselves)
_INFERENCE: dict[str, tuple[str, float, float]] = {
    "batch_size": ("int", 1, 1024),
    "gating_stride": ("int", 1, 64),
    "sw_overlap": ("float", 0.0, 0.95),
    "roi_size": ("ints", 8, 1024),
    # top-2 logit margin below which the rendering head re-predicts a cell; null: the fixed point budget
    "render_margin": ("float", 0.0, 1000.0),
}
_INFERENCE_NULLABLE = ("render_margin",)


# model.json "inference.postprocess" (morse.inference.anatomy): switches, and the range of every number
POSTPROCESS_FLAGS = ("enabled", "body", "largest_component")
_POSTPROCESS: dict[str, tuple[str, float, float]] = {
    "body_threshold_hu": ("float", -2000.0, 4000.0),  # HU; CT values lie in −1024..3071
    "default_min_ml": ("float", 0.0, 1e5),  # ml; 100 l is far above any organ
    "min_confidence": ("float", 0.0, 1.0),  # mean 1 − uncertainty of a piece
}
POSTPROCESS_KEYS = (*POSTPROCESS_FLAGS, *_POSTPROCESS, "min_ml")


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counted iteratively and stopped past ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range_text(kind: str, low: float, high: float) -> str:
    what = {"int": "an integer", "float": "a number", "ints": "a list of integers, each"}[kind]
    return f"{what} from {low:g} to {high:g}"


def check_value(name: str, value: Any, kind: str, low: float, high: float) -> str | None:
    """The problem with one setting, or None. ``kind``: "int", "float" (finite) or "ints" (list)."""
    if kind == "ints":
        ok = (
            isinstance(value, list)
            and 0 < len(value) <= MAX_LIST
            and all(_is_int(v) and low <= v <= high for v in value)
        )
        if ok:
            return None
        return f"{name} {_short(value)} must be {_range_text(kind, low, high)} (at most {MAX_LIST} entries)"
    ok = _is_int(value) if kind == "int" else _is_number(value)
    if ok and low <= value <= high:
        return None
    return f"{name} {_short(value)} must be {_range_text(kind, low, high)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _get(obj: Any, path: str) -> tuple[bool, Any]:
    """``(present, value)`` of a dotted field path in nested dataclasses (absent when a parent is None)."""
    for part in path.split("."):
        if obj is None or not dataclasses.is_dataclass(obj):
            return False, None
        obj = getattr(obj, part)
    return True, obj


def check_architecture(config: ModelConfig, prefix: str = "architecture") -> list[str]:
    """Problems with the types and sizes of a model architecture (empty when it is sane)."""
    problems = []
    for path, (kind, low, high) in _ARCHITECTURE.items():
        present, value = _get(config, path)
        if not present or (value is None and path in _DEFAULT_WHEN_NULL):
            continue
        problem = check_value(f"{prefix}.{path}", value, kind, low, high)
        if problem:
            problems.append(problem)
    for path in _BOOLEANS:
        present, value = _get(config, path)
        if present and not isinstance(value, bool):
            problems.append(f"{prefix}.{path} {_short(value)} must be true or false")
    if (config.features is None) != (config.point_head is None):
        problems.append(f"{prefix}: features and point_head are both set (MORSE/PointRend) or both null (backbone)")
    return problems


def check_preprocessing(preprocessing: PreprocessingConfig, prefix: str = "preprocessing") -> list[str]:
    """Problems with what a pack expects of a volume: voxel size, orientation code, intensity window."""
    problems = []
    sp = preprocessing.spacing
    if not isinstance(sp, list) or len(sp) != 3 or not all(_is_number(v) and v > 0 for v in sp):
        problems.append(f"{prefix}.spacing {_short(sp)} must be three positive numbers (mm, x y z)")
    code = preprocessing.orientation
    axes = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}
    if not isinstance(code, str) or len(code) != 3 or {axes.get(c.upper(), -1) for c in code} != {0, 1, 2}:
        problems.append(f"{prefix}.orientation {_short(code)} must be three letters, one of L/R, P/A, S/I each")
    intensity = preprocessing.intensity
    if not isinstance(intensity, IntensityConfig):
        problems.append(f"{prefix}.intensity must be an object")
    elif intensity.mode == "window" and not (
        _is_number(intensity.low) and _is_number(intensity.high) and intensity.low < intensity.high
    ):
        problems.append(
            f"{prefix}.intensity window {_short(intensity.low)}..{_short(intensity.high)} must have low < high"
        )
    return problems


def check_inference(settings: Any, prefix: str = "inference") -> list[str]:
    """Problems with a model.json ``inference`` block (types and signs of what inference computes with)."""
    if settings is None:
        return []
    if not isinstance(settings, dict):
        return [f"{prefix} must be an object, not {type(settings).__name__}"]
    problems = [
        problem
        for key, (kind, low, high) in _INFERENCE.items()
        if key in settings
        and not (settings[key] is None and key in _INFERENCE_NULLABLE)
        and (problem := check_value(f"{prefix}.{key}", settings[key], kind, low, high))
    ]
    return problems + check_postprocess(settings.get("postprocess"), f"{prefix}.postprocess")


def check_postprocess(settings: Any, prefix: str = "inference.postprocess") -> list[str]:
    """Problems with the anatomical post-processing settings (:mod:`morse.inference.anatomy`): an object of known
    keys, or true/false for all of it; None (absent) uses the defaults."""
    if settings is None or isinstance(settings, bool):
        return []
    if not isinstance(settings, dict):
        return [f"{prefix} must be an object or true/false, not {type(settings).__name__}"]
    problems = []
    unknown = sorted(set(settings) - set(POSTPROCESS_KEYS))
    if unknown:
        problems.append(f"{prefix}: unknown key(s) {unknown}; known: {sorted(POSTPROCESS_KEYS)}")
    problems += [
        f"{prefix}.{key} {_short(settings[key])} must be true or false"
        for key in POSTPROCESS_FLAGS
        if key in settings and not isinstance(settings[key], bool)
    ]
    problems += [
        problem
        for key, (kind, low, high) in _POSTPROCESS.items()
        if key in settings
        and not (settings[key] is None and key in _INFERENCE_NULLABLE)
        and (problem := check_value(f"{prefix}.{key}", settings[key], kind, low, high))
    ]
    min_ml = settings.get("min_ml", {})
    if not isinstance(min_ml, dict):
        return [*problems, f"{prefix}.min_ml {_short(min_ml)} must map organ names to millilitres"]
    kind, low, high = _POSTPROCESS["default_min_ml"]
    return problems + [
        problem
        for organ, value in min_ml.items()
        if (problem := check_value(f"{prefix}.min_ml.{organ}", value, kind, low, high))
    ]


# model.json "calibration" (morse.uncertainty.calibration): the uncertainty map the pipeline writes and the review
_CALIBRATION: dict[str, tuple[str, float, float]] = {
    "temperature": ("float", 0.05, 20.0),  # divides the logits before the softmax
    "review_threshold": ("float", 0.0, 1.0),  # uncertainty from which voxels form review regions
    "low_confidence": ("float", 0.0, 1.0),  # organ flag below this mean confidence
    "opening_mm": ("float", 0.0, 50.0),
    "min_region_ml": ("float", 0.0, 1e4),
}
_CALIBRATION_RECORDS = ("fitted_on", "objective", "nll_before", "nll_after", "voxels")  # provenance, not read


def check_calibration(settings: Any, prefix: str = "calibration") -> list[str]:
    """Problems with a model.json ``calibration`` block: known keys, numbers in range, and an ``uncertainty``
    option the pipeline computes without extra passes (:data:`morse.uncertainty.names.FREE`)."""
    from .uncertainty.names import FREE

    if settings is None:
        return []
    if not isinstance(settings, dict):
        return [f"{prefix} must be an object, not {type(settings).__name__}"]
    known = {*_CALIBRATION, *_CALIBRATION_RECORDS, "uncertainty"}
    problems = []
    unknown = sorted(set(settings) - known)
    if unknown:
        problems.append(f"{prefix}: unknown key(s) {unknown}; known: {sorted(known)}")
    option = settings.get("uncertainty", "margin")
    if option not in FREE:
        problems.append(f"{prefix}.uncertainty {_short(option)} must be one of {', '.join(FREE)}")
    return problems + [
        problem
        for key, (kind, low, high) in _CALIBRATION.items()
        if key in settings and (problem := check_value(f"{prefix}.{key}", settings[key], kind, low, high))
    ]
