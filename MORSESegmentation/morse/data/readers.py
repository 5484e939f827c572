"""Dataset readers: nnU-Net v2 / MSD raw folders, the TransUNet Synapse layout, and plain image/label file lists.

Each ``read_*`` function returns a list of :class:`Case` (paths only, nothing is loaded); :func:`load_case` reads one
case into arrays. Conventions:

- Arrays are indexed ``[k, j, i]`` (KJI; numpy order of SimpleITK and of Slicer's ``arrayFromVolume``).
- ``ijk_to_ras`` is Slicer's 4×4 matrix from voxel index ``(i, j, k, 1)`` to RAS millimetres. SimpleITK stores LPS
  geometry, so ``ijk_to_ras = diag(-1, -1, 1, 1) @ ijk_to_lps``.
- Label maps are uint8 (0 = background) on exactly the image's grid; anything else is a :class:`DataError`.

Layouts understood:

nnU-Net v2 raw (and MSD / nnU-Net v1)::

    dataset.json       v2: channel_names, labels {name: value}, file_ending, numTraining
                       MSD/v1: modality, labels {"value": name}, training [{image, label}], test [paths]
    imagesTr/<case>_0000<ending> (one file per channel _0000, _0001, ...)   labelsTr/<case><ending>
    imagesTs/...  labelsTs/...   (optional)

TransUNet Synapse::

    train_npz/<case>_sliceNNN.npz        arrays "image" (H, W) float32, "label" (H, W)  — 2D training slices
    test_vol_h5/<case>.npy.h5            datasets "image" (D, H, W), "label" (D, H, W)  — 3D test volumes
    lists/[lists_Synapse/]train.txt, test_vol.txt   (optional) names without extension; they select and order

File list (CSV or text): one case per line, ``image,label`` (label may be empty); a CSV header with columns
``image``, ``label`` and optionally ``name``, ``subject``, ``split`` is recognised. Paths are relative to the list's
folder. Images may be NIfTI, NRRD, MHA/MHD or a DICOM series folder.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from ..geometry import ijk_to_ras_from_lps
from ..imageio import read_sitk_image

log = logging.getLogger(__name__)

IMAGE_ENDINGS = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
_GEOMETRY_ATOL_MM = 1e-3


@dataclass
class Case:
    """One case of a dataset: where its image and label are. Nothing is loaded.

    name:    case identifier (unique within a dataset).
    images:  one path per channel: an image file, a DICOM series folder, or the ``.npz``/``.h5`` of the Synapse layout.
    label:   label map path, or None (for ``synapse_npz``/``synapse_h5`` it is the same file as the image).
    subject: patient identifier; cases of one subject must never be split between training and test.
    split:   "train", "test", or None when the source does not say (then the case belongs to every split).
    format:  "image" (SimpleITK-readable), "synapse_npz" (2D slice) or "synapse_h5" (3D volume).
    """

    name: str
    images: tuple[Path, ...]
    label: Path | None = None
    subject: str = ""
    split: str | None = None
    format: str = "image"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.images = tuple(Path(p) for p in self.images)
        if self.label is not None:
            self.label = Path(self.label)
        if not self.subject:
            self.subject = self.name

    @property
    def image(self) -> Path:
        """The first (usually only) channel."""
        return self.images[0]


# --------------------------------------------------------------------------------------------------------------------
# SimpleITK helpers


def _sitk():
    import SimpleITK as sitk  # noqa: N813  (imported here: the package import must stay light inside Slicer)

    return sitk


def read_image(path: Path | str):
    """Read an image file or a DICOM series folder (returns ``SimpleITK.Image``, LPS geometry) with the checks and the
    DICOM policy of :func:`morse.imageio.read_image`: a folder with several series is refused, naming them (give the
    folder of the series to use). 2D images are read (:func:`load_case` stacks them into one-slice volumes). Any
    problem is a :class:`DataError`."""
    try:
        return read_sitk_image(path, allow_2d=True)
    except InputError as exc:
        raise DataError(str(exc)) from None


def ijk_to_ras_of(image) -> np.ndarray:
    """4×4 IJK→RAS matrix (float64) of a 3D ``SimpleITK.Image``."""
    return ijk_to_ras_from_lps(image.GetOrigin(), image.GetSpacing(), image.GetDirection())


def _as_3d(image):
    """A 2D image as a one-slice 3D image (unit slice spacing); 4D images are refused."""
    sitk = _sitk()
    dim = image.GetDimension()
    if dim == 3:
        return image
    if dim == 2:
        return sitk.JoinSeries([image])
    raise DataError(f"{dim}D image: only 2D and 3D images are supported (split multi-channel 4D files per channel)")


def same_grid(a, b, atol_mm: float = _GEOMETRY_ATOL_MM) -> bool:
    """True when two 3D SimpleITK images have the same size and (within ``atol_mm``) origin, spacing, direction."""
    if a.GetSize() != b.GetSize():
        return False
    return (
        np.allclose(a.GetSpacing(), b.GetSpacing(), atol=atol_mm)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=atol_mm)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)
    )


def _grid_text(img) -> str:
    return (
        f"size {img.GetSize()}, spacing {tuple(round(s, 4) for s in img.GetSpacing())}, origin "
        f"{tuple(round(o, 3) for o in img.GetOrigin())}, direction {tuple(round(d, 3) for d in img.GetDirection())}"
    )


def label_array(image, what: str) -> np.ndarray:
    """The voxels of a SimpleITK label image as uint8 KJI; non-integer or out-of-range values are a DataError."""
    sitk = _sitk()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(
            f"label {what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected a "
            "single-component label map (convert overlapping .seg.nrrd layers to one label map first)"
        )
    arr = sitk.GetArrayFromImage(image)
    return as_label_array(arr, what)


def as_label_array(arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` as uint8, checking that every value is an integer in 0..255."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating) and (
        not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr))
    ):
        raise DataError(f"label {what} has non-integer values; a label map must hold integer class values")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise DataError(f"label {what} has values in [{lo:g}, {hi:g}]; expected class values 0..255")
    return arr.astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------------
# loading


def load_case(case: Case) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Read a case: ``(image, label, ijk_to_ras)``.

    image:      float32, (K, J, I) for one channel, (C, K, J, I) for several.
    label:      uint8 (K, J, I) on the image's grid, or None.
    ijk_to_ras: (4, 4) float64. The Synapse ``.npz``/``.h5`` files carry no geometry: they get an axis-aligned
                matrix with 1 mm voxels (``diag(-1, -1, 1)``), so "mm" metrics on them are voxel metrics.
    """
    if case.format == "synapse_npz":
        return _load_synapse_npz(case)
    if case.format == "synapse_h5":
        return _load_synapse_h5(case)
    if case.format != "image":
        raise DataError(f"case {case.name}: unknown format {case.format!r}")
    sitk = _sitk()
    channels = [_as_3d(read_image(p)) for p in case.images]
    ref = channels[0]
    for p, img in zip(case.images[1:], channels[1:]):
        if not same_grid(ref, img):
            raise DataError(
                f"case {case.name}: channel {p.name} is not on the grid of {case.images[0].name} "
                f"({_grid_text(img)} vs {_grid_text(ref)}); resample the channels onto one grid"
            )
    arrays = []
    for p, img in zip(case.images, channels):
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise DataError(
                f"case {case.name}: image {p.name} has {img.GetNumberOfComponentsPerPixel()} components "
                "per voxel (RGB/vector); MORSE expects scalar CT/MR images"
            )
        arrays.append(sitk.GetArrayFromImage(img).astype(np.float32, copy=False))
    image = arrays[0] if len(arrays) == 1 else np.stack(arrays)
    label = None
    if case.label is not None:
        lab_img = _as_3d(read_image(case.label))
        if not same_grid(ref, lab_img):
            raise DataError(
                f"case {case.name}: label {case.label.name} is not on the image grid:\n  label {_grid_text(lab_img)}"
                f"\n  image {_grid_text(ref)}\nResample the label onto the image (nearest neighbour, by physical "
                "space) before using it."
            )
        label = label_array(lab_img, f"{case.label.name} (case {case.name})")
    return image, label, ijk_to_ras_of(ref)


