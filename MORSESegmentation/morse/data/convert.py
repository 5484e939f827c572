"""Build nnU-Net-style datasets from the registry sample cases; resolve ``registry:<name>`` dataset specs.

Datasets (written to ``data_root()/datasets/<name>/`` on first use, then reused; the user cache if that is
read-only):

``abdomen-ct-synapse8``
    imagesTr/labelsTr: ``abdomen-ct`` (subject A, 122×101×112 at 3 mm, TotalSegmentator --fast labels → Synapse-8).
    imagesTs/labelsTs: ``abdomen-ct-dicom`` (subject C, the DICOM series written as NIfTI, label resampled by
    physical space; liver, spleen, stomach, pancreas, aorta only). Different patients, so the split is honest — but
    N=1 each, and the references are model outputs: report "agreement with TotalSegmentator", not accuracy.
``abdomen-mr-synapse8``
    imagesTr/labelsTr: ``abdomen-mr-small`` (subject B). No test case exists for MR; evaluate with ``--split train``.

The ``dataset.json`` is nnU-Net v2 (channel_names, labels, numTraining, file_ending) plus a ``morse`` block: subject
per case, split per case, organs present per case, and provenance (sdist name, sha256, how labels were made).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileutils import replace_folder
from . import synapse8
from .cases import case_label_path, case_path, get_case
from .fetch import get_source, writable_dir

REGISTRY_PREFIX = "registry:"
_BUILD_VERSION = 1
"""Bump when the layout or content changes, so that cached datasets are rebuilt."""


@dataclass(frozen=True)
class RegistryDataset:
    """A dataset assembled from named sample cases. ``train``/``test``: sample-case names."""

    name: str
    description: str
    modality: str
    train: tuple[str, ...]
    test: tuple[str, ...] = ()


REGISTRY_DATASETS: dict[str, RegistryDataset] = {
    d.name: d
    for d in (
        RegistryDataset(
            "abdomen-ct-synapse8",
            "Abdominal CT, Synapse-8 organs. Train: subject A (abdomen-ct, 3 mm). Test: subject C (abdomen-ct-dicom, "
            "0.98x0.98x2 mm; liver, spleen, stomach, pancreas, aorta). Labels are TotalSegmentator predictions.",
            "CT",
            ("abdomen-ct",),
            ("abdomen-ct-dicom",),
        ),
        RegistryDataset(
            "abdomen-mr-synapse8",
            "Abdominal MR, Synapse-8 organs. Train: subject B (abdomen-mr-small, 3 mm). No test case. Labels are "
            "TotalSegmentator total_mr predictions.",
            "MR",
            ("abdomen-mr-small",),
        ),
    )
}


def resolve_dataset(spec: str | Path) -> Path:
    """Folder (or file list) of a dataset spec: a path, or ``registry:<name>`` (built on first use).

    A path must exist; an unknown registry name is a DataError listing the known ones.
    """
    text = str(spec)
    if text.startswith(REGISTRY_PREFIX):
        return build_registry_dataset(text[len(REGISTRY_PREFIX) :])
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(
            f"dataset {text} does not exist; give a dataset folder, a file list, or one of "
            f"{', '.join(REGISTRY_PREFIX + n for n in REGISTRY_DATASETS)}"
        )
    return path


def build_registry_dataset(name: str = "abdomen-ct-synapse8", *, force: bool = False) -> Path:
    """Build (once) the nnU-Net-style registry dataset ``name`` and return its folder.

    Idempotent: a folder whose ``dataset.json`` carries the current build version and source checksum is returned as
    is (a few ms). The build goes to a temporary folder that is renamed into place when complete.
    """
    try:
        spec = REGISTRY_DATASETS[name]
    except KeyError:
        raise DataError(f"unknown registry dataset {name!r}; known: {', '.join(REGISTRY_DATASETS)}") from None
    target = writable_dir("datasets") / name
    if not force and _is_current(target, spec):
        return target
    # Fetch (and generate the labels) before taking any space in datasets/.
    sources = {get_case(c).source for c in spec.train + spec.test}
    images = {c: case_path(c) for c in spec.train + spec.test}
    labels = {c: case_label_path(c) for c in spec.train + spec.test}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".tmp-{name}-", dir=target.parent) as tmp:
        staging = Path(tmp) / name
        meta = _write_dataset(spec, staging, images, labels, sources)
        (staging / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        replace_folder(staging, target)
    return target


def _stamp(spec: RegistryDataset) -> dict:
    sources = sorted({get_case(c).source for c in spec.train + spec.test})
    return {"build_version": _BUILD_VERSION, "sources": {s: get_source(s).sha256 for s in sources}}


def _is_current(target: Path, spec: RegistryDataset) -> bool:
    try:
        meta = json.loads((target / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    morse = meta.get("morse") or {}
    stamp = _stamp(spec)
    return (
        morse.get("build_version") == stamp["build_version"]
        and morse.get("provenance", {}).get("sources_sha256") == stamp["sources"]
    )


def _write_dataset(spec: RegistryDataset, out: Path, images: dict, labels: dict, sources: set[str]) -> dict:
    import SimpleITK as sitk  # noqa: N813

    from .readers import read_image

    for sub in ("imagesTr", "labelsTr") + (("imagesTs", "labelsTs") if spec.test else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    subjects, splits, organs, shapes = {}, {}, {}, {}
    for split, names in (("train", spec.train), ("test", spec.test)):
        img_dir, lab_dir = ("imagesTr", "labelsTr") if split == "train" else ("imagesTs", "labelsTs")
        for case in names:
            sample = get_case(case)
            img_out = out / img_dir / f"{case}_0000.nii.gz"
            src = images[case]
            if src.is_file() and src.name.endswith(".nii.gz"):
                # Already NIfTI: copy the bytes, so the training image is exactly the shipped file.
                shutil.copyfile(src, img_out)
            else:
                sitk.WriteImage(read_image(src), str(img_out), True)
            shutil.copyfile(labels[case], out / lab_dir / f"{case}.nii.gz")
            lab = sitk.GetArrayFromImage(sitk.ReadImage(str(labels[case])))
            counts = np.bincount(lab.ravel(), minlength=len(synapse8.ORGANS) + 1)
            subjects[case] = sample.subject
            splits[case] = split
            organs[case] = [o for o, v in synapse8.VALUES.items() if counts[v] > 0]
            shapes[case] = {"size_ijk": list(sample.size_ijk or ()), "spacing_mm": list(sample.spacing_mm or ())}
    stamp = _stamp(spec)
    return {
        "name": spec.name,
        "description": spec.description,
        "channel_names": {"0": spec.modality},
        "labels": synapse8.nnunet_labels(),
        "numTraining": len(spec.train),
        "file_ending": ".nii.gz",
        "licence": "see provenance; data keep the terms of their source packages",
        "morse": {
            "build_version": stamp["build_version"],
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "subjects": subjects,
            "splits": splits,
            "organs_present": organs,
            "geometry": shapes,
            "sample_cases": {c: get_case(c).description for c in spec.train + spec.test},
            "provenance": {
                "labels": "TotalSegmentator predictions (silver standard, not manual), converted to Synapse-8 values "
                "with the ids of map_to_binary.py in the same sdist",
                "sources": {s: get_source(s).filename for s in sorted(sources)},
                "sources_sha256": stamp["sources"],
                "citation": "Wasserthal et al., TotalSegmentator, Radiology: AI 2023",
            },
        },
    }
