"""Training data from a config: resolve the dataset, read its cases, bring them onto the model grid."""

from __future__ import annotations

import logging

from ..config import ExperimentConfig
from ..errors import DataError
from ..labels import LabelInfo
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


def load_training_data(cfg: ExperimentConfig) -> tuple[list[TrainingVolume], list[LabelInfo], dict]:
    """(training volumes, classes, provenance) for ``cfg.data``."""
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
    labels = label_infos(readers.dataset_labels(folder) or {})
    provenance = {"dataset": cfg.data.dataset, "train_cases": [c.name for c in cases]}
    return volumes, labels, provenance
