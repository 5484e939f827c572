"""The training volumes of a config, on the model grid, in one compressed file.

A run can then start where the dataset is not: a lent GPU machine receives the working tree, not the data folder
beside it, and the tree it receives is limited in size. The file holds only what :func:`load_training_data` would
build, tied to the settings it was built with, so it cannot silently feed a run whose preprocessing differs.

Images normalised by a CT window lie in [0, 1]; they are stored as uint8 (steps of 1/255 of the window, e.g. 1.57 HU
for −125..275 HU, the step the BTCV scans themselves are stored with). Other normalisations are stored as float16.
Labels are stored as they are (uint8).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..config import ExperimentConfig, to_dict
from ..errors import DataError
from ..fileutils import write_atomic
from .volumes import TrainingVolume

FORMAT = "morse-training-cache"
VERSION = 1


def cache_key(cfg: ExperimentConfig) -> dict:
    """What the cached arrays depend on: the dataset, its cases and the preprocessing onto the model grid."""
    return {
        "dataset": str(cfg.data.dataset),
        "format": cfg.data.format,
        "train_cases": list(cfg.data.train_cases or []),
        "preprocessing": to_dict(cfg.preprocessing),
        "spatial_dims": cfg.model.spatial_dims,
    }


def save_training_cache(
    path: str | Path, cfg: ExperimentConfig, volumes: list[TrainingVolume], names: dict[str, int], provenance: dict
) -> Path:
    """Write ``volumes`` (images ``(D, H, W)`` float32, labels uint8) with the dataset's class ``names``
    (name → label value) and ``provenance``; atomic, so an interrupted write leaves no half file."""
    window = cfg.preprocessing.intensity.mode == "window"
    arrays: dict[str, np.ndarray] = {}
    for i, vol in enumerate(volumes):
        if window:
            arrays[f"image_{i}"] = np.rint(np.clip(vol.image, 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            arrays[f"image_{i}"] = vol.image.astype(np.float16)
        arrays[f"label_{i}"] = np.ascontiguousarray(vol.label, dtype=np.uint8)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "key": cache_key(cfg),
        "cases": [v.name for v in volumes],
        "image_encoding": "uint8/255" if window else "float16",
        "names": names,
        "provenance": provenance,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return write_atomic(path, write)


def load_training_cache(path: str | Path, cfg: ExperimentConfig) -> tuple[list[TrainingVolume], dict[str, int], dict]:
    """(volumes, class names, provenance) from a cache written for the same :func:`cache_key` as ``cfg``'s."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise DataError(f"{path}: not a training cache of this version (rebuild it with --cache on a new path)")
            expected = cache_key(cfg)
            if meta["key"] != expected:
                differ = sorted(k for k in expected if meta["key"].get(k) != expected[k])
                raise DataError(
                    f"{path} was built for other settings ({', '.join(differ)} differ from the config's); "
                    "delete it or give another --cache path to build one for this config"
                )
            volumes = []
            for i, name in enumerate(meta["cases"]):
                image = data[f"image_{i}"]
                if meta["image_encoding"] == "uint8/255":
                    image = np.divide(image, np.float32(255), dtype=np.float32)  # one float32 array, no second copy
                volumes.append(TrainingVolume(name, image.astype(np.float32, copy=False), data[f"label_{i}"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # missing, truncated or foreign file
        raise DataError(f"{path}: cannot read the training cache ({exc}); delete it to build it again") from None
    return volumes, meta["names"], meta["provenance"]
