"""Checks of an image file's bytes before ITK reads it.

ITK zero-fills a compressed stream that ends early, passes a stream whose CRC fails, and turns NaN/Inf of a NIfTI
file into 0: each would be segmented silently as if it were a real scan. These checks read the file once, in chunks
(constant memory), and raise :class:`InputError` with what is wrong. Header files that point at a data file
(``.nhdr``, ``.mhd``) must point at regular files, since a pipe or device would block the reader forever.

The same blindness holds when writing: ITK reports no error when the disk fills or a file-size limit cuts a file
short. :func:`verify_written_image` reads back the header and compares the stored data length with what was written,
without decompressing the voxels (the gzip trailer records the stream's length).
"""

from __future__ import annotations

import gzip
import re
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError

_CHUNK = 1 << 22
# NIfTI datatype codes of floating-point voxels: (numpy type, bytes per voxel)
_NIFTI_FLOATS = {16: "f4", 64: "f8"}
_NIFTI_SIZES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8, 128: 3, 2304: 4}


def refuse_blocking_data(path: Path) -> None:
    """Raise :class:`InputError` if the header file ``path`` names a data file that is not a regular file (ITK opens
    it even to read the header, and a pipe would block it for ever), or is a NIfTI file ITK would crash on (see
    :func:`_refuse_scaled_vector`)."""
    name = path.name.lower()
    if name.endswith((".nhdr", ".mhd")):
        _check_detached_data(path)
    elif name.endswith((".nii", ".nii.gz")):
        try:
            with (gzip.open if name.endswith(".gz") else open)(path, "rb") as f:
                header = f.read(348)
        except (OSError, EOFError, zlib.error):
            return  # a damaged stream: check_image_file says so
        if len(header) == 348 and 348 in (struct.unpack("<i", header[:4])[0], struct.unpack(">i", header[:4])[0]):
            _refuse_scaled_vector(header, path)


