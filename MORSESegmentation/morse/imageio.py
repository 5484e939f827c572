"""Reading and writing images with their geometry (SimpleITK): NIfTI, NRRD, MHA and DICOM series folders.

Arrays are KJI; geometry is an IJK→RAS matrix (see :mod:`morse.geometry`).

This is the one image reader of MORSE: inference (:func:`read_image`) and the dataset readers
(:func:`read_sitk_image`, through :mod:`morse.data.readers`) apply the same checks, so training data passes exactly
the checks that ``morse segment`` applies. DICOM: a folder must hold one series, with evenly spaced slices; a folder
with several series is refused with their identifiers and file counts (the series to use is chosen by giving a
folder that holds only it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .fileutils import available_memory, size_text
from .geometry import ijk_to_ras_from_lps, lps_geometry
from .image_integrity import check_image_file, refuse_blocking_data

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
    if name in ("", ".", ".."):  # "." or "..": the folder's own name, never a name that means the -o folder itself
        name = Path(os.path.abspath(path)).name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)] or name
            break
    if name in ("", ".", "..") or name.startswith("."):
        raise InputError(
            f"{path}: cannot name an output folder after this input (got {name!r}); rename it or give its full path"
        )
    return name


def _read_sitk(path: Path, allow_2d: bool = False):
    import SimpleITK as sitk  # noqa: N813

    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        shown = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK would print "No Series were found" to the console
        try:
            series = reader.GetGDCMSeriesIDs(str(path))
        finally:
            sitk.ProcessObject.SetGlobalWarningDisplay(shown)
        if not series:
            raise InputError(f"{path}: a folder with no DICOM series in it; give an image file or a DICOM folder")
        if len(series) > 1:
            counts = ", ".join(f"{s} ({len(reader.GetGDCMSeriesFileNames(str(path), s))} files)" for s in series)
            raise InputError(
                f"{path}: holds {len(series)} DICOM series; put each series in its own folder and give that folder "
                f"(series instance UIDs: {counts})"
            )
        files = reader.GetGDCMSeriesFileNames(str(path), series[0])
        _check_dicom_slices(path, files)
        reader.SetFileNames(files)
        return reader.Execute()
    refuse_blocking_data(path)
    try:
        _check_header(path, allow_2d)
    except RuntimeError:  # ITK could not read the header: a damaged stream, if it is one, says more than ITK
        check_image_file(path)
        raise
    check_image_file(path)  # after the header checks: their messages are the more specific ones
    return sitk.ReadImage(str(path))


# Largest expansion a gzip stream can achieve (deflate's limit is about 1032:1): a compressed file whose header
# declares more voxel bytes than this times its size cannot hold them.
_GZIP_MAX_RATIO = 1100


def _check_header(path: Path, allow_2d: bool = False) -> None:
    """Refuse, from the header alone and before any voxel memory is allocated, what cannot be a volume: other than 3
    dimensions (or 4 with one time point), complex voxels, and declared sizes that the file cannot hold or this
    computer cannot store. (Several components per voxel are read; :func:`morse.inference.validation.validate_volume`
    refuses them as input.) ``allow_2d``: a 2D image passes (dataset readers stack it into a one-slice volume)."""
    import SimpleITK as sitk  # noqa: N813

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = tuple(int(s) for s in reader.GetSize())
    dims = len(size)
    shown = "×".join(map(str, size))
    if dims == 2 and not allow_2d:
        raise InputError(
            f"{path}: a 2D image ({shown} pixels); MORSE segments volumes (NIfTI, NRRD, MHA, DICOM series). "
            f"Save the slice as a one-slice 3D volume: 2D models segment single slices."
        )
    if dims == 4 and size[3] > 1:
        raise InputError(
            f"{path}: a 4D image ({shown}: {size[3]} volumes of {'×'.join(map(str, size[:3]))}, e.g. a time series "
            f"or several echoes). MORSE segments one 3D volume: extract one first (in 3D Slicer: load it as a "
            f"sequence and save the frame you want; in Python: SimpleITK.Extract)."
        )
    if dims not in (2, 3, 4):
        raise InputError(f"{path}: a {dims}D image ({shown}); MORSE segments 3D volumes")
    components = int(reader.GetNumberOfComponents())
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if "complex" in pixel:
        raise InputError(f"{path}: complex-valued voxels ({pixel}); MORSE segments real images: save the magnitude")
    if min(size) < 1:
        raise InputError(f"{path}: the header declares an empty image ({shown} voxels)")
    declared = float(np.prod(size, dtype=np.float64)) * _pixel_bytes(pixel) * max(1, components)
    # ITK reports a scaled NIfTI (scl_slope ≠ 1) as float voxels, but the file stores its own type: 8-bit voxels
    # with a slope hold a quarter of what the float size says.
    stored = _nifti_stored_bytes(path, size, components)
    stored = declared if stored is None else stored
    on_disk = path.stat().st_size
    holds = _capacity(path, on_disk)
    if holds is not None and stored > holds:
        raise InputError(
            f"{path}: the header declares {shown} voxels ({size_text(stored)}) but the file ({on_disk} bytes) "
            f"cannot hold them: it is truncated or its header is corrupt. Re-export or re-download it."
        )
    available = available_memory()
    if declared > available:
        raise InputError(
            f"{path}: the header declares {shown} voxels ({size_text(declared)} as stored), more than the "
            f"{size_text(available)} of memory available. Crop or down-sample the volume first (or check the header: "
            f"it may be corrupt)."
        )


# NIfTI datatypes whose bitpix covers every component of a voxel (RGB24, RGBA32)
_NIFTI_PACKED_COLOUR = (128, 2304)


def _nifti_stored_bytes(path: Path, size: tuple[int, ...], components: int) -> float | None:
    """Voxel bytes a NIfTI-1/-2 file stores for ``size`` (ITK order), from its header's datatype and bitpix; None
    for other formats or a header that cannot be read (ITK has read it already, so that is not an error here)."""
    import gzip
    import struct

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    try:
        with gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb") as f:
            head = f.read(76)
    except (OSError, EOFError):
        return None
    if len(head) < 76:
        return None
    for order in ("<", ">"):
        sizeof_hdr = struct.unpack(order + "i", head[:4])[0]
        if sizeof_hdr == 348:
            datatype, bitpix = struct.unpack(order + "hh", head[70:74])
            break
        if sizeof_hdr == 540:
            datatype, bitpix = struct.unpack(order + "hh", head[12:16])
            break
    else:
        return None
    if bitpix <= 0:
        return None
    per_voxel = bitpix / 8 * (1 if datatype in _NIFTI_PACKED_COLOUR else max(1, components))
    return float(np.prod(size, dtype=np.float64)) * per_voxel


def _capacity(path: Path, on_disk: int) -> float | None:
    """Most voxel bytes a single-file image of ``on_disk`` bytes can hold (raw: its size; gzip: its size times the
    largest deflate ratio), or None when unknown (data in another file, bzip2 or text encodings, other formats)."""
    name = path.name.lower()
    if name.endswith(".nii"):
        return on_disk
    if name.endswith(".nii.gz"):
        return on_disk * _GZIP_MAX_RATIO
    if not name.endswith((".nrrd", ".mha")):
        return None
    with open(path, "rb") as f:
        head = f.read(65536)
    fields = {}
    for raw in head.split(b"\n"):
        line = raw.decode("latin-1").strip()
        if not line and name.endswith(".nrrd"):
            break  # the blank line that ends a NRRD header
        key, sep, value = line.partition("=" if name.endswith(".mha") else ":")
        if sep:
            fields[key.strip().lower().replace(" ", "")] = value.strip().lower()
        if name.endswith(".mha") and key.strip().lower() == "elementdatafile":
            break  # the last line of a MetaImage header
    if name.endswith(".nrrd"):
        if "datafile" in fields:
            return None
        encoding = fields.get("encoding", "raw")
        return on_disk if encoding == "raw" else on_disk * _GZIP_MAX_RATIO if encoding in ("gz", "gzip") else None
    if fields.get("elementdatafile", "local") != "local":
        return None
    return on_disk * _GZIP_MAX_RATIO if fields.get("compresseddata", "false") == "true" else on_disk


def _pixel_bytes(pixel: str) -> int:
    """Bytes per voxel of a SimpleITK pixel type name ("16-bit signed integer" → 2)."""
    for bits in (8, 16, 32, 64):
        if f"{bits}-bit" in pixel:
            return bits // 8
    return 8


def _check_dicom_slices(path: Path, files) -> None:
    """Refuse a DICOM series whose slices are not evenly spaced along their normal (missing slices, or two
    acquisitions mixed): ITK would stack them as if they were, and the segmentation would be displaced."""
    import SimpleITK as sitk  # noqa: N813

    if len(files) < 3:
        return
    positions, normal = [], None
    reader = sitk.ImageFileReader()
    for f in files:
        reader.SetFileName(f)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return  # an unreadable slice: the series reader reports it
        if normal is None:
            d = np.asarray(reader.GetDirection(), dtype=np.float64)
            if d.size != 9 or not np.all(np.isfinite(d)):
                return
            normal = d.reshape(3, 3)[:, 2]
        positions.append(float(np.dot(np.asarray(reader.GetOrigin()[:3], dtype=np.float64), normal)))
    gaps = np.diff(np.sort(np.asarray(positions)))
    if not np.all(np.isfinite(gaps)):
        return
    step = float(np.median(gaps))
    repeated = int(np.sum(gaps <= 1e-3 * max(step, 1e-3)))
    if repeated:
        raise InputError(
            f"{path}: {repeated + 1} slices of the DICOM series lie at the same position (two acquisitions, or a "
            f"slice copied twice); put one complete series in the folder"
        )
    smallest, widest = float(gaps.min()), int(np.argmax(gaps))
    if gaps[widest] > 1.1 * smallest:  # a missing slice leaves a gap of twice (or more) the slice distance
        raise InputError(
            f"{path}: the DICOM slices are not evenly spaced (a gap of {gaps[widest]:.3g} mm after slice {widest + 1} "
            f"of {len(files)}, where the closest slices are {smallest:.3g} mm apart): missing slices or mixed "
            f"acquisitions. Give the complete series, or load it in 3D Slicer (which resamples irregular series) and "
            f"save it as a NRRD or NIfTI volume."
        )


def _itk_detail(text: str, path: Path) -> str:
    """The informative part of an ITK exception: its ERROR line without object addresses (and with the file name
    instead of its whole path), plus the innermost reason NRRD's reader gives (e.g. "axis 2 size is zero!")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    main = next((line for line in lines if "ERROR" in line or "error" in line), lines[0] if lines else "")
    main = re.sub(r"^(s?itk::|ITK )ERROR:\s*", "", main)
    main = re.sub(r"\(0x[0-9a-fA-F]+\)", "", main).replace(str(path), path.name)
    reasons = [line.split(":", 1)[-1].strip() for line in lines if line.startswith("[nrrd]")]
    reasons = [r for r in reasons if r and not r.startswith("trouble")]
    if reasons:
        main = f"{main.rstrip(' :')}: {reasons[-1]}"
    return re.sub(r"\s+", " ", main).strip(" :")[:300] or "unknown error"


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file or DICOM series folder; raises :class:`InputError` with what to do on failure."""
    path = _readable(path)
    return _reading(path, lambda: from_sitk(_read_sitk(path), path))


def read_sitk_image(path: str | Path, allow_2d: bool = False):
    """The ``SimpleITK.Image`` (LPS geometry, as stored) of an image file or DICOM series folder, after the same
    checks as :func:`read_image`; ``allow_2d`` lets a 2D image through. Raises :class:`InputError`."""
    path = _readable(path)
    return _reading(path, lambda: _read_sitk(path, allow_2d))


def _readable(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if not (path.is_file() or path.is_dir()):
        raise InputError(f"{path}: not a regular file or folder (a device or pipe?); give an image file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable (check the file permissions)")
    return path


def _reading(path: Path, read):
    """``read()``, with SimpleITK's errors turned into an :class:`InputError` that says what is supported."""
    try:
        return read()
    except InputError:
        raise
    except Exception as exc:  # SimpleITK raises RuntimeError with ITK's text for every I/O problem
        raise InputError(
            f"{path}: could not be read as an image ({_itk_detail(str(exc), path)}). "
            f"Supported: NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha/.mhd) and DICOM series folders."
        ) from None


def from_sitk(image, path: str | Path = "") -> LoadedImage:
    """A SimpleITK image as :class:`LoadedImage` (array KJI, IJK→RAS); a 4D image with one time point is squeezed."""
    import SimpleITK as sitk  # noqa: N813

    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        size = [*image.GetSize()[:3], 0]
        image = sitk.Extract(image, size, [0, 0, 0, 0], sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
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
