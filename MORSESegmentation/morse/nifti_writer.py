"""A streamed NIfTI-1 writer: the header, then the voxels deflated in chunks on a few threads, straight from the array.

ITK's writer (through SimpleITK) first copies the array into an ITK image and, for multi-component images, copies it
again to reorder the components, then compresses the whole buffer on one thread. This writer copies nothing but one
chunk at a time when the array is not contiguous, compresses chunks in parallel the way ``pigz`` does (each chunk an
independent deflate segment ending on a byte boundary, so their concatenation is one valid stream; ``zlib`` releases
the GIL while it works), and writes a standard single-member gzip file that any NIfTI reader opens.

Intensity scaling (``scl_slope``): ITK, 3D Slicer and nibabel apply it to scalar images, so a uint8 map stored with
slope 1/255 reads back as 0..1 floats while its file holds one byte per voxel. ITK mishandles a slope on
multi-component images (its reader overruns its buffer), so :func:`write_nifti` refuses that combination.

Geometry: the IJK→RAS matrix is stored both as the sform (exactly) and as the qform (quaternion, voxel sizes and
``qfac`` for left-handed grids), both with code 1 (scanner), as ITK writes them; readers that prefer either agree.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

DEFAULT_LEVEL = 1  # chosen by measurement (docs/results/robustness.md, "Writing the outputs")
CHUNK_BYTES = 4 << 20  # uncompressed bytes per deflate segment (large enough that the lost dictionary costs ~nothing)
HEADER_BYTES = 352  # the 348-byte NIfTI-1 header plus the 4-byte extension flag (no extensions)

# numpy dtype → (NIfTI datatype code, bits per voxel)
_CODES = {
    np.dtype(np.uint8): (2, 8),
    np.dtype(np.int16): (4, 16),
    np.dtype(np.int32): (8, 32),
    np.dtype(np.float32): (16, 32),
    np.dtype(np.float64): (64, 64),
    np.dtype(np.int8): (256, 8),
    np.dtype(np.uint16): (512, 16),
    np.dtype(np.uint32): (768, 32),
}
_INTENT_VECTOR = 1007
_XFORM_SCANNER = 1
_UNITS_MM_SEC = 2 | 8


def _quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(b, c, d, qfac) of the NIfTI qform for a 3×3 matrix with unit columns (the nearest rotation is used, as
    ``nifti_mat44_to_quatern`` does: a left-handed matrix gets qfac −1 and its third column negated)."""
    u, _, vt = np.linalg.svd(rotation)
    r = u @ vt  # polar decomposition: the orthonormal matrix nearest to the given directions
    qfac = 1.0
    if np.linalg.det(r) < 0:
        qfac = -1.0
        r[:, 2] = -r[:, 2]
    a = r[0, 0] + r[1, 1] + r[2, 2] + 1.0
    if a > 0.5:
        a = 0.5 * np.sqrt(a)
        b, c, d = (r[2, 1] - r[1, 2]) / (4 * a), (r[0, 2] - r[2, 0]) / (4 * a), (r[1, 0] - r[0, 1]) / (4 * a)
    else:
        xd, yd, zd = (
            1.0 + r[0, 0] - (r[1, 1] + r[2, 2]),
            1.0 + r[1, 1] - (r[0, 0] + r[2, 2]),
            1.0 + r[2, 2] - (r[0, 0] + r[1, 1]),
        )
        if xd > 1.0:
            b = 0.5 * np.sqrt(xd)
            c, d, a = (r[0, 1] + r[1, 0]) / (4 * b), (r[0, 2] + r[2, 0]) / (4 * b), (r[2, 1] - r[1, 2]) / (4 * b)
        elif yd > 1.0:
            c = 0.5 * np.sqrt(yd)
            b, d, a = (r[0, 1] + r[1, 0]) / (4 * c), (r[1, 2] + r[2, 1]) / (4 * c), (r[0, 2] - r[2, 0]) / (4 * c)
        else:
            d = 0.5 * np.sqrt(zd)
            b, c, a = (r[0, 2] + r[2, 0]) / (4 * d), (r[1, 2] + r[2, 1]) / (4 * d), (r[1, 0] - r[0, 1]) / (4 * d)
        if a < 0:
            b, c, d = -b, -c, -d
    return float(b), float(c), float(d), qfac


def nifti_header(
    shape_kji: tuple[int, int, int],
    dtype,
    ijk_to_ras: np.ndarray,
    components: int = 1,
    slope: float = 1.0,
    display_range: tuple[float, float] | None = None,
    description: str = "",
) -> bytes:
    """The 352 bytes before the voxels of a little-endian ``.nii`` file.

    Args:
        shape_kji: (K, J, I) voxels; the file's dim[1..3] are (I, J, K). dtype: the stored voxel type.
        ijk_to_ras: (4, 4) voxel index (i, j, k) → RAS mm. components: values per voxel (> 1: a vector image,
            stored component after component, as ITK writes it).
        slope: ``scl_slope`` (readers return stored × slope). display_range: ``cal_min``, ``cal_max`` (after the
            slope), or None. description: ``descrip`` (ASCII, at most 79 characters).
    """
    dtype = np.dtype(dtype)
    code, bits = _CODES[dtype.newbyteorder("=")]
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    k, j, i = (int(s) for s in shape_kji)
    if components > 1:
        dim = (5, i, j, k, 1, components, 1, 1)
        intent = _INTENT_VECTOR
    else:
        dim = (3, i, j, k, 1, 1, 1, 1)
        intent = 0
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    b, c, d, qfac = _quaternion(m[:3, :3] / np.where(spacing > 0, spacing, 1.0))
    low, high = display_range or (0.0, 0.0)
    h = bytearray(HEADER_BYTES)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, *dim)
    struct.pack_into("<hhhh", h, 68, intent, code, bits, 0)
    struct.pack_into("<8f", h, 76, qfac, *spacing, 0.0, 0.0, 0.0, 0.0)
    struct.pack_into("<fff", h, 108, float(HEADER_BYTES), float(slope), 0.0)
    h[123] = _UNITS_MM_SEC
    struct.pack_into("<ff", h, 124, float(high), float(low))
    text = description.encode("ascii", "replace")[:79]
    h[148 : 148 + len(text)] = text
    struct.pack_into("<hh", h, 252, _XFORM_SCANNER, _XFORM_SCANNER)
    struct.pack_into("<6f", h, 256, b, c, d, *m[:3, 3])
    struct.pack_into("<12f", h, 280, *m[0], *m[1], *m[2])
    h[344:348] = b"n+1\x00"
    return bytes(h)


