"""Training data from a config: resolve the dataset, read its cases, bring them onto the model grid."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import ExperimentConfig
from ..errors import DataError
from ..labels import LabelInfo
from .cache import load_training_cache, save_training_cache
from .volumes import TrainingVolume, to_model_grid

log = logging.getLogger(__name__)


def label_infos(names: dict[str, int]) -> list[LabelInfo]:
    """Classes of a dataset (name → value, background excluded) with colours and SNOMED-CT codes where known
    (the Synapse-8 organs); other classes get distinct colours and no terminology."""
    from ..data.synapse8 import SYNAPSE8

    known = {info.name: info for info in SYNAPSE8}
    palette = [(0.9, 0.3, 0.3), (0.3, 0.7, 0.3), (0.3, 0.4, 0.9), (0.9, 0.8, 0.2), (0.7, 0.3, 0.8), (0.2, 0.8, 0.8)]
    infos = []
    for i, (name, value) in enumerate(sorted(names.items(), key=lambda kv: kv[1])):
        if value == 0:
            continue
        info = known.get(name)
        if info is not None and info.value == value:
            infos.append(info)
        else:
            infos.append(LabelInfo(value, name, palette[i % len(palette)]))
    return infos


def load_training_data(
    cfg: ExperimentConfig, cache: str | Path | None = None
) -> tuple[list[TrainingVolume], list[LabelInfo], dict]:
    """(training volumes, classes, provenance) for ``cfg.data``. With ``cache`` (a file path): read them from that
    file when it exists (:mod:`morse.train.cache`; the dataset is not opened), else read the dataset and write it."""
    if cache is not None and Path(cache).is_file():
        volumes, names, provenance = load_training_cache(cache, cfg)
        log.info("training data: %d cases from the cache %s", len(volumes), cache)
        return volumes, label_infos(names), provenance
    volumes, names, provenance = _read_dataset(cfg)
    if cache is not None:
        save_training_cache(cache, cfg, volumes, names, provenance)
        log.info("training cache written: %s", cache)
    return volumes, label_infos(names), provenance


def _read_dataset(cfg: ExperimentConfig) -> tuple[list[TrainingVolume], dict[str, int], dict]:
    from ..data import readers
    from ..data.convert import resolve_dataset

    folder = resolve_dataset(cfg.data.dataset)
    if cfg.data.format == "nnunet":
        cases = readers.read_nnunet(folder)
    elif cfg.data.format == "synapse":
        cases = readers.read_synapse(folder)
    else:
        cases = readers.read_filelist(folder)
    wanted = cfg.data.train_cases
    if wanted:
        by_name = {c.name: c for c in cases}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise DataError(f"{folder}: train_cases {missing} not found (have: {sorted(by_name)})")
        cases = [by_name[n] for n in wanted]
    else:
        cases = [c for c in cases if getattr(c, "split", "train") == "train"]
    if not cases:
        raise DataError(f"{folder}: no training cases")
    volumes = []
    for case in cases:
        image, label, ijk_to_ras = readers.load_case(case)
        if label is None:
            raise DataError(f"{case.name}: training case without a label map")
        volumes.append(to_model_grid(case.name, image, label, ijk_to_ras, cfg.preprocessing, cfg.model.spatial_dims))
        log.info("training case %s: model grid %s", case.name, volumes[-1].image.shape)
    provenance = {"dataset": cfg.data.dataset, "train_cases": [c.name for c in cases]}
    return volumes, readers.dataset_labels(folder) or {}, provenance
