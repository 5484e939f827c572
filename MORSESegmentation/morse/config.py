"""Typed configuration of models, losses, training and preprocessing.

Every modelling choice in which the MORSE paper and its released code differ is a field here. The dataclass
defaults are what the paper states (the ``paper`` preset); the other presets under ``configs/presets`` state only
how they differ from it: ``reference`` (the authors' released code) and ``fast`` (the shipped models).

A config file is YAML. ``extends: other.yaml`` (a path relative to the file) deep-merges the file onto another one,
so an experiment states only what it changes.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError


@dataclass
class BackboneConfig:
    """The segmentation network whose decoder features are the experts.

    name: ``unet2d`` (paper's 2D UNet, 5 experts), ``unet3d`` (3 experts), ``unetr`` (3 experts),
    ``transunet`` (R50-ViT-B/16 hybrid, 3 experts).
    features: channel widths; None takes the backbone's defaults. UNets: 5 encoder levels + the last decoder stage
    (MONAI BasicUNet convention; default 16, 32, 64, 128, 256, 16, the paper's 2D UNet). TransUNet: see
    :mod:`morse.nets.transunet`.
    img_size: fixed input size in voxels/pixels for the transformer backbones (UNETR, TransUNet).
    """

    name: Literal["unet2d", "unet3d", "unetr", "transunet"] = "unet2d"
    in_channels: int = 1
    features: list[int] | None = None  # None: the backbone's own default widths
    norm: Literal["batch", "instance"] = "batch"
    dropout: float = 0.0
    img_size: list[int] | None = None
    # UNETR / TransUNet transformer sizes
    hidden_size: int = 768
    mlp_dim: int = 3072
    num_heads: int = 12
    num_layers: int = 12
    feature_size: int = 16
    pretrained: str | None = None  # local file with encoder weights (never downloaded)


@dataclass
class RoutingConfig:
    """Stochastic expert routing, applied in training mode only.

    mode ``bernoulli`` (paper): every expert of every sample is dropped independently with probability ``alpha``.
    mode ``uniform_count`` (released code): draw k uniformly from {0..max_drop}, drop k distinct experts for the
    whole batch. ``probability``: chance that routing is applied at all in an iteration (released UNETR code: 0.1).
    ``renormalize``: rescale the kept gate weights to sum to 1 (a sample whose experts are all dropped gets 0).
    """

    mode: Literal["none", "bernoulli", "uniform_count"] = "bernoulli"
    alpha: float = 0.7
    max_drop: int | None = None  # default N-1
    renormalize: bool = True
    probability: float = 1.0


@dataclass
class SMoEConfig:
    """Point features for the rendering head.

    kind ``smoe``: stochastic mixture of the decoder experts with a gating network.
    kind ``plain``: the same per-expert projections, concatenated and fused without gating (the non-MoE multi-scale
    feature extractor of the PointRend/IAR-only baselines).
    gating ``pointwise``: 1×1 gating (exactly evaluable at points only); ``dense``: gating convolutions with
    ``gating_kernel`` over the full-resolution stack of experts (paper / released code; expensive).
    Without ``expert_last_act`` the last expert layer is affine, so it commutes with interpolation and is applied once
    per point after blending instead of once per interpolation corner.
    """

    kind: Literal["smoe", "plain"] = "smoe"
    expert_dim: int = 256
    expert_layers: int = 2
    expert_last_act: bool = True  # ReLU after the last expert layer (released code); False lets it run after blending
    gating: Literal["pointwise", "dense"] = "dense"
    gating_kernel: int = 3
    gating_widths: list[int] = field(default_factory=lambda: [256, 256, 256])
    gating_norm: Literal["batch", "none"] = "batch"
    gating_final_relu: bool = False
    fusion_widths: list[int] = field(default_factory=lambda: [256, 256])
    out_dim: int = 256
    fusion_dropout: float = 0.0
    routing: RoutingConfig = field(default_factory=RoutingConfig)


@dataclass
class PositionalEncodingConfig:
    """Fourier positional encoding PE(p) = [sin(2π(2p-1)B), cos(2π(2p-1)B)], B of shape (dims, L).

    init: ``gaussian`` (N(0, scale²), paper) or ``uniform`` (U[0, scale), released code).
    """

    num_frequencies: int = 128
    init: Literal["gaussian", "uniform"] = "gaussian"
    scale: float = 1.0
    trainable: bool = True


@dataclass
class PointHeadConfig:
    """Point-rendering head and its point selection.

    head ``implicit`` (IAR: positional encoding + MLP) or ``standard`` (PointRend MLP, no encoding).
    Training: ``oversample`` × ``train_points`` uniform candidates, the ``importance`` fraction most uncertain kept,
    the rest uniform. Inference: ``subdivision_steps`` rounds, each replacing the logits of the ``test_points``
    most uncertain pixels/voxels (``upsample``: PointRend's 2× upsampling before each round).
    """

    head: Literal["implicit", "standard"] = "implicit"
    pe: PositionalEncodingConfig = field(default_factory=PositionalEncodingConfig)
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    coarse_each_layer: bool = True
    detach_coarse: bool = False
    train_points: int = 2048
    oversample: int = 3
    importance: float = 0.75
    test_points: int = 8192
    subdivision_steps: int = 2
    upsample: bool = False


@dataclass
class ModelConfig:
    """A backbone, optionally with point features (``features``) and a point head (``point_head``).

    ``features`` and ``point_head`` are either both set (a MORSE/PointRend model) or both ``None`` (backbone alone).
    """

    num_classes: int = 9
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    features: SMoEConfig | None = field(default_factory=SMoEConfig)
    point_head: PointHeadConfig | None = field(default_factory=PointHeadConfig)

    @property
    def spatial_dims(self) -> int:
        return 2 if self.backbone.name in ("unet2d", "transunet") else 3

    @property
    def has_point_head(self) -> bool:
        return self.point_head is not None and self.features is not None


@dataclass
class IntensityConfig:
    """``window``: clip to [low, high] then scale to [0, 1] (CT, Hounsfield units).
    ``zscore``: per-volume (x - mean) / std over nonzero voxels (MR)."""

    mode: Literal["window", "zscore"] = "window"
    low: float = -125.0
    high: float = 275.0


@dataclass
class PreprocessingConfig:
    """What the model pack expects of a volume.

    orientation: closest-axis orientation of the array axes, as the 3-letter code of the axes' positive directions in
    ITK convention (``LPS`` = i→left, j→posterior, k→superior). Reached by axis permutation/flips only (exact).
    spacing: model voxel size in mm, (x, y, z) order. For 2D models the z entry is ignored (slices stay slices).
    """

    orientation: str = "LPS"
    spacing: list[float] = field(default_factory=lambda: [2.0, 2.0, 2.0])
    intensity: IntensityConfig = field(default_factory=IntensityConfig)


@dataclass
class LossConfig:
    """L_total = sup_scale·(ce_weight·CE + dice_weight·Dice) + λ_t·L_rend.

    awa ``paper``: λ_t = rend_weight·1{t>T/2}·(t−T/2)/T; ``reference`` (released code): λ_t = 1{t>T/2}·(t−T/2)/T;
    ``constant``: λ_t = rend_weight.
    dice_batch: Dice per class over the whole batch (nnU-Net's "batch Dice") instead of per sample and then averaged;
    per-sample Dice rewards predicting nothing of a class that a patch does not contain.
    """

    ce_weight: float = 1.0
    dice_weight: float = 1.0
    dice_batch: bool = False
    sup_scale: float = 1.0
    rend_weight: float = 0.1
    awa: Literal["paper", "reference", "constant"] = "paper"


@dataclass
class AugmentConfig:
    flip: float = 0.5
    rot90: float = 0.5
    rotate: float = 0.25
    rotate_degrees: float = 20.0
    scale: float = 0.25
    scale_range: list[float] = field(default_factory=lambda: [0.85, 1.15])
    intensity: float = 0.25
    intensity_shift: float = 0.1
    intensity_scale: float = 0.1
    noise: float = 0.0
    noise_std: float = 0.05
    # Contrast-enhancement simulation: with probability ``class_shift`` every labelled structure of a sample gets its
    # own random intensity offset, drawn from ``class_shift_hu[label] = [low, high]`` in Hounsfield units (CT window
    # normalisation only). Teaches a model trained on non-contrast CT that enhanced organs and vessels are the same.
    class_shift: float = 0.0
    class_shift_hu: dict[int, list[float]] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Training data: an nnU-Net/MSD raw folder, a Synapse (TransUNet) folder, or a file list.

    ``dataset`` may be a path or ``registry:<name>`` (built on demand from the sha256-verified registry cases).
    """

    dataset: str = "registry:abdomen-ct-synapse8"
    format: Literal["nnunet", "synapse", "filelist"] = "nnunet"
    train_cases: list[str] | None = None
    patch_size: list[int] = field(default_factory=lambda: [160, 160])
    foreground_fraction: float = 0.67
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainConfig:
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 5e-4
    end_lr: float = 0.0
    poly_power: float = 0.9
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    iterations: int = 2000
    batch_size: int = 4
    seed: int = 1337
    amp: bool = True  # bf16 autocast on CUDA only
    channels_last: bool = True  # 2D: NHWC memory format (about 1.3× faster convolutions on CPU)
    grad_clip: float | None = 12.0
    log_every: int = 20
    checkpoint_every: int = 250


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)


# ----------------------------------------------------------------------------------------------------------------------
# dict <-> dataclass


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists (JSON/YAML-serialisable)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass type inside ``X | None`` / ``X``, if any."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def field_types(cls: type) -> dict[str, Any]:
    """The evaluated type of each field of dataclass ``cls``.

    Not :func:`typing.get_type_hints`: with postponed annotations every type is a string, and Python 3.9 (the Python
    of 3D Slicer 5.8) cannot evaluate the ``X | None`` in them, so ``|`` is rewritten as ``typing.Union`` first.
    """
    namespace = {"typing": typing, **vars(sys.modules[cls.__module__])}
    types = {}
    for f in dataclasses.fields(cls):
        tp = f.type
        if isinstance(tp, str):
            tree = _UnionsToTyping().visit(ast.parse(tp, mode="eval"))
            tp = eval(compile(ast.fix_missing_locations(tree), f"<{cls.__name__}.{f.name}>", "eval"), namespace)
        types[f.name] = tp
    return types


class _UnionsToTyping(ast.NodeTransformer):
    # camel case: the method name ast.NodeTransformer dispatches binary operators to
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.generic_visit(node)
        if not isinstance(node.op, ast.BitOr):
            return node
        union = ast.Attribute(value=ast.Name(id="typing", ctx=ast.Load()), attr="Union", ctx=ast.Load())
        members = ast.Tuple(elts=[node.left, node.right], ctx=ast.Load())
        return ast.copy_location(ast.Subscript(value=union, slice=members, ctx=ast.Load()), node)


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error that names the key and the allowed ones."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for key, value in data.items():
        sub = _dataclass_in(hints[key])
        if sub is not None and isinstance(value, dict):
            kwargs[key] = from_dict(sub, value, f"{where}.{key}" if where else key)
        else:
            kwargs[key] = copy.deepcopy(value)
    obj = cls(**kwargs)
    _check_literals(obj, hints, where)
    return obj


def _check_literals(obj: Any, hints: dict[str, Any], where: str) -> None:
    for f in dataclasses.fields(obj):
        tp = hints[f.name]
        choices: tuple = ()
        if typing.get_origin(tp) is Literal:
            choices = typing.get_args(tp)
        value = getattr(obj, f.name)
        if choices and value not in choices:
            name = f"{where}.{f.name}" if where else f.name
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(repr, choices))}")


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` merged into a copy of ``base``; mappings merge recursively, everything else replaces.

    A mapping value of ``None`` replaces the whole entry (used to switch a head off: ``point_head: null``).
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML config and resolve its ``extends`` chain (relative paths, cycles refused)."""
    import yaml

    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config 'extends' cycle: {' -> '.join(str(p) for p in (*_seen, path))}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    parent = data.pop("extends", None)
    if parent:
        base = load_yaml_tree(path.parent / parent, (*_seen, path))
        data = deep_merge(base, data)
    return data


def load_experiment(path: str | Path, overrides: dict | None = None) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a YAML file (with ``extends``) and optional dict overrides."""
    tree = load_yaml_tree(path)
    if overrides:
        tree = deep_merge(tree, overrides)
    try:
        cfg = from_dict(ExperimentConfig, tree)
    except TypeError as exc:  # wrong value shapes that dataclass construction rejects
        raise ConfigError(f"{path}: {exc}") from None
    ignored = ignored_settings(cfg)
    if ignored:
        raise ConfigError(f"{path}: " + "; ".join(ignored))
    return cfg


_TRANSFORMER_SIZES = ("hidden_size", "mlp_dim", "num_heads", "num_layers")


def ignored_settings(cfg: ExperimentConfig) -> list[str]:
    """Settings of ``cfg`` that would have no effect, given the others, each with what to do instead.

    A value equal to the field's default is never reported: the defaults are shared by every experiment. Applied to
    experiment files (:func:`load_experiment`), where a setting that silently does nothing is a mistake; model packs
    store every field and are not checked here.
    """
    problems = []
    backbone = cfg.model.backbone
    default_backbone = BackboneConfig()
    if backbone.name in ("unet2d", "unet3d"):
        if backbone.img_size is not None:
            problems.append(
                f"model.backbone.img_size has no effect on {backbone.name} (any multiple of 16 fits); remove it"
            )
        for name in (*_TRANSFORMER_SIZES, "feature_size"):
            if getattr(backbone, name) != getattr(default_backbone, name):
                problems.append(f"model.backbone.{name} is a transformer setting; {backbone.name} ignores it")
    if backbone.name == "unetr" and backbone.num_layers != default_backbone.num_layers:
        problems.append("model.backbone.num_layers: MONAI's UNETR has 12 layers; remove the setting")
    if backbone.name == "transunet" and backbone.feature_size != default_backbone.feature_size:
        problems.append("model.backbone.feature_size is a UNETR setting; TransUNet widths are in features")
    features = cfg.model.features
    if features is not None:
        if features.gating == "pointwise" and features.gating_kernel != 1:
            problems.append(
                f"model.features.gating_kernel {features.gating_kernel} has no effect with gating: pointwise "
                "(a 1×1 gate); set gating_kernel: 1 or gating: dense"
            )
        if features.routing.mode != "uniform_count" and features.routing.max_drop is not None:
            problems.append(
                f"model.features.routing.max_drop is only read by mode uniform_count (mode is {features.routing.mode})"
            )
    augment = cfg.data.augment
    if augment.class_shift_hu and augment.class_shift == 0:
        problems.append("data.augment.class_shift_hu has no effect while data.augment.class_shift is 0")
    return problems
