"""Model packs: a folder with ``model.json`` (description) and ``model.safetensors`` (weights).

Loading never unpickles anything: weights are safetensors only, and their sha256 must match ``model.json``.
A pickle checkpoint (``.pt``/``.pth``/``.ckpt``) given as a model is refused, because unpickling runs code.

``model.json`` (schema version 1)::

    schema_version   1
    model_id         e.g. "abdomen-ct-morse2d"
    version          semantic version of the weights, "MAJOR.MINOR.PATCH"
    name, description
    architecture     ModelConfig (morse.config), as a mapping
    preprocessing    PreprocessingConfig: orientation, spacing (mm, x y z), intensity normalisation
    labels           [{value, name, color [r, g, b] 0..1, category [scheme, code, meaning], type [...]}]
    inference        {batch_size, gating_stride, sw_overlap}
    training         provenance: config, data, iterations, seed, hardware, wall time
    metrics          evaluation numbers
    weights          {file, sha256, format: "safetensors"}
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pack_limits
from .config import ModelConfig, PreprocessingConfig, from_dict, to_dict
from .errors import ConfigError, ModelPackError
from .fileutils import replace_folder, sha256_file
from .labels import LabelInfo, labels_from_json, labels_to_json
from .staging import publish_permissions, staging_dir

SCHEMA_VERSION = 1
DEFAULT_MODEL_ID = "abdomen-ct-morse2d"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
MAX_MODEL_JSON_BYTES = 10 << 20  # a description, not data: anything larger is not a model pack
_SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+].*)?$")


def models_dir() -> Path:
    """Folder of the bundled model packs (``MORSESegmentation/Resources/Models``); ``$MORSE_MODELS`` overrides."""
    env = os.environ.get("MORSE_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "Resources" / "Models"


@dataclass
class ModelPack:
    """A validated model pack (weights not yet loaded; see :meth:`build`)."""

    path: Path
    model_id: str
    version: str
    config: ModelConfig
    preprocessing: PreprocessingConfig
    labels: list[LabelInfo]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_path(self) -> Path:
        return self.path / self.meta["weights"]["file"]

    @property
    def inference(self) -> dict[str, Any]:
        return {"batch_size": 8, "gating_stride": 2, "sw_overlap": 0.25, **self.meta.get("inference", {})}

    def build(self, device="cpu"):
        """The :class:`morse.model.MorseModel` with verified weights, in eval mode on ``device`` (torch device or name).

        torch is imported here, not at module level, so that reading and validating ``model.json`` (e.g. in Slicer's
        model selector) stays cheap."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from .model import MorseModel

        expected = self.meta["weights"].get("sha256")
        actual = sha256_file(self.weights_path)
        if expected != actual:
            raise ModelPackError(
                f"{self.weights_path}: sha256 {actual[:12]}… does not match model.json ({str(expected)[:12]}…); "
                f"the weights file is corrupted or was replaced. Re-install or re-download the model pack."
            )
        import torch
        from safetensors import safe_open

        try:  # the header only: names, shapes and dtypes, before anything is allocated
            with safe_open(str(self.weights_path), framework="pt") as f:
                stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelPackError(f"{self.weights_path}: not a readable safetensors file ({exc}).") from None
        try:  # the architecture without memory: an absurd model.json cannot make us allocate terabytes
            with torch.device("meta"):
                skeleton = MorseModel(self.config)
        except Exception as exc:
            raise ModelPackError(
                f"{self.path}: the architecture in model.json cannot be built ({type(exc).__name__}: {exc})"
            ) from None
        wanted = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        del skeleton
        missing = sorted(set(wanted) - set(stored))
        unexpected = sorted(set(stored) - set(wanted))
        wrong = [f"{k} {stored[k]} ≠ {wanted[k]}" for k in wanted if k in stored and stored[k] != wanted[k]]
        if missing or unexpected or wrong:
            raise ModelPackError(
                f"{self.path}: weights do not match the architecture in model.json "
                f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]}, "
                f"other shape {len(wrong)}: {wrong[:3]})."
            )
        try:
            state = load_file(str(self.weights_path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelPackError(f"{self.weights_path}: not a readable safetensors file ({exc}).") from None
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ModelPackError(
                f"{self.weights_path}: {len(bad)} weight tensor(s) hold NaN or infinite values ({bad[:3]}); the model "
                f"was saved from a diverged training run. Use another model pack."
            )
        model = MorseModel(self.config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # e.g. a dtype that cannot be copied into the parameters
            first = str(exc).strip().splitlines()[-1][:200]
            raise ModelPackError(
                f"{self.path}: weights do not match the architecture in model.json ({first})"
            ) from None
        return model.eval().to(device)


def _labels_from_json(items: list[dict]) -> list[LabelInfo]:
    try:
        return labels_from_json(items)
    except ValueError as exc:
        raise ModelPackError(f"model.json: {exc}") from None


def resolve_model_path(model: str | Path) -> Path:
    """Folder of a model pack from ``"default"``, a bundled model id, or a path; refuses pickle files."""
    if isinstance(model, str) and model in ("default", ""):
        path = models_dir() / DEFAULT_MODEL_ID
        if not path.is_dir():
            raise ModelPackError(
                f"the default model is not installed (expected {path}); reinstall the extension or give --model PATH"
            )
        return path
    path = Path(model)
    if not path.exists() and isinstance(model, str) and (models_dir() / model).is_dir():
        return models_dir() / model
    if path.is_file():
        if path.name.lower().endswith(PICKLE_SUFFIXES):
            raise ModelPackError(
                f"{path}: a pickle checkpoint. MORSE does not load pickle files because unpickling can run arbitrary "
                f"code. Give a model-pack folder (model.json + model.safetensors); 'morse train' writes one."
            )
        if path.name == "model.json":
            return path.parent
        raise ModelPackError(f"{path}: a model must be a model-pack folder holding model.json and model.safetensors")
    if not path.is_dir():
        raise ModelPackError(f"{path}: no such model pack folder")
    return path


def load_model_pack(model: str | Path = "default") -> ModelPack:
    """Read and validate ``model.json`` of a model pack (see the module docstring for the schema)."""
    path = resolve_model_path(model)
    meta_path = path / "model.json"
    if not meta_path.is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES))
        hint = f" (found pickle file(s) {pickles}, which MORSE never loads)" if pickles else ""
        raise ModelPackError(f"{path}: no model.json; not a MORSE model pack{hint}")
    try:
        if meta_path.stat().st_size > MAX_MODEL_JSON_BYTES:
            raise ModelPackError(f"{meta_path}: {meta_path.stat().st_size} bytes, too large for a model description")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelPackError(f"{meta_path}: not valid JSON ({exc})") from None
    except (RecursionError, ValueError) as exc:  # nesting beyond the parser's stack; integers of 4300+ digits
        raise ModelPackError(f"{meta_path}: not a model description ({str(exc)[:120]})") from None
    if pack_limits.json_depth(meta) > pack_limits.MAX_JSON_DEPTH:
        raise ModelPackError(f"{meta_path}: nested deeper than {pack_limits.MAX_JSON_DEPTH} levels; not a model pack")
    if not isinstance(meta, dict):
        raise ModelPackError(f"{meta_path}: must hold a JSON object (a model description), not {type(meta).__name__}")
    version = meta.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelPackError(f"{meta_path}: missing integer schema_version (1 or more)")
    if version > SCHEMA_VERSION:
        raise ModelPackError(
            f"{meta_path}: schema version {version} is newer than this MORSE understands ({SCHEMA_VERSION}); "
            f"update MORSE to use this model"
        )
    for key in ("model_id", "version", "architecture", "preprocessing", "labels", "weights"):
        if key not in meta:
            raise ModelPackError(f"{meta_path}: missing required field {key!r}")
    if not _SEMVER.match(str(meta["version"])):
        raise ModelPackError(f"{meta_path}: version {meta['version']!r} is not MAJOR.MINOR.PATCH")
    weights = meta["weights"]
    if not isinstance(weights, dict):
        raise ModelPackError(f"{meta_path}: 'weights' must be an object with file, sha256 and format")
    if weights.get("format", "safetensors") != "safetensors" or not str(weights.get("file", "")).endswith(
        ".safetensors"
    ):
        raise ModelPackError(f"{meta_path}: weights must be a .safetensors file (pickle formats are refused)")
    _check_weights_file(path, str(weights["file"]), meta_path)
    try:
        config = from_dict(ModelConfig, meta["architecture"], "architecture")
        preprocessing = from_dict(PreprocessingConfig, meta["preprocessing"], "preprocessing")
    except (ConfigError, TypeError) as exc:
        raise ModelPackError(f"{meta_path}: {exc}") from None
    _check_settings(config, preprocessing, meta.get("inference"), meta_path)
    calibration_problems = pack_limits.check_calibration(meta.get("calibration"))
    if calibration_problems:
        raise ModelPackError(f"{meta_path}: " + "; ".join(calibration_problems))
    if not isinstance(meta["labels"], list):
        raise ModelPackError(f"{meta_path}: 'labels' must be a list of {{value, name, color}} entries")
    labels = _labels_from_json(meta["labels"])
    values = [lab.value for lab in labels]
    if len(set(values)) != len(values) or any(v <= 0 or v >= config.num_classes for v in values):
        raise ModelPackError(
            f"{meta_path}: label values {values} must be unique and within 1..{config.num_classes - 1} "
            f"(the model has {config.num_classes} classes including background)"
        )
    return ModelPack(
        path=path,
        model_id=str(meta["model_id"]),
        version=str(meta["version"]),
        config=config,
        preprocessing=preprocessing,
        labels=labels,
        meta=meta,
    )


def _check_weights_file(path: Path, name: str, meta_path: Path) -> None:
    """The weights must be a regular file directly inside the pack folder: no path in the name, and no link that
    leads out of the folder (a pack is self-contained; its checksum must describe its own file)."""
    if Path(name).name != name or name in (".", ".."):
        raise ModelPackError(f"{meta_path}: weights file {name!r} must be a file name inside the model pack folder")
    file = path / name
    if file.is_symlink() and file.resolve().parent != path.resolve():
        raise ModelPackError(
            f"{file}: a link to a file outside the model pack ({file.resolve()}); copy the weights into the pack "
            f"folder instead"
        )
    if not file.is_file():
        raise ModelPackError(f"{path}: weights file {name} is missing")


def _check_settings(config: ModelConfig, preprocessing: PreprocessingConfig, inference, meta_path: Path) -> None:
    """Types and ranges of every model.json value that sizes the network or the inference run
    (:mod:`morse.pack_limits`); from_dict checks names only."""
    problems = pack_limits.check_architecture(config)
    problems += pack_limits.check_preprocessing(preprocessing)
    problems += pack_limits.check_inference(inference)
    if problems:
        raise ModelPackError(f"{meta_path}: " + "; ".join(problems))


def save_model_pack(
    out_dir: str | Path,
    model,
    *,
    model_id: str,
    version: str,
    preprocessing: PreprocessingConfig,
    labels: list[LabelInfo],
    name: str = "",
    description: str = "",
    inference: dict | None = None,
    training: dict | None = None,
    metrics: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model pack for ``model`` (a :class:`morse.model.MorseModel`); written to a temporary folder first and
    moved into place, so a failure never leaves a half-written pack."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ModelPackError(f"{out_dir} exists; choose another folder or allow overwriting")
    if not _SEMVER.match(version):
        raise ModelPackError(f"version {version!r} is not MAJOR.MINOR.PATCH")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out_dir)
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        weights = tmp / "model.safetensors"
        save_file(state, str(weights), metadata={"model_id": model_id, "version": version})
        meta = {
            "schema_version": SCHEMA_VERSION,
            "model_id": model_id,
            "version": version,
            "name": name or model_id,
            "description": description,
            "architecture": to_dict(model.cfg),
            "preprocessing": to_dict(preprocessing),
            "labels": labels_to_json(labels),
            "inference": inference or {},
            "training": training or {},
            "metrics": metrics or {},
            "weights": {"file": "model.safetensors", "sha256": sha256_file(weights), "format": "safetensors"},
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        publish_permissions(tmp)
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
