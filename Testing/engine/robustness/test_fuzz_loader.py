"""Fuzzing the loader of ``morse segment``: a few hundred corrupted NIfTI, NRRD and MetaImage files (bit flips,
truncation, wrong dimensions, absurd/zero/negative/NaN spacing and directions, huge declared sizes, odd voxel types
and values) go through :func:`morse.imageio.read_image`, :func:`validate_volume` and the model-grid checks of the
preprocessing. Every case must end as a loaded volume or a clean :class:`InputError` whose message names the file —
no other exception, no crash, no hang, and no large memory use.

The cases run in a worker process (a crash in native code cannot take pytest down) with a time limit per case; the
worker is restarted after a crash or a hang and the case is reported. Deterministic: a fixed seed.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

SEED = 20261122
CASES_PER_SEED = 45
CASE_TIME_LIMIT_S = 20.0  # generous: a loaded 2-core machine; a hang is minutes, not seconds
MAX_WORKER_RSS = 2 << 30  # torch and SimpleITK take ~0.5 GB; a header that made us fill memory would exceed this

_WORKER = r"""
import json, resource, sys, traceback
from morse.config import PreprocessingConfig
from morse.errors import InputError
from morse.imageio import read_image
from morse.inference.validation import check_model_grid, validate_volume

grids = [(PreprocessingConfig(orientation="LPS", spacing=[1.0] * 3), 2),
         (PreprocessingConfig(orientation="RAS", spacing=[0.25] * 3), 3)]
paths = json.loads(open(sys.argv[1], encoding="utf-8").read())
for i in range(int(sys.argv[2]), len(paths)):
    path = paths[i]
    try:
        image = read_image(path)
        volume, messages = validate_volume(image.array, image.ijk_to_ras, name=path)
        for pre, dims in grids:
            check_model_grid(volume.shape, image.ijk_to_ras, pre, dims, name=path)
        outcome, message = "ok", "; ".join(messages)
    except InputError as exc:
        outcome, message = "InputError", str(exc)
    except BaseException as exc:
        outcome, message = type(exc).__name__, traceback.format_exc()[-1500:]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"i": i, "outcome": outcome, "message": message, "rss": rss}), flush=True)