_SYNAPSE_MATRIX = np.diag([-1.0, -1.0, 1.0, 1.0])


def _load_synapse_npz(case: Case):
    try:
        with np.load(case.image, allow_pickle=False) as data:
            if "image" not in data or "label" not in data:
                raise DataError(
                    f"{case.image} lacks the 'image'/'label' arrays of the TransUNet npz layout "
                    f"(has {sorted(data.files)})"
                )
            image = np.asarray(data["image"], dtype=np.float32)
            label = np.asarray(data["label"])
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {case.image}: {exc}") from exc
    if image.ndim != 2 or image.shape != label.shape:
        raise DataError(
            f"{case.image}: expected 2D 'image' and 'label' of one shape, got {image.shape} and {label.shape}"
        )
    return image[None], as_label_array(label, str(case.image))[None], _SYNAPSE_MATRIX.copy()


def _load_synapse_h5(case: Case):
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading the Synapse test volumes (.npy.h5) needs h5py: pip install h5py") from exc
    try:
        with h5py.File(case.image, "r") as f:
            if "image" not in f or "label" not in f:
                raise DataError(
                    f"{case.image} lacks the 'image'/'label' datasets of the TransUNet h5 layout "
                    f"(has {sorted(f.keys())})"
                )
            image = np.asarray(f["image"][()], dtype=np.float32)
            label = np.asarray(f["label"][()])
    except OSError as exc:
        raise DataError(f"cannot read {case.image}: {exc}") from exc
    if image.ndim != 3 or image.shape != label.shape:
        raise DataError(
            f"{case.image}: expected 3D 'image' and 'label' of one shape, got {image.shape} and {label.shape}"
        )
    return image, as_label_array(label, str(case.image)), _SYNAPSE_MATRIX.copy()


