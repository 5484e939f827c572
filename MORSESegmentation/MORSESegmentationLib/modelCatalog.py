"""Which models the user can pick: the packs bundled with the extension, and a model-pack folder from disk.

A model pack is a folder with ``model.json`` and ``model.safetensors`` (see ``morse.modelpack``). Validation goes
through the engine's :func:`morse.modelpack.load_model_pack` and the weights' sha256, so the message a user sees
here is the one a run would give. Pickle checkpoints (``.pt``/``.pth``...) are refused, never loaded.

``morse.modelpack`` imports neither torch nor safetensors (it reads ``model.json`` and checks the weights file;
the network is built only in the worker), so the full check runs from the first start of the extension, before
PyTorch is installed, and importing this module loads nothing heavy (a test checks both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_KEY = "default"


@dataclass
class ModelEntry:
    """A model the user can choose. ``key`` is what :meth:`process` takes as ``model``: ``"default"``, a bundled
    model id, or a folder path."""

    key: str
    title: str
    modelId: str = ""
    version: str = ""
    path: Path | None = None
    labels: list[str] = field(default_factory=list)
    description: str = ""
    intendedUse: str = ""  # model.json "intended_use": what the model is for; shown beside every choice


@dataclass
class ModelCheck:
    """Outcome of checking a model folder: ``ok``, a message for the user, and the entry when usable."""

    ok: bool
    message: str
    entry: ModelEntry | None = None


def modelsDir() -> Path:
    """Folder of the bundled model packs (``$MORSE_MODELS`` overrides): where the engine looks."""
    from morse.modelpack import models_dir

    return models_dir()


def defaultModelId() -> str:
    from morse.modelpack import DEFAULT_MODEL_ID

    return DEFAULT_MODEL_ID


def _readMeta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _entryFromMeta(key: str, folder: Path, meta: dict) -> ModelEntry:
    labels = [str(item.get("name", "?")) for item in meta.get("labels", []) if isinstance(item, dict)]
    name = str(meta.get("name") or meta.get("model_id") or folder.name)
    version = str(meta.get("version", ""))
    return ModelEntry(
        key=key,
        title=f"{name} {version}".strip(),
        modelId=str(meta.get("model_id", folder.name)),
        version=version,
        path=folder,
        labels=labels,
        description=str(meta.get("description", "")),
        intendedUse=str(meta.get("intended_use", "")),
    )


def bundledModels() -> list[ModelEntry]:
    """The model packs shipped with the extension, the default one first (titled "... (default)")."""
    root = modelsDir()
    defaultId = defaultModelId()
    entries = []
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            meta = _readMeta(folder)
            if meta is None:
                continue
            isDefault = folder.name == defaultId
            entry = _entryFromMeta(DEFAULT_KEY if isDefault else folder.name, folder, meta)
            if isDefault:
                entry.title += " (default)"
            entries.append(entry)
    entries.sort(key=lambda e: e.key != DEFAULT_KEY)
    return entries


def describe(entry: ModelEntry) -> str:
    organs = ", ".join(entry.labels[:10]) + ("…" if len(entry.labels) > 10 else "")
    return f"{entry.modelId} {entry.version}: {len(entry.labels)} labels ({organs})"


def checkModel(key: str) -> ModelCheck:
    """Check a model choice: ``"default"``, a bundled id, or a model-pack folder. Never raises."""
    key = (key or "").strip()
    if key == DEFAULT_KEY or (key and "/" not in key and "\\" not in key and (modelsDir() / key).is_dir()):
        folder = modelsDir() / (defaultModelId() if key == DEFAULT_KEY else key)
        if not folder.is_dir():
            return ModelCheck(
                False,
                f"The bundled model is not installed (expected {folder}). Reinstall the MORSE extension, or load a "
                "model pack from disk.",
            )
        return checkFolder(folder, key=key)
    if not key:
        return ModelCheck(False, "Choose a model-pack folder (it holds model.json and model.safetensors).")
    return checkFolder(Path(key), key=key)


_CHECKS: dict[tuple, ModelCheck] = {}


def _fingerprint(folder: Path) -> tuple:
    """What a cached check depends on: the folder and the size/mtime of every file in it."""
    try:
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    except OSError:
        files = []
    return (str(folder.resolve()), tuple(files))


def checkFolder(folder: str | Path, key: str | None = None) -> ModelCheck:
    """Validate a model-pack folder with the engine's loader and the weights' checksum; never raises.

    Results are cached until a file in the folder changes (hashing the weights takes a moment, and the panel
    re-checks whenever it is shown).
    """
    folder = Path(folder)
    key = key or str(folder)
    cacheKey = (key, *_fingerprint(folder)) if folder.is_dir() else None
    if cacheKey in _CHECKS:
        return _CHECKS[cacheKey]
    check = _fullCheck(folder, key)
    if cacheKey is not None:
        _CHECKS[cacheKey] = check
    return check


def _fullCheck(folder: Path, key: str) -> ModelCheck:
    from morse.errors import MorseError
    from morse.fileutils import sha256_file
    from morse.modelpack import load_model_pack

    try:
        pack = load_model_pack(folder)
    except MorseError as exc:
        return ModelCheck(False, str(exc))
    except OSError as exc:
        return ModelCheck(False, f"{folder}: cannot be read ({exc})")
    expected = pack.meta["weights"].get("sha256")
    if expected and sha256_file(pack.weights_path) != expected:
        return ModelCheck(
            False,
            f"{pack.weights_path}: the weights do not match the checksum in model.json (corrupted or replaced file). "
            "Copy the model pack again.",
        )
    entry = _entryFromMeta(key, pack.path, pack.meta)
    return ModelCheck(True, describe(entry), entry)