"""


# -- seed files -------------------------------------------------------------------------------------------------------


def _seed_images() -> list[tuple[str, object]]:
    """(suffix, SimpleITK image) of small valid volumes in several voxel types and geometries."""
    rng = np.random.default_rng(SEED)
    out = []
    specs = [
        (".nii", np.int16, (0.8, 0.8, 2.5)),
        (".nii.gz", np.float32, (1.0, 1.2, 3.0)),
        (".nrrd", np.uint16, (0.7, 0.7, 1.0)),
        (".nrrd", np.float64, (2.0, 2.0, 2.0)),
        (".mha", np.int8, (1.0, 1.0, 1.0)),
        (".mha", np.uint8, (0.5, 0.6, 5.0)),
    ]
    c, s = np.cos(0.2), np.sin(0.2)
    for n, (suffix, dtype, spacing) in enumerate(specs):
        shape = (12, 13, 14)
        values = rng.normal(0, 100, shape) if np.issubdtype(dtype, np.floating) else rng.integers(0, 100, shape)
        image = sitk.GetImageFromArray(values.astype(dtype))
        image.SetSpacing(spacing)
        image.SetOrigin((10.0 * n, -5.0, 3.0))
        if n % 2:  # oblique
            image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
        out.append((suffix, image))
    return out


def _write_seed(folder: Path, n: int, suffix: str, image, compress: bool) -> bytes:
    path = folder / f"seed{n}{suffix}"
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path.read_bytes()


# -- corruptions ------------------------------------------------------------------------------------------------------

_NIFTI_FIELDS = {  # name: (byte offset in the NIfTI-1 header, struct format)
    "dim": (40, "<8h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern": (256, "<6f"),
    "srow": (280, "<12f"),
}
_ODD_FLOATS = [0.0, -1.0, -2.5, float("nan"), float("inf"), -float("inf"), 1e-30, 1e30, 1e-3, 1e3, 3.4e38]
_ODD_INTS = [0, 1, 2, 3, 4, 5, 7, 8, -1, -32768, 32767, 1000, 30000]


def _nifti_edit(rng: random.Random, header: bytearray) -> str:
    field = rng.choice(list(_NIFTI_FIELDS))
    offset, fmt = _NIFTI_FIELDS[field]
    values = list(struct.unpack_from(fmt, header, offset))
    k = rng.randrange(len(values))
    values[k] = rng.choice(_ODD_FLOATS) if fmt.endswith("f") else rng.choice(_ODD_INTS)
    struct.pack_into(fmt, header, offset, *values)
    return f"{field}[{k}]={values[k]}"


_TEXT_FIELDS = {
    ".nrrd": {
        "dimension": ["0", "1", "2", "4", "5", "-3", "x"],
        "sizes": ["0 7 8", "-6 7 8", "6 7", "6 7 8 9", "100000 100000 100000", "1 1 1", "6 7 abc", "2147483647 2 2"],
        "space directions": [
            "(0,0,0) (0,1,0) (0,0,1)",
            "(nan,0,0) (0,1,0) (0,0,1)",
            "(1,0,0) (1,0,0) (0,0,1)",
            "(1e-30,0,0) (0,1e-30,0) (0,0,1e-30)",
            "(1e30,0,0) (0,1,0) (0,0,1)",
            "none (0,1,0) (0,0,1)",
            "(-1,0,0) (0,-1,0) (0,0,-1)",
        ],
        "type": ["double", "int8", "uint64", "block", "complex", "float16", "rgb"],
        "encoding": ["gzip", "raw", "bzip2", "ascii", "hex", "nonsense"],
        "space origin": ["(nan,nan,nan)", "(1e308,0,0)", "(0,0)"],
    },
    ".mha": {
        "NDims": ["0", "1", "2", "4", "9", "-3"],
        "DimSize": ["0 7 8", "6 7", "100000 100000 100000", "-1 7 8", "6 7 8 9", "4294967295 2 2"],
        "ElementSpacing": ["0 0 0", "-1 1 1", "nan 1 1", "1e-30 1 1", "1e30 1 1", "1 1"],
        "TransformMatrix": ["0 0 0 0 0 0 0 0 0", "nan 0 0 0 1 0 0 0 1", "1 0 0 1 0 0 0 0 1", "1 0 0"],
        "Offset": ["nan 0 0", "1e308 0 0", "0 0"],
        "ElementType": ["MET_DOUBLE", "MET_CHAR", "MET_ULONG_LONG", "MET_OTHER", "garbage"],
        "CompressedData": ["True", "False"],
        "ElementNumberOfChannels": ["0", "3", "-1"],
    },
}


def _text_edit(rng: random.Random, suffix: str, data: bytes) -> tuple[bytes, str]:
    """Replace the value of one header field of a NRRD/MetaImage file (header up to the data)."""
    sep = ": " if suffix == ".nrrd" else " = "
    end = data.find(b"\n\n") + 2 if suffix == ".nrrd" else data.find(b"ElementDataFile = LOCAL\n") + 24
    header, body = data[:end].decode("latin-1"), data[end:]
    field = rng.choice(list(_TEXT_FIELDS[suffix]))
    value = rng.choice(_TEXT_FIELDS[suffix][field])
    lines = header.split("\n")
    hit = [n for n, line in enumerate(lines) if line.split(sep)[0].strip() == field]
    if hit:
        lines[hit[0]] = f"{field}{sep}{value}"
    else:
        lines.insert(1 if suffix == ".nrrd" else 0, f"{field}{sep}{value}")
    return "\n".join(lines).encode("latin-1") + body, f"{field}={value!r}"


def _flip_bits(rng: random.Random, data: bytearray, end: int, count: int) -> str:
    spots = []
    for _ in range(count):
        pos = rng.randrange(max(1, min(end, len(data))))
        bit = rng.randrange(8)
        data[pos] ^= 1 << bit
        spots.append(f"{pos}.{bit}")
    return "flip " + ",".join(spots)


def _corrupt(rng: random.Random, suffix: str, data: bytes) -> tuple[bytes, str]:
    """One random corruption of a seed file's bytes; returns the new bytes and what was done."""
    op = rng.choice(["flip_header", "flip_any", "truncate", "field", "field", "field2"])
    gz = suffix == ".nii.gz"
    raw = bytearray(gzip.decompress(data) if gz else data)
    if op == "truncate":
        cut = rng.choice([0, 1, 4, 100, 347, 348, 352, len(data) // 2, len(data) - 1])
        return data[: min(cut, len(data) - 1)], f"truncate {cut}"
    if op in ("flip_header", "flip_any"):
        header_end = 352 if suffix.startswith(".nii") else max(16, raw.find(b"\n\n") + 1, raw.find(b"LOCAL") + 6)
        what = _flip_bits(rng, raw, header_end if op == "flip_header" else len(raw), rng.choice([1, 2, 8]))
    elif suffix.startswith(".nii"):
        what = _nifti_edit(rng, raw)
        if op == "field2":
            what += " " + _nifti_edit(rng, raw)
    else:
        new, what = _text_edit(rng, suffix, bytes(raw))
        if op == "field2":
            new, more = _text_edit(rng, suffix, new)
            what += " " + more
        raw = bytearray(new)
    out = bytes(raw)
    if gz and rng.random() < 0.8:
        out = gzip.compress(out, mtime=0)
    elif gz:  # flip bits in the compressed stream itself
        compressed = bytearray(gzip.compress(out, mtime=0))
        what += " then " + _flip_bits(rng, compressed, len(compressed), 4)
        out = bytes(compressed)
    return out, f"{op}: {what}"


def _odd_values(folder: Path) -> list[tuple[Path, str]]:
    """Valid headers with values the segmenter must handle or refuse: NaN/Inf, constant, beyond float32, bool-like."""
    cases = []
    specs = {
        "all-nan.nrrd": np.full((8, 9, 10), np.nan, np.float32),
        "some-inf.nrrd": np.where(np.arange(720).reshape(8, 9, 10) % 7, np.arange(720).reshape(8, 9, 10), np.inf),
        "constant.mha": np.full((8, 9, 10), 7, np.int16),
        "huge-float64.nrrd": np.full((8, 9, 10), 1e300, np.float64),
        "one-slice.nii": np.arange(30, dtype=np.int16).reshape(1, 5, 6),
        "one-voxel.nrrd": np.ones((1, 1, 1), np.uint8),
    }
    for name, values in specs.items():
        path = folder / name
        sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
        cases.append((path, "values"))
    return cases


def _make_cases(folder: Path) -> list[tuple[Path, str]]:
    rng = random.Random(SEED)
    cases = _odd_values(folder)
    for n, (suffix, image) in enumerate(_seed_images()):
        for compress in (False, True) if suffix in (".nrrd", ".mha") else (suffix == ".nii.gz",):
            data = _write_seed(folder, n, suffix, image, compress)
            for k in range(CASES_PER_SEED // (2 if suffix in (".nrrd", ".mha") else 1)):
                corrupted, what = _corrupt(rng, suffix, data)
                path = folder / f"case{n}{'z' if compress else ''}_{k:02d}{suffix}"
                path.write_bytes(corrupted)
                cases.append((path, what))
    return cases


# -- the runner -------------------------------------------------------------------------------------------------------


def _run_all(paths: list[str], tmp: Path) -> dict[int, dict]:
    """Outcome per case index, from worker processes (restarted after a crash or a hang)."""
    listing = tmp / "cases.json"
    listing.write_text(json.dumps(paths), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results: dict[int, dict] = {}
    start = 0
    while start < len(paths):
        worker = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(listing), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + CASE_TIME_LIMIT_S + 30  # the first case also pays for the imports
        while start < len(paths):
            ready, _, _ = select.select([worker.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:  # a hang: report it and go on with a fresh worker after this case
                worker.kill()
                worker.wait()
                results[start] = {"outcome": "hang", "message": f"no answer within {CASE_TIME_LIMIT_S} s"}
                start += 1
                break
            line = worker.stdout.readline()
            if not line:  # the worker died: a crash in native code
                code = worker.wait()
                results[start] = {"outcome": "crash", "message": f"worker exited with status {code}"}
                start += 1
                break
            record = json.loads(line)
            results[record["i"]] = record
            start = record["i"] + 1
            deadline = time.monotonic() + CASE_TIME_LIMIT_S
        else:
            worker.wait()
    return results


def test_corrupted_images_fail_cleanly(tmp_path):
    cases = _make_cases(tmp_path)
    assert len(cases) >= 250
    results = _run_all([str(p) for p, _ in cases], tmp_path)
    assert sorted(results) == list(range(len(cases)))
    bad = [
        f"{cases[i][0].name} ({cases[i][1]}): {r['outcome']}: {r['message']}"
        for i, r in results.items()
        if r["outcome"] not in ("ok", "InputError")
    ]
    assert bad == [], "\n\n".join(bad)
    unnamed = [cases[i][0].name for i, r in results.items() if r["outcome"] == "InputError"
               and not r["message"].startswith(str(cases[i][0]) + ": ")]  # fmt: skip
    assert unnamed == []
    refused = sum(r["outcome"] == "InputError" for r in results.values())
    assert 0.3 * len(cases) < refused < 0.95 * len(cases)  # the corruptions bite, and many files still load
    assert max(r.get("rss", 0) for r in results.values()) < MAX_WORKER_RSS
    by_name = {cases[i][0].name: r for i, r in results.items()}
    assert by_name["all-nan.nrrd"]["message"].endswith("every voxel is NaN or infinite; the image holds no data "
                                                       "(check the export that made it)")  # fmt: skip
    assert by_name["huge-float64.nrrd"]["outcome"] == "InputError"
    assert by_name["some-inf.nrrd"]["message"] == (
        "103 NaN/infinite voxels were treated as 1 (the lowest finite value; 14 % of the volume)"
    )
    assert by_name["constant.mha"]["message"].startswith("every voxel has the same value (7)")
    assert by_name["one-slice.nii"]["outcome"] == "InputError"  # a 3D model needs 16 voxels; a 2D model takes it
    assert "too small for a 3D model" in by_name["one-slice.nii"]["message"]
