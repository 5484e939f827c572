"""Per-case arrays of the uncertainty evaluation on the model grid, computed once and cached (``.npz``).

For one scan and its reference: the coarse and refined logits, the rectified cells, the Monte-Carlo routing mean
and mutual information, the mirrored pass, the reference and the scan in HU — all on the pack's model grid
(:mod:`morse.uncertainty.grid`), float16 for the logits — plus the seconds each part of the network took.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def cache_key(case_name: str, pack, samples: int, seed: int, stride: int) -> str:
    digest = hashlib.sha256(
        f"{CACHE_VERSION}|{case_name}|{pack.meta['weights']['sha256']}|{samples}|{seed}|{stride}".encode()
    ).hexdigest()[:12]
    return f"{case_name}-{digest}.npz"


def soft_batches(image, ijk_to_ras, pack, samples: int, seed: int, stride: int = 1, batch: int = 16,
                 timings: dict[str, float] | None = None):  # fmt: skip
    """The scan's model-grid slices through :func:`morse.uncertainty.passes.soft_pass` (Monte-Carlo routing and
    the mirrored pass included), ``batch`` slices at a time.

    Returns ``(prep, keep, batches)``: the preprocessing record of :func:`morse.inference.preprocess.prepare` (its
    image kept to the slices ``keep``, every ``stride``-th axial slice of the reoriented volume) and an iterator of
    ``(rows, size, SoftBatch)``, ``rows`` the kept-slice range of the batch and ``size`` the unpadded model-grid
    ``(H, W)`` to crop to.
    ``timings`` accumulates the seconds per part of the passes."""
    from ..inference.pipeline import get_model
    from ..inference.preprocess import pad_to_multiple, prepare, resize
    from ..uncertainty.passes import mirror_channels, soft_pass

    net = get_model(pack, torch.device("cpu"))
    prep = prepare(image, ijk_to_ras, pack.preprocessing, 2)
    keep = np.arange(0, prep.shape[0], stride)
    prep.image = prep.image[keep]
    hw = tuple(prep.model_shape[1:])
    generator = torch.Generator().manual_seed(seed)
    mirror = mirror_channels(pack.labels)

    def batches():
        for s in range(0, prep.image.shape[0], batch):
            x = resize(torch.from_numpy(prep.image[s : s + batch]).unsqueeze(1), hw)
            x, size = pad_to_multiple(x, net.size_multiple)
            x = x.contiguous(memory_format=torch.channels_last)
            b = soft_pass(net, x, samples=samples, flip=True, mirror=mirror, generator=generator, timings=timings)
            yield slice(s, s + x.shape[0]), size, b

    return prep, keep, batches()


def compute_case(
    image, label, ijk_to_ras, pack, samples: int, seed: int, stride: int = 1, batch: int = 16
) -> dict[str, np.ndarray]:
    """Every array of one case (see the module docstring); ``label`` may be None (no reference).

    ``stride``: every ``stride``-th axial slice of the reoriented volume only (a 2D model sees each slice alone, so
    the kept slices get exactly the values of a full run); the returned ``ijk_to_ras`` spaces them accordingly."""
    from ..inference.preprocess import crop
    from ..uncertainty.grid import model_grid_ijk_to_ras, resize_slices

    timings: dict[str, float] = {}
    prep, keep, batches = soft_batches(image, ijk_to_ras, pack, samples, seed, stride, batch, timings)
    hw = tuple(prep.model_shape[1:])
    depth = len(keep)
    c = int(pack.config.num_classes)
    out = {
        "coarse": np.zeros((c, depth, *hw), np.float16),
        "refined": np.zeros((c, depth, *hw), np.float16),
        "rectified": np.zeros((depth, *hw), bool),
        "mc_probs": np.zeros((c, depth, *hw), np.float16),
        "mc_mutual": np.zeros((depth, *hw), np.float16),
        "flip_refined": np.zeros((c, depth, *hw), np.float16),
    }
    for rows, size, b in batches:
        out["coarse"][:, rows] = crop(b.coarse.float(), size).transpose(0, 1).numpy()
        out["refined"][:, rows] = crop(b.refined.float(), size).transpose(0, 1).numpy()
        out["rectified"][rows] = crop(b.rectified, size).numpy()
        out["mc_probs"][:, rows] = crop(b.mc_probs, size).transpose(0, 1).numpy()
        out["mc_mutual"][rows] = crop(b.mc_mutual, size).numpy()
        out["flip_refined"][:, rows] = crop(b.flip_refined.float(), size).transpose(0, 1).numpy()
    m = model_grid_ijk_to_ras(prep.reorder.reoriented_ijk_to_ras(ijk_to_ras), prep.shape, prep.model_shape)
    m[:3, 2] *= stride
    out["ijk_to_ras"] = m
    hu = np.ascontiguousarray(prep.reorder.apply(image)[keep], dtype=np.float32)
    out["hu"] = resize_slices(hu, hw).astype(np.int16)
    if label is not None:
        out["reference"] = resize_slices(np.ascontiguousarray(prep.reorder.apply(label)[keep]), hw, nearest=True)
    out["stride"] = np.int64(stride)
    for key, seconds in timings.items():
        out[f"seconds_{key}"] = np.float64(seconds)
    return out


def load_or_compute(
    folder: Path, case_name: str, load, pack, samples: int, seed: int, stride: int = 1
) -> dict[str, np.ndarray]:
    """The cached arrays of ``case_name`` (``load()`` → ``(image, label, ijk_to_ras)`` reads the case when the
    cache misses)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / cache_key(case_name, pack, samples, seed, stride)
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    t0 = time.perf_counter()
    image, label, ijk_to_ras = load()
    arrays = compute_case(image, label, ijk_to_ras, pack, samples, seed, stride)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    log.info("%s: computed in %.0f s", case_name, time.perf_counter() - t0)
    return arrays