# --------------------------------------------------------------------------------------------------------------------
# nnU-Net / MSD


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def dataset_labels(folder: Path | str) -> dict[str, int] | None:
    """Label name → value from a ``dataset.json`` (v2 ``{name: value}`` or MSD/v1 ``{"value": name}``), else None.

    Region-based nnU-Net labels (lists of values) are skipped; background is included.
    """
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        return None
    labels = _read_json(path).get("labels")
    if not isinstance(labels, dict):
        return None
    out: dict[str, int] = {}
    for k, v in labels.items():
        if isinstance(v, int) and not isinstance(v, bool):
            out[str(k)] = int(v)
        elif isinstance(v, str) and str(k).lstrip("-").isdigit():
            out[v] = int(k)
    return out


def _strip_ending(name: str, ending: str) -> str | None:
    return name[: -len(ending)] if name.endswith(ending) else None


def read_nnunet(folder: Path | str) -> list[Case]:
    """Cases of an nnU-Net v2 raw dataset folder, or of an MSD / nnU-Net v1 folder with a ``training`` list.

    Training cases (imagesTr) must have a label in labelsTr; test cases (imagesTs) have one if labelsTs holds it.
    Subjects come from ``dataset.json["morse"]["subjects"]`` when present, else each case is its own subject.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"dataset folder {folder} does not exist")
    meta = _read_json(folder / "dataset.json") if (folder / "dataset.json").is_file() else None
    if meta is None:
        raise DataError(
            f"{folder} has no dataset.json; an nnU-Net/MSD raw folder needs one (channel_names, labels, file_ending)"
        )
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "image"}
    n_channels = len(channels)
    ending = meta.get("file_ending", ".nii.gz")
    subjects = ((meta.get("morse") or {}).get("subjects")) or {}

    if "training" in meta and isinstance(meta["training"], list) and "file_ending" not in meta:
        cases = _read_msd_lists(folder, meta, n_channels)
    else:
        cases = _scan_split(folder, "imagesTr", "labelsTr", ending, n_channels, "train", label_required=True)
        cases += _scan_split(folder, "imagesTs", "labelsTs", ending, n_channels, "test", label_required=False)
    if not cases:
        raise DataError(f"{folder}: no cases found (expected imagesTr/<case>_0000{ending})")
    for c in cases:
        c.subject = str(subjects.get(c.name, c.name))
    names = [c.name for c in cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{folder}: case names occur in both imagesTr and imagesTs: {dup}")
    n_train = sum(c.split == "train" for c in cases)
    declared = meta.get("numTraining")
    if isinstance(declared, int) and declared != n_train:
        log.warning("%s: dataset.json says numTraining=%d but imagesTr holds %d cases", folder, declared, n_train)
    return cases


def _scan_split(
    folder: Path, images: str, labels: str, ending: str, n_channels: int, split: str, label_required: bool
) -> list[Case]:
    img_dir, lab_dir = folder / images, folder / labels
    if not img_dir.is_dir():
        if split == "train":
            raise DataError(f"{folder} has no {images}/ folder")
        return []
    suffix = f"_0000{ending}"
    cases = []
    for first in sorted(img_dir.iterdir()):
        case_id = _strip_ending(first.name, suffix)
        if case_id is None:
            continue
        paths = [img_dir / f"{case_id}_{c:04d}{ending}" for c in range(n_channels)]
        missing = [p.name for p in paths if not p.exists()]
        if missing:
            raise DataError(
                f"case {case_id} in {img_dir}: missing channel file(s) {missing} "
                f"(dataset.json declares {n_channels} channel(s))"
            )
        label = lab_dir / f"{case_id}{ending}"
        if not label.exists():
            if label_required:
                raise DataError(f"training case {case_id} has no label {labels}/{label.name}")
            label = None
        cases.append(Case(case_id, tuple(paths), label, split=split))
    return cases


def _read_msd_lists(folder: Path, meta: dict, n_channels: int) -> list[Case]:
    """MSD/v1 ``training``/``test`` lists. Listed paths may name the un-suffixed file (MSD) or the _0000 files (v1)."""

    def resolve_images(rel: str) -> tuple[Path, ...]:
        p = (folder / rel).resolve()
        if p.exists():
            return (p,)
        for end in (".nii.gz", ".nii", ".nrrd", ".mha"):
            stem = _strip_ending(p.name, end)
            if stem is not None:
                chans = tuple(p.with_name(f"{stem}_{c:04d}{end}") for c in range(n_channels))
                if all(c.exists() for c in chans):
                    return chans
        raise DataError(f"{folder}: dataset.json lists {rel}, which does not exist")

    def case_name(p: Path) -> str:
        name = _strip_known_ending(p.name)
        return re.sub(r"_\d{4}$", "", name)

    cases = []
    for entry in meta.get("training", []):
        if not isinstance(entry, dict) or "image" not in entry:
            raise DataError(f"{folder}/dataset.json: 'training' entries must be {{'image': ..., 'label': ...}}")
        imgs = resolve_images(entry["image"])
        label = (folder / entry["label"]).resolve() if entry.get("label") else None
        if label is not None and not label.exists():
            raise DataError(f"{folder}: dataset.json lists label {entry['label']}, which does not exist")
        cases.append(Case(case_name(imgs[0]), imgs, label, split="train"))
    for entry in meta.get("test", []):
        rel = entry["image"] if isinstance(entry, dict) else entry
        imgs = resolve_images(rel)
        name = case_name(imgs[0])
        label = None
        for end in (".nii.gz", ".nii", ".nrrd", ".mha"):
            cand = folder / "labelsTs" / f"{name}{end}"
            if cand.exists():
                label = cand
                break
        cases.append(Case(name, imgs, label, split="test"))
    return cases


def _strip_known_ending(name: str) -> str:
    for end in (*IMAGE_ENDINGS, ".npy.h5", ".h5", ".npz"):
        stem = _strip_ending(name, end)
        if stem is not None:
            return stem
    return name


# --------------------------------------------------------------------------------------------------------------------
# TransUNet Synapse


def _find_list(folder: Path, filename: str) -> Path | None:
    for cand in (
        folder / "lists" / "lists_Synapse" / filename,
        folder / "lists" / filename,
        folder / "lists_Synapse" / filename,
    ):
        if cand.is_file():
            return cand
    found = sorted(folder.glob(f"lists*/**/{filename}"))
    return found[0] if found else None


def _read_name_list(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def read_synapse(folder: Path | str) -> list[Case]:
    """Cases of a TransUNet-style Synapse folder: 2D training slices (npz) and 3D test volumes (h5).

    Each ``.npz`` slice is a case (split "train", subject = the volume name before ``_slice``); each ``.npy.h5`` is a
    case (split "test"). When ``lists/.../train.txt`` or ``test_vol.txt`` exist they select and order the cases, and a
    listed name without its file is an error. h5py is needed only to *load* the volumes.
    """
    folder = Path(folder)
    train_dir, test_dir = folder / "train_npz", folder / "test_vol_h5"
    if not train_dir.is_dir() and not test_dir.is_dir():
        raise DataError(f"{folder} is not a TransUNet Synapse folder: it has neither train_npz/ nor test_vol_h5/")
    cases: list[Case] = []
    if train_dir.is_dir():
        files = {p.name[: -len(".npz")]: p for p in train_dir.glob("*.npz")}
        names = _listed_or_all(folder, "train.txt", files, train_dir)
        for n in names:
            subject = n.split("_slice")[0]
            cases.append(Case(n, (files[n],), files[n], subject=subject, split="train", format="synapse_npz"))
    if test_dir.is_dir():
        files = {}
        for p in test_dir.iterdir():
            if p.name.endswith(".npy.h5"):
                files[p.name[: -len(".npy.h5")]] = p
            elif p.name.endswith(".h5"):
                files[p.name[: -len(".h5")]] = p
        names = _listed_or_all(folder, "test_vol.txt", files, test_dir)
        for n in names:
            cases.append(Case(n, (files[n],), files[n], subject=n, split="test", format="synapse_h5"))
    if not cases:
        raise DataError(f"{folder}: train_npz/ and test_vol_h5/ hold no .npz / .npy.h5 files")
    return cases


def _listed_or_all(folder: Path, list_name: str, files: dict[str, Path], where: Path) -> list[str]:
    list_path = _find_list(folder, list_name)
    if list_path is None:
        return sorted(files)
    names = _read_name_list(list_path)
    missing = [n for n in names if n not in files]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{list_path} lists {len(missing)} case(s) with no file in {where}: {shown}")
    return names


# --------------------------------------------------------------------------------------------------------------------
# file lists


def read_filelist(path: Path | str) -> list[Case]:
    """Cases from a CSV or text file of ``image,label`` lines (see the module docstring).

    Lines starting with ``#`` and blank lines are skipped; text files may separate the two paths by whitespace.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file list {path} does not exist")
    base = path.parent
    text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet CSVs start with a BOM
    rows: list[dict[str, str]] = []
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"file list {path} is empty")
    first = [c.strip().lower() for c in next(csv.reader([lines[0][1]]))]
    if "image" in first:
        reader = csv.DictReader([ln for _, ln in lines])
        for (lineno, _), row in zip(lines[1:], reader):
            rows.append(
                {"_line": str(lineno), **{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}}
            )
    else:
        for lineno, ln in lines:
            parts = [p.strip() for p in next(csv.reader([ln]))] if "," in ln else ln.split()
            if len(parts) > 2 or not parts[0]:
                raise DataError(f"{path}:{lineno}: expected 'image,label' (or 'image label'), got {ln!r}")
            rows.append({"_line": str(lineno), "image": parts[0], "label": parts[1] if len(parts) > 1 else ""})

    cases = []
    for row in rows:
        where = f"{path}:{row['_line']}"
        image = (base / row["image"]).expanduser()
        if not image.exists():
            raise DataError(f"{where}: image {image} does not exist")
        label = (base / row["label"]).expanduser() if row.get("label") else None
        if label is not None and not label.exists():
            raise DataError(f"{where}: label {label} does not exist")
        split = row.get("split") or None
        if split not in (None, "train", "test"):
            raise DataError(f"{where}: split must be 'train' or 'test', got {split!r}")
        name = row.get("name") or _strip_known_ending(image.name)
        cases.append(
            Case(
                name,
                (image,),
                label,
                subject=row.get("subject", ""),
                split=split,
                meta={"parent": image.parent.name, "explicit_name": bool(row.get("name"))},
            )
        )
    _make_names_unique(cases, path)
    return cases