def check_image_file(path: Path) -> None:
    """Raise :class:`InputError` if ``path`` (a file, not a DICOM folder) is damaged."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti(path)
    elif name.endswith(".gz"):
        for _ in _chunks(path):
            pass


def _chunks(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of ``path`` in chunks; a stream that ends early or fails its check is an error."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            while True:
                block = f.read(_CHUNK)
                if not block:
                    return
                yield block
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if str(exc).startswith("Not a gzipped file"):
            return  # not a damaged stream but another format under a .gz name: the reader's own error says so
        raise InputError(
            f"{path}: the file is damaged ({exc}); the compressed data ends early or fails its checksum, as after an "
            f"interrupted download or copy. Copy or download it again"
        ) from None


def _check_nifti(path: Path) -> None:
    stream = _chunks(path)
    buffer = b""
    for block in stream:
        buffer += block
        if len(buffer) >= 352:
            break
    layout = _nifti_layout(buffer, path)
    if layout is None:
        for _ in stream:  # not a NIfTI-1 header ITK would accept either; still verify the stream
            pass
        return
    offset, n_bytes, dtype = layout
    received = len(buffer)
    bad = 0
    pending = buffer
    position = 0  # file offset of pending[0]
    for block in stream:
        pending += block
        received += len(block)
        if dtype is not None:
            bad, pending, position = _count_non_finite(pending, position, offset, n_bytes, dtype, bad)
    if dtype is not None:
        bad, pending, position = _count_non_finite(pending, position, offset, n_bytes, dtype, bad)
    if received < offset + n_bytes:
        raise InputError(
            f"{path}: the file is cut short ({received} of {offset + n_bytes} bytes of voxel data and header); copy "
            f"or download it again"
        )
    if bad:
        raise InputError(
            f"{path}: {bad} voxels are NaN or infinite; MORSE needs finite intensities. Replace them (e.g. by the "
            f"scan's background value) and try again"
        )


def _refuse_scaled_vector(header: bytes, path: Path) -> None:
    """ITK (SimpleITK 2.5) overruns its buffer and aborts the process when it reads a multi-component NIfTI of integer
    voxels with an intensity scale: refuse it before ITK sees it."""
    order = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
    dims = struct.unpack(order + "8h", header[40:56])
    datatype = struct.unpack(order + "h", header[70:72])[0]
    slope, inter = struct.unpack(order + "ff", header[112:120])
    components = 1
    for d in dims[5 : dims[0] + 1]:
        components *= max(int(d), 1)
    scaled = slope not in (0.0, 1.0) or inter != 0.0
    if dims[0] >= 5 and components > 1 and datatype not in _NIFTI_FLOATS and scaled:
        raise InputError(
            f"{path}: a NIfTI image with {components} values per voxel and an intensity scale (scl_slope {slope:g}, "
            f"scl_inter {inter:g}), which ITK cannot read safely; MORSE segments one scalar volume: save a single "
            f"component, or the data without the scale"
        )


def _nifti_layout(header: bytes, path: Path) -> tuple[int, int, np.dtype | None] | None:
    """(data offset, data bytes, float dtype or None) of a NIfTI-1 header; None for anything else."""
    if len(header) < 348:
        return None  # ITK's header reader reports this one
    for order in "<>":
        if struct.unpack(order + "i", header[:4])[0] == 348:
            break
    else:
        return None
    dims = struct.unpack(order + "8h", header[40:56])
    datatype = struct.unpack(order + "h", header[70:72])[0]
    vox_offset = struct.unpack(order + "f", header[108:112])[0]
    if not 1 <= dims[0] <= 7 or datatype not in _NIFTI_SIZES or not 0 <= vox_offset < 2**31:
        return None
    count = 1
    for d in dims[1 : dims[0] + 1]:
        count *= max(int(d), 1)
    n_bytes = count * _NIFTI_SIZES[datatype]
    float_type = _NIFTI_FLOATS.get(datatype)
    dtype = np.dtype(order + float_type) if float_type else None
    return max(int(vox_offset), 352), n_bytes, dtype


def _count_non_finite(pending: bytes, position: int, offset: int, n_bytes: int, dtype, bad: int):
    """Count non-finite values in the whole elements of ``pending`` that lie inside the voxel data."""
    start = max(offset - position, 0)
    end = min(offset + n_bytes - position, len(pending))
    if end <= start:
        keep = pending[start:] if start < len(pending) else b""
        return bad, keep, position + len(pending) - len(keep)
    usable = (end - start) // dtype.itemsize * dtype.itemsize
    values = np.frombuffer(pending, dtype=dtype, count=usable // dtype.itemsize, offset=start)
    bad += int(values.size - np.count_nonzero(np.isfinite(values)))
    consumed = start + usable
    return bad, pending[consumed:], position + consumed


_DATA_FILE = re.compile(r"^(?:data file|datafile|ElementDataFile)\s*[:=]\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def _check_detached_data(path: Path) -> None:
    """Every data file a ``.nhdr``/``.mhd`` header names must be a regular file (a FIFO would block for ever)."""
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 16).decode("latin-1")
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    for match in _DATA_FILE.finditer(text):
        value = match.group(1)
        if value.upper() in ("LOCAL", "LIST") or "%" in value:
            continue  # inline data, or a list/pattern the reader expands (its files are checked by ITK's open)
        target = (path.parent / value.split()[0]).resolve()
        try:
            mode = target.stat().st_mode
        except OSError:
            continue  # missing: ITK's own error names it
        if not stat.S_ISREG(mode):
            raise InputError(
                f"{path}: its data file {target} is not a regular file (a pipe or device?); give an image whose data "
                f"is stored in a file"
            )


def verify_written_image(path: Path, shape_kji: tuple[int, ...], components: int, data_bytes: int) -> None:
    """Raise :class:`OutputError` unless ``path`` (``.nii.gz``, ``.nii`` or a ``.nrrd``) holds a readable header of
    the written array (``shape_kji``, ``components`` per voxel) and all ``data_bytes`` of its voxel data."""
    import SimpleITK as sitk  # noqa: N813

    def fail(why: str) -> OutputError:
        return OutputError(f"{path}: writing failed ({why}); is the disk full or a file-size limit set?")

    try:
        size = path.stat().st_size
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
    except (OSError, RuntimeError) as exc:
        raise fail(f"the header cannot be read back: {str(exc).strip().splitlines()[-1][:160]}") from None
    stored = tuple(reversed(reader.GetSize()))
    if stored != tuple(shape_kji) or reader.GetNumberOfComponents() != components:
        raise fail(f"it holds {stored} × {reader.GetNumberOfComponents()}, not {tuple(shape_kji)} × {components}")
    name = path.name.lower()
    if name.endswith(".gz"):
        header = b""
        with gzip.open(path, "rb") as f:
            header = f.read(352)
        layout = _nifti_layout(header, path)
        expected = (layout[0] if layout else 0) + data_bytes
        stored_length = _gzip_length(path, size)
        if stored_length != expected % 2**32:
            raise fail(f"the compressed stream is cut short ({size} bytes on disk)")
    elif name.endswith(".nrrd"):
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        end = head.find(b"\n\n")
        encoding = re.search(rb"^encoding:\s*(\S+)", head[:end], re.MULTILINE)
        if end < 0 or encoding is None:
            raise fail("no complete NRRD header")
        if encoding.group(1) in (b"gzip", b"gz"):
            if _gzip_length(path, size) != data_bytes % 2**32:
                raise fail(f"the compressed voxel data is cut short ({size} bytes on disk)")
        elif encoding.group(1) == b"raw" and size != end + 2 + data_bytes:
            raise fail(f"{size - end - 2} of {data_bytes} bytes of voxel data")
    elif name.endswith(".nii") and size < 352 + data_bytes:
        raise fail(f"{size} of at least {352 + data_bytes} bytes")


def _gzip_length(path: Path, size: int) -> int | None:
    """The uncompressed length (mod 2³²) that a gzip file's trailer records, or None if it is too short."""
    if size < 18:
        return None
    with open(path, "rb") as f:
        f.seek(size - 4)
        return struct.unpack("<I", f.read(4))[0]
