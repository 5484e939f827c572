"""Named sample cases from the registry data, and their reference label maps in Synapse-8 values.

The cases (see ``docs/data-sources.md`` §2.1; sizes are SimpleITK (i, j, k) sizes, numpy arrays are (k, j, i)):

=====================  =======  ========  ===================================================================
name                   subject  modality  image
=====================  =======  ========  ===================================================================
abdomen-ct-dicom       C        CT        DICOM series 512×512×20, 0.977×0.977×2 mm (held-out demo/test case)
abdomen-ct             A        CT        example_ct.nii.gz 122×101×112, 3 mm
abdomen-ct-small       A        CT        example_ct_sm.nii.gz 122×101×30, 3 mm (= abdomen-ct slices 82..111)
abdomen-mr-small       B        MR        example_mr_sm.nii.gz 117×91×20, 3 mm
cta-chest-abdomen      D        CT        aorta_report/example_ct.nii.gz 233×167×191, 1.5 mm (no Synapse-8 label)
chest-ct               slicerio CT        CTChest4.nrrd 128×128×34 (7-segment Slicer segmentation, not Synapse-8)
lung-ct                lung1    CT        pyradiomics lung1_image.nrrd (binary nodule mask, not Synapse-8)
=====================  =======  ========  ===================================================================

abdomen-ct and abdomen-ct-small are the **same patient**: never train on one and test on the other.

Reference labels are TotalSegmentator model outputs (silver standard). :func:`case_label_path` converts them to
Synapse-8 values (1 aorta, 2 gallbladder, 3 kidney_left, 4 kidney_right, 5 liver, 6 pancreas, 7 spleen, 8 stomach),
with the TotalSegmentator ids read from ``map_to_binary.py`` of the same sdist (parsed, never executed), and writes
them on the image's own grid into ``data_root()/generated/synapse8/`` (the user cache if that is read-only). The
DICOM case's label file is stored with a flipped j axis relative to the DICOM read (same physical grid), so it is
resampled by physical space (nearest neighbour) onto the SimpleITK read of the series.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileutils import write_atomic, write_text_atomic
from . import synapse8
from .fetch import data_root, fetch_source, get_source, is_fetched, writable_dir

_TS = "totalsegmentator-2.18.0/tests/reference_files"
_TS_MAP = "totalsegmentator-2.18.0/totalsegmentator/map_to_binary.py"
_LABEL_VERSION = 1
"""Bump when the label generation changes, so that cached labels are regenerated."""


@dataclass(frozen=True)
class SampleCase:
    """A named sample case. Paths are relative to :func:`data_root`.

    image:        image file or DICOM series folder.
    label_source: the label map as shipped (TotalSegmentator ids, Slicer segments, lesion mask), or None.
    label_scheme: how ``label_source`` is coded: "total" / "total_mr" (TotalSegmentator tasks), "slicer-seg",
                  "binary", or None.
    organs:       Synapse-8 organs present in the reference label; empty when the case has no Synapse-8 reference.
    resample_label: the shipped label must be resampled onto the image grid (by physical space, nearest neighbour).
    size_ijk / spacing_mm: documented geometry (SimpleITK order i, j, k).
    """

    name: str
    description: str
    modality: str
    source: str
    image: str
    subject: str
    label_source: str | None = None
    label_scheme: str | None = None
    organs: tuple[str, ...] = ()
    resample_label: bool = False
    size_ijk: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None

    @property
    def has_synapse8(self) -> bool:
        """True when :func:`case_label_path` gives a Synapse-8 reference for this case."""
        return bool(self.organs)


_C_ORGANS = ("aorta", "liver", "pancreas", "spleen", "stomach")

SAMPLE_CASES: dict[str, SampleCase] = {
    c.name: c
    for c in (
        SampleCase(
            name="abdomen-ct-dicom",
            description="Upper-abdomen CT, 20-slice DICOM series (Siemens); held-out demo/test case. Reference: "
            "TotalSegmentator output; liver, spleen, stomach, pancreas, aorta (no kidneys or gallbladder in the field "
            "of view)",
            modality="CT",
            source="totalsegmentator",
            image=f"{_TS}/example_ct_dicom",
            subject="C",
            label_source=f"{_TS}/example_seg_dicom.nii.gz",
            label_scheme="total",
            organs=_C_ORGANS,
            resample_label=True,
            size_ijk=(512, 512, 20),
            spacing_mm=(0.9765625, 0.9765625, 2.0),
        ),
        SampleCase(
            name="abdomen-ct",
            description="Abdomen + pelvis CT at 3 mm; reference: TotalSegmentator --fast output (all 8 Synapse organs)",
            modality="CT",
            source="totalsegmentator",
            image=f"{_TS}/example_ct.nii.gz",
            subject="A",
            label_source=f"{_TS}/example_seg_fast_force_split.nii.gz",
            label_scheme="total",
            organs=synapse8.ORGANS,
            size_ijk=(122, 101, 112),
            spacing_mm=(3.0, 3.0, 3.0),
        ),
        SampleCase(
            name="abdomen-ct-small",
            description="Crop of abdomen-ct (slices 82..111, same patient); reference: TotalSegmentator full-model "
            "output",
            modality="CT",
            source="totalsegmentator",
            image=f"{_TS}/example_ct_sm.nii.gz",
            subject="A",
            label_source=f"{_TS}/example_seg.nii.gz",
            label_scheme="total",
            organs=synapse8.ORGANS,
            size_ijk=(122, 101, 30),
            spacing_mm=(3.0, 3.0, 3.0),
        ),
        SampleCase(
            name="abdomen-mr-small",
            description="Abdominal MR at 3 mm (sequence undocumented); reference: TotalSegmentator total_mr output",
            modality="MR",
            source="totalsegmentator",
            image=f"{_TS}/example_mr_sm.nii.gz",
            subject="B",
            label_source=f"{_TS}/example_seg_mr.nii.gz",
            label_scheme="total_mr",
            organs=synapse8.ORGANS,
            size_ijk=(117, 91, 20),
            spacing_mm=(3.0, 3.0, 3.0),
        ),
        SampleCase(
            name="cta-chest-abdomen",
            description="Chest-abdomen CT angiography at 1.5 mm (speed tests); no Synapse-8 reference",
            modality="CT",
            source="totalsegmentator",
            image=f"{_TS}/aorta_report/example_ct.nii.gz",
            subject="D",
            size_ijk=(233, 167, 191),
            spacing_mm=(1.5, 1.5, 1.5),
        ),
        SampleCase(
            name="chest-ct",
            description="Low-resolution chest CT from slicerio, with a 7-segment Slicer segmentation (ribs, spine, "
            "lungs, tissue)",
            modality="CT",
            source="slicerio",
            image="slicerio-1.4.0/slicerio/data/CTChest4.nrrd",
            subject="slicerio-CTChest4",
            label_source="slicerio-1.4.0/slicerio/data/Segmentation.seg.nrrd",
            label_scheme="slicer-seg",
        ),
        SampleCase(
            name="lung-ct",
            description="Chest CT from pyradiomics with a binary lung-nodule mask",
            modality="CT",
            source="pyradiomics",
            image="pyradiomics-3.1.0/data/lung1_image.nrrd",
            subject="pyradiomics-lung1",
            label_source="pyradiomics-3.1.0/data/lung1_label.nrrd",
            label_scheme="binary",
        ),
    )
}


def list_cases() -> list[SampleCase]:
    """Every named sample case, in a stable order (the demo/test case first)."""
    return list(SAMPLE_CASES.values())


def get_case(name: str) -> SampleCase:
    """The :class:`SampleCase` called ``name``; an unknown name is a DataError listing the known ones."""
    try:
        return SAMPLE_CASES[name]
    except KeyError:
        raise DataError(f"unknown sample case {name!r}; known cases: {', '.join(SAMPLE_CASES)}") from None


def _ensure_source(source_name: str, fetch: bool) -> Path:
    root = data_root()
    source = get_source(source_name)
    if is_fetched(source, root):
        return root
    if not fetch:
        raise DataError(
            f"sample data {source_name!r} is not in {root}; run 'morse fetch-data {source_name}' (or "
            "set MORSE_DATA to a folder that holds it)"
        )
    fetch_source(source, root=root)
    return root


def case_path(name: str, fetch: bool = True) -> Path:
    """Path of the image of sample case ``name`` (a file, or a DICOM series folder for ``abdomen-ct-dicom``).

    ``fetch=True`` downloads the registry source on first use; with ``fetch=False`` a missing source is a DataError.
    """
    case = get_case(name)
    path = _ensure_source(case.source, fetch) / case.image
    if not path.exists():
        folder = data_root() / get_source(case.source).target
        raise DataError(
            f"sample case {name}: {path} is missing although its source is marked fetched; delete "
            f"{folder} and run 'morse fetch-data {case.source}' again"
        )
    return path


def case_label_path(name: str, fetch: bool = True) -> Path | None:
    """Reference label map of ``name`` in Synapse-8 values (uint8 NIfTI on the image's grid), or None.

    None for cases without a Synapse-8 reference (``cta-chest-abdomen``, ``chest-ct``, ``lung-ct``). Generated into
    the cache on the first call (about 1 s for the DICOM case), then returned as is.
    """
    case = get_case(name)
    if not case.has_synapse8:
        return None
    root = _ensure_source(case.source, fetch)
    source = get_source(case.source)
    out = writable_dir("generated/synapse8") / f"{name}.nii.gz"
    info_path = out.with_name(f"{name}.json")
    stamp = {"case": name, "version": _LABEL_VERSION, "source_sha256": source.sha256}
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if out.is_file() and all(info.get(k) == v for k, v in stamp.items()):
            return out
    except (OSError, ValueError):
        pass
    counts = _generate_label(case, root, out)
    write_text_atomic(info_path, json.dumps({**stamp, "voxels": counts}, indent=2) + "\n")
    return out


@lru_cache(maxsize=8)
def _class_map_cached(path: str, mtime: float) -> dict[str, dict[int, str]]:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "class_map" for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError as exc:
                raise DataError(f"{path}: class_map is not a plain literal any more: {exc}") from exc
    raise DataError(f"{path} defines no class_map")


def totalsegmentator_ids(task: str, fetch: bool = True) -> dict[str, int]:
    """Synapse-8 organ name → TotalSegmentator label id for ``task`` ("total" or "total_mr").

    Read from ``totalsegmentator/map_to_binary.py`` of the pinned sdist (parsed with :mod:`ast`; no code runs), so
    the ids are those the reference label maps were written with: "total" gives spleen 1, kidney_right 2,
    kidney_left 3, gallbladder 4, liver 5, stomach 6, pancreas 7, aorta 52; "total_mr" the same with aorta 23.
    """
    root = _ensure_source("totalsegmentator", fetch)
    path = root / _TS_MAP
    class_map = _class_map_cached(str(path), path.stat().st_mtime)
    if task not in class_map:
        raise DataError(f"TotalSegmentator task {task!r} not in {path}")
    by_name = {v: int(k) for k, v in class_map[task].items()}
    missing = [o for o in synapse8.ORGANS if o not in by_name]
    if missing:
        raise DataError(f"TotalSegmentator task {task!r} has no class named {missing}")
    return {o: by_name[o] for o in synapse8.ORGANS}


def _generate_label(case: SampleCase, root: Path, out: Path) -> dict[str, int]:
    """Write the Synapse-8 label of ``case`` to ``out``; return voxels per organ."""
    import SimpleITK as sitk  # noqa: N813

    from .readers import _grid_text, read_image, same_grid

    ids = totalsegmentator_ids(case.label_scheme or "total", fetch=False)
    src = sitk.ReadImage(str(root / case.label_source))
    image_path = root / case.image
    if case.resample_label:
        ref = read_image(image_path)
        src = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, src.GetPixelID())
    else:
        ref = sitk.ImageFileReader()
        ref.SetFileName(str(image_path))
        ref.ReadImageInformation()
    if not same_grid(ref, src):
        raise DataError(
            f"{case.name}: label {case.label_source} is not on the image grid ({_grid_text(src)} vs {_grid_text(ref)})"
        )
    mapped = synapse8.to_synapse8(sitk.GetArrayFromImage(src), ids)
    lab = sitk.GetImageFromArray(mapped)
    # The image's own header values, so that the two grids are identical, not merely within tolerance.
    lab.SetOrigin(ref.GetOrigin())
    lab.SetSpacing(ref.GetSpacing())
    lab.SetDirection(ref.GetDirection())
    write_atomic(out, lambda tmp: sitk.WriteImage(lab, str(tmp), True))
    counts = np.bincount(mapped.ravel(), minlength=len(synapse8.ORGANS) + 1)
    return {o: int(counts[v]) for o, v in synapse8.VALUES.items()}