VALIDATION = "btcv_0037,btcv_0039,btcv_0040"
REGISTRY = {"abdomen-ct-dicom": 4, "abdomen-ct": 16}  # case → slice stride
SAMPLES = 4
SEED = 20231
# every n-th axial slice: what the shared CPU allowed, fixed before any result was seen
STRIDES = {"btcv_0037": 12}
VAL_STRIDE = 24
TEST_STRIDE = 48


def stride_of(name: str) -> int:
    return STRIDES.get(name, VAL_STRIDE if name in VALIDATION.split(",") else TEST_STRIDE)


def btcv_loaders(data: str, split: str):
    """``[(name, load)]`` of the BTCV cases of ``split``; ``load()`` → ``(image, label, ijk_to_ras)``."""
    from ..data.readers import load_case, read_dataset, select_split

    every = read_dataset(data)
    cases = [c for part in split.split(",") for c in select_split(every, part)]
    allowed = set(VALIDATION.split(",")) | {c.name for c in select_split(every, "test")}
    if split != "test" and not {c.name for c in cases} <= allowed:
        raise SystemExit(f"error: {split}: only the validation cases ({VALIDATION}) and the test cases are used")
    return [(c.name, (lambda c=c: load_case(c))) for c in cases]


def registry_loaders():
    """``[(name, load, stride)]`` of the registry CTs with a Synapse-8 reference (``morse fetch-data``)."""
    from ..data.cases import case_label_path, case_path
    from ..imageio import read_image

    def load(name):
        image = read_image(case_path(name))
        label = read_image(case_label_path(name)).array.astype(np.uint8)
        return image.array, label, image.ijk_to_ras

    return [(name, (lambda n=name: load(n)), stride) for name, stride in REGISTRY.items()]


def cached(folder: Path, name: str, load, pack, stride: int) -> dict[str, np.ndarray]:
    return load_or_compute(folder, name, load, pack, SAMPLES, SEED, stride)
