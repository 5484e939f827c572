"""Reading and writing images with their geometry (SimpleITK): NIfTI, NRRD, MHA and DICOM series folders.

Arrays are KJI; geometry is an IJK→RAS matrix (see :mod:`morse.geometry`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .geometry import ijk_to_ras_from_lps, lps_geometry

SUPPORTED_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


@dataclass
class LoadedImage:
    """A read image: array (K, J, I) in the file's own type, its IJK→RAS matrix, and where it came from."""

    array: np.ndarray
    ijk_to_ras: np.ndarray
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def case_name(self) -> str:
        return case_name(self.path)


def case_name(path: str | Path) -> str:
    """Output folder name of an input: file name without image suffixes (``ct.nii.gz`` → ``ct``)."""
    name = Path(path).name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def _read_sitk(path: Path):
    import SimpleITK as sitk  # noqa: N813

    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise InputError(f"{path}: a folder with no DICOM series in it; give an image file or a DICOM folder")
        if len(series) > 1:
            raise InputError(
                f"{path}: holds {len(series)} DICOM series; put each series in its own folder and segment one at a time"
            )
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file or DICOM series folder; raises :class:`InputError` with what to do on failure."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable (check the file permissions)")
    try:
        image = _read_sitk(path)
    except InputError:
        raise
    except Exception as exc:  # SimpleITK raises RuntimeError with ITK's text for every I/O problem
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "ERROR" in line or "error" in line), first[0] if first else "")
        raise InputError(
            f"{path}: could not be read as an image ({detail.strip()[:300]}). "
            f"Supported: NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha/.mhd) and DICOM series folders."
        ) from None
    return from_sitk(image, path)


def from_sitk(image, path: str | Path = "") -> LoadedImage:
    """A SimpleITK image as :class:`LoadedImage` (array KJI, IJK→RAS)."""
    import SimpleITK as sitk  # noqa: N813

    if image.GetDimension() != 3:
        raise InputError(
            f"{path}: a {image.GetDimension()}D image; MORSE segments 3D volumes "
            f"(a single 2D slice can be saved as a one-slice 3D volume)"
        )
    array = sitk.GetArrayFromImage(image)  # (K, J, I[, components])
    metadata = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()} if hasattr(image, "GetMetaDataKeys") else {}
    m = ijk_to_ras_from_lps(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    return LoadedImage(array=array, ijk_to_ras=m, path=Path(path), metadata=metadata)


def to_sitk(array: np.ndarray, ijk_to_ras: np.ndarray, is_vector: bool = False):
    """SimpleITK image from a KJI array (or (N, K, J, I) with ``is_vector``: N components) and IJK→RAS."""
    import SimpleITK as sitk  # noqa: N813

    if is_vector:
        image = sitk.GetImageFromArray(np.moveaxis(array, 0, -1), isVector=True)
    else:
        image = sitk.GetImageFromArray(array)
    origin, spacing, direction = lps_geometry(ijk_to_ras)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def write_image(
    path: str | Path,
    array: np.ndarray,
    ijk_to_ras: np.ndarray,
    is_vector: bool = False,
    metadata: dict[str, str] | None = None,
    compress: bool = True,
) -> Path:
    """Write a KJI array with its geometry; the format follows the suffix (``.nii.gz``, ``.nrrd``, ...)."""
    import SimpleITK as sitk  # noqa: N813

    image = to_sitk(array, ijk_to_ras, is_vector=is_vector)
    for key, value in (metadata or {}).items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return Path(path)
