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

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ModelConfig, PreprocessingConfig, from_dict, to_dict
from .errors import ConfigError, ModelPackError
from .inference.result import LabelInfo

SCHEMA_VERSION = 1
DEFAULT_MODEL_ID = "abdomen-ct-morse2d"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+].*)?$")


def models_dir() -> Path:
    """Folder of the bundled model packs (``MORSESegmentation/Resources/Models``); ``$MORSE_MODELS`` overrides."""
    env = os.environ.get("MORSE_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "Resources" / "Models"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
        try:
            state = load_file(str(self.weights_path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelPackError(f"{self.weights_path}: not a readable safetensors file ({exc}).") from None
        model = MorseModel(self.config)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensor shapes differ from what the architecture builds
            first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc)[:200])
            message = f"{self.path}: weights do not match the architecture in model.json ({first})"
            raise ModelPackError(message) from None
        if missing or unexpected:
            raise ModelPackError(
                f"{self.path}: weights do not match the architecture in model.json "
                f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]})."
            )
        return model.eval().to(device)


def _labels_from_json(items: list[dict]) -> list[LabelInfo]:
    labels = []
    for item in items:
        try:
            labels.append(
                LabelInfo(
                    value=int(item["value"]),
                    name=str(item["name"]),
                    color=tuple(float(c) for c in item["color"]),
                    category=tuple(item["category"]) if item.get("category") else None,
                    type=tuple(item["type"]) if item.get("type") else None,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelPackError(f"model.json: label entry {item!r} is invalid ({exc})") from None
    return labels


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
        pickles = [p.name for p in path.iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES)]
        hint = f" (found pickle file(s) {pickles}, which MORSE never loads)" if pickles else ""
        raise ModelPackError(f"{path}: no model.json; not a MORSE model pack{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelPackError(f"{meta_path}: not valid JSON ({exc})") from None
    version = meta.get("schema_version")
    if not isinstance(version, int):
        raise ModelPackError(f"{meta_path}: missing integer schema_version")
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
    if weights.get("format", "safetensors") != "safetensors" or not str(weights.get("file", "")).endswith(
        ".safetensors"
    ):
        raise ModelPackError(f"{meta_path}: weights must be a .safetensors file (pickle formats are refused)")
    if not (path / weights["file"]).is_file():
        raise ModelPackError(f"{path}: weights file {weights['file']} is missing")
    try:
        config = from_dict(ModelConfig, meta["architecture"], "architecture")
        preprocessing = from_dict(PreprocessingConfig, meta["preprocessing"], "preprocessing")
    except (ConfigError, TypeError) as exc:
        raise ModelPackError(f"{meta_path}: {exc}") from None
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
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
            "labels": [
                {
                    "value": lab.value,
                    "name": lab.name,
                    "color": list(lab.color),
                    "category": list(lab.category) if lab.category else None,
                    "type": list(lab.type) if lab.type else None,
                }
                for lab in labels
            ],
            "inference": inference or {},
            "training": training or {},
            "metrics": metrics or {},
            "weights": {"file": "model.safetensors", "sha256": sha256_file(weights), "format": "safetensors"},
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