def _make_names_unique(cases: list[Case], where: Path) -> None:
    """Names derived from file names can collide (``a/image.nii.gz``, ``b/image.nii.gz``): prefix the parent folder."""
    counts: dict[str, int] = {}
    for c in cases:
        counts[c.name] = counts.get(c.name, 0) + 1
    for c in cases:
        if counts[c.name] > 1 and not c.meta.get("explicit_name"):
            renamed = f"{c.meta['parent']}_{c.name}"
            if c.subject == c.name:
                c.subject = renamed
            c.name = renamed
    names = [c.name for c in cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{where}: duplicate case names {dup}; add a 'name' column to tell them apart")


# --------------------------------------------------------------------------------------------------------------------
# any dataset


def dataset_format(path: Path | str) -> str:
    """ "nnunet", "synapse" or "filelist" for an existing path; DataError otherwise."""
    path = Path(path)
    if path.is_file():
        return "filelist"
    if not path.is_dir():
        raise DataError(f"dataset {path} does not exist (give a folder, a file list, or registry:<name>)")
    if (path / "dataset.json").is_file():
        return "nnunet"
    if (path / "train_npz").is_dir() or (path / "test_vol_h5").is_dir():
        return "synapse"
    if (path / "imagesTr").is_dir():
        raise DataError(f"{path} has imagesTr/ but no dataset.json; add one (channel_names, labels, file_ending)")
    raise DataError(f"{path}: not a dataset folder (expected dataset.json + imagesTr/, or train_npz/ / test_vol_h5/)")


def read_dataset(path: Path | str) -> list[Case]:
    """Cases of a dataset folder (nnU-Net/MSD or Synapse layout) or a file list. A ``registry:<name>`` dataset is
    resolved one layer up, by :func:`morse.data.datasets.read_dataset`."""
    path = Path(path)
    kind = dataset_format(path)
    return {"nnunet": read_nnunet, "synapse": read_synapse, "filelist": read_filelist}[kind](path)


def select_split(cases: Iterable[Case], split: str) -> list[Case]:
    """Cases of ``split``: "train", "test", "all", or a comma-separated list of case names.

    Cases whose source gives no split (file lists without a split column) belong to every split.
    """
    cases = list(cases)
    if split == "all":
        return cases
    if split in ("train", "test"):
        return [c for c in cases if c.split in (split, None)]
    wanted = [s.strip() for s in split.split(",") if s.strip()]
    by_name = {c.name: c for c in cases}
    missing = [w for w in wanted if w not in by_name]
    if missing:
        shown = ", ".join(sorted(by_name)[:10]) + (" ..." if len(by_name) > 10 else "")
        raise DataError(f"no case named {', '.join(missing)}; use train, test, all, or one of: {shown}")
    return [by_name[w] for w in wanted]