def _pieces(array: np.ndarray, chunk_bytes: int, levels: int | None = None):
    """The array's voxels in file order (C order, little-endian) as byte buffers of about ``chunk_bytes``; a
    contiguous array is sliced without copying, any other is copied one chunk at a time. ``levels``: uint8 voxels
    are stored as float32 ``value / levels``, converted a chunk at a time."""
    stored = np.dtype("<f4") if levels else array.dtype.newbyteorder("<")
    if array.flags.c_contiguous and array.dtype == stored:
        view = memoryview(array.reshape(-1).view(np.uint8))
        for start in range(0, len(view), chunk_bytes):
            yield view[start : start + chunk_bytes]
        return
    rows = array.reshape(-1, *array.shape[-2:]) if array.ndim > 2 else array[None]
    per_row = max(1, rows[0].nbytes)
    step = max(1, chunk_bytes // per_row)
    if levels:
        step = max(1, step // 4)
    for start in range(0, rows.shape[0], step):
        chunk = np.ascontiguousarray(rows[start : start + step], dtype=stored)
        if levels:
            chunk /= np.float32(levels)
        yield chunk.reshape(-1).view(np.uint8).data


def _deflate(data, level: int, last: bool) -> bytes:
    packer = zlib.compressobj(level, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def write_gzip_stream(
    path: Path, pieces, level: int = DEFAULT_LEVEL, pool: ThreadPoolExecutor | None = None, in_flight: int = 4
) -> int:
    """Write the byte buffers ``pieces`` as one gzip file, deflating up to ``in_flight`` of them at once on
    ``pool`` (None: on this thread). Returns the uncompressed length. The CRC is taken here, in order."""
    crc, total = 0, 0
    pending: deque = deque()
    with open(path, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip, deflate, no name, no time, unknown OS

        def drain(keep: int) -> None:
            while len(pending) > keep:
                out.write(pending.popleft().result())

        previous = None
        for piece in pieces:
            if previous is not None:
                pending.append(_submit(pool, previous, level, last=False))
                drain(in_flight)
            crc = zlib.crc32(piece, crc)
            total += len(piece)
            previous = piece
        pending.append(_submit(pool, previous if previous is not None else b"", level, last=True))
        drain(0)
        out.write(struct.pack("<II", crc & 0xFFFFFFFF, total & 0xFFFFFFFF))
    return total


class _Done:
    def __init__(self, value: bytes):
        self._value = value

    def result(self) -> bytes:
        return self._value


def _submit(pool, data, level: int, last: bool):
    if pool is None:
        return _Done(_deflate(data, level, last))
    return pool.submit(_deflate, data, level, last)


def write_nifti(
    path: str | Path,
    array: np.ndarray,
    ijk_to_ras: np.ndarray,
    *,
    vector: bool = False,
    slope: float = 1.0,
    levels: int | None = None,
    display_range: tuple[float, float] | None = None,
    description: str = "",
    level: int = DEFAULT_LEVEL,
    pool: ThreadPoolExecutor | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> int:
    """Write ``array`` (K, J, I), or (N, K, J, I) with ``vector``, as a gzip-compressed NIfTI-1 file (``.nii.gz``).

    No copy of the array is made (a non-contiguous one is copied a chunk at a time). ``slope``: readers return
    stored × slope (scalar images only, see the module doc). ``levels``: a uint8 array is stored as float32
    ``value / levels`` (how multi-component maps keep their 0..1 meaning without a slope). ``pool``: threads that
    deflate the chunks in parallel (None: this thread). Returns the bytes of voxel data written (for
    :func:`morse.image_integrity.verify_written_image`). Raises ``OSError`` when the file cannot be written,
    ``ValueError`` for an unsupported voxel type or a slope on a vector image.
    """
    array = np.asarray(array)
    if np.dtype(array.dtype.newbyteorder("=")) not in _CODES:
        raise ValueError(f"voxel type {array.dtype} cannot be written as NIfTI by this writer")
    if levels and array.dtype != np.uint8:
        raise ValueError("levels applies to uint8 arrays")
    if vector and slope != 1.0:
        raise ValueError("ITK misreads an intensity slope on multi-component NIfTI images; store them unscaled")
    shape = array.shape[1:] if vector else array.shape
    if len(shape) != 3:
        raise ValueError(f"expected a (K, J, I){' vector' if vector else ''} array, got shape {array.shape}")
    stored = np.float32 if levels else array.dtype
    header = nifti_header(shape, stored, ijk_to_ras, array.shape[0] if vector else 1, slope, display_range, description)

    def pieces():
        yield header
        yield from _pieces(array, chunk_bytes, levels)

    write_gzip_stream(Path(path), pieces(), level, pool)
    return int(array.size * np.dtype(stored).itemsize)
