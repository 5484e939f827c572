"""Memory: the estimate's volume-sized terms are exact, the chunked 3D resampling equals a whole-volume
``F.interpolate``, and a real run's peak stays within the estimate (no hidden volume-sized copies)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from morse.inference import memory
from morse.inference.chunked import dominant_expert, resize_linear_into, resize_nearest_into
from synthetic import tiny_model_config


@pytest.mark.parametrize(
    ("src", "dst"), [((7, 9, 11), (20, 30, 25)), ((30, 24, 20), (8, 10, 13)), ((5, 6, 7), (5, 6, 7))]
)
def test_chunked_linear_resize_equals_trilinear(src, dst):
    x = torch.rand(src, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(x[None, None], size=dst, mode="trilinear", align_corners=False)[0, 0].numpy()
    out = np.zeros(dst, np.float32)
    resize_linear_into(out, x, budget=4 * dst[1] * dst[2] * 3)  # a few slices per chunk: many chunks
    assert np.abs(out - expected).max() < 2e-6


@pytest.mark.parametrize(("src", "dst"), [((7, 9, 11), (20, 30, 25)), ((30, 24, 20), (8, 10, 13))])
def test_chunked_nearest_resize_equals_nearest_exact(src, dst):
    x = torch.randint(0, 9, src, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    expected = F.interpolate(x[None, None].float(), size=dst, mode="nearest-exact")[0, 0].to(torch.uint8).numpy()
    out = np.zeros(dst, np.uint8)
    resize_nearest_into(out, x, budget=4 * dst[1] * dst[2] * 2)
    assert np.array_equal(out, expected)


def test_chunked_resize_writes_through_a_reoriented_view():
    x = torch.rand((6, 8, 10), generator=torch.Generator().manual_seed(2))
    full = np.zeros((12, 9, 7), np.float32)  # the input's own layout
    view = np.flip(full.transpose(2, 1, 0), axis=0)  # the reoriented grid the pipeline writes into: (7, 9, 12)
    resize_linear_into(view, x, budget=1)
    expected = F.interpolate(x[None, None], size=(7, 9, 12), mode="trilinear", align_corners=False)[0, 0].numpy()
    assert np.abs(np.flip(expected, axis=0).transpose(2, 1, 0) - full).max() < 2e-6


def test_dominant_expert_in_chunks():
    gating = np.random.default_rng(3).random((3, 9, 5, 4)).astype(np.float32)
    assert np.array_equal(dominant_expert(gating, budget=1), (gating.argmax(0) + 1).astype(np.uint8))


def test_volume_sized_terms_are_exact():
    cfg = tiny_model_config()
    e = memory.estimate((100, 200, 300), 2, (100, 200, 300), cfg, refine=True, gating=True, uncertainty=True,
                        batch_size=4)  # fmt: skip
    v = 100 * 200 * 300
    assert e.input == 2 * v and e.prepared == 4 * v
    assert e.outputs_detail == {
        "labels": v, "coarse labels": v, "rectified": v, "uncertainty": 4 * v, "gating": 20 * v, "dominant expert": v
    }  # fmt: skip
    assert e.phases["inference"] == e.prepared + e.outputs + e.working
    # after the network the outputs stay while post-processing and writing add their measured scratch
    assert e.phases["postprocessing"] == e.outputs + memory.POSTPROCESS_BYTES_PER_VOXEL * v
    chunks = min(memory.WRITE_FIXED_BYTES, memory.WRITE_BYTES_PER_VOXEL * v)  # never more than the data
    assert chunks == 24_000_000  # this 6-million-voxel volume: less than the 64 MiB of a large one
    written = chunks + memory.WRITE_BYTES_PER_VOXEL * v + 5 * v  # + the uint8 copy of the float32 gates
    assert e.phases["writing"] == e.outputs + written
    assert e.peak == e.input + max(e.phases.values())
    small = memory.estimate((100, 200, 300), 2, (100, 200, 300), cfg, refine=True, gating=True, uncertainty=True,
                            batch_size=4, map_bytes=1)  # fmt: skip
    assert small.outputs == 10 * v  # uint8 maps (what morse segment and Slicer ask for): 1 + 1 + 1 + 1 + 5 + 1 bytes
    assert small.phases["writing"] == small.outputs + chunks + memory.WRITE_BYTES_PER_VOXEL * v
    bare = memory.estimate((100, 200, 300), 2, (100, 200, 300), cfg, refine=False, gating=False, uncertainty=False,
                           batch_size=4)  # fmt: skip
    assert bare.outputs == v  # labels only
    twice = memory.estimate((100, 200, 300), 2, (100, 200, 300), cfg, refine=True, gating=True, uncertainty=True,
                            batch_size=8)  # fmt: skip
    assert twice.working == pytest.approx(2 * e.working, rel=1e-6)


_PEAK_SCRIPT = r"""
import json, sys, tempfile
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from synthetic import LABELS, tiny_model_config
from morse.config import PreprocessingConfig
from morse.inference import memory, pipeline
from morse.model import MorseModel
from morse.modelpack import load_model_pack, save_model_pack

torch.manual_seed(0)
pre = PreprocessingConfig(orientation="LPS", spacing=[1.0, 1.0, 1.0])
pre.intensity.low, pre.intensity.high = 0.0, 1.0
pack = load_model_pack(save_model_pack(Path(tempfile.mkdtemp()) / "p", MorseModel(tiny_model_config()).eval(),
                                       model_id="t", version="0.0.1", preprocessing=pre, labels=LABELS))
ras = np.diag([1.0, 1.0, 1.0, 1.0])  # RAS storage: the outputs are written through flipped views
memory.CHUNK_BYTES = 1 << 20  # chunked steps cost a constant, not a share of this small volume


def rss_kib(field):
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith(field + ":"):
            return int(line.split()[1])


growth = []
for depth in (2, 50, 300):  # the first run is a warm-up (network built, kernels loaded)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    before = rss_kib("VmRSS")
    volume = np.random.default_rng(0).random((depth, 48, 48), dtype=np.float32)
    result = pipeline.segment_volume(volume, ras, model=pack, device="cpu", batch_size=4)
    growth.append((rss_kib("VmHWM") - before) * 1024)
    del volume, result
print(json.dumps({"bytes_per_voxel": (growth[2] - growth[1]) / (250 * 48 * 48)}))
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable peak RSS")
def test_peak_memory_grows_only_by_the_input_and_outputs(tmp_path):
    """The peak of a run grows with the number of slices by exactly the volume-sized arrays of the estimate: the
    input (4 bytes per voxel, float32) and the outputs (28 with every map as float32, the default of
    ``segment_volume``), plus the larger of the prepared copy (4, while the network runs) and the post-processing
    scratch (7, after it). Measured as the difference between the peak growth (Linux VmHWM, reset before
    each run) of runs on 50 and on 300 slices of 48², so per-batch costs cancel. A reoriented copy of the gating maps
    (+20), a whole-volume argmax (+8) or a float copy of the labels (+4) would break the bound."""
    engine_tests = str(Path(__file__).resolve().parents[1])
    # glibc returns every block of 64 KiB or more to the system when freed (no heap growth from per-batch blocks)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, engine_tests], capture_output=True, text=True, env=env, check=True
    )
    per_voxel = json.loads(run.stdout.strip().splitlines()[-1])["bytes_per_voxel"]
    cfg = tiny_model_config()
    e = memory.estimate((1, 48, 48), 4, (1, 48, 48), cfg, refine=True, gating=True, uncertainty=True, batch_size=4)
    # per voxel (one slice of 48² voxels → divide): the network phase holds the prepared copy, the post-processing
    # phase its scratch instead; segment_volume writes nothing, so the writing phase does not count here
    network = (e.input + e.prepared + e.outputs) / (48 * 48)
    postprocessing = (e.input + e.phases["postprocessing"]) / (48 * 48)
    assert (network, postprocessing) == (36, 39)
    expected = max(network, postprocessing)
    assert 0.8 * expected <= per_voxel <= 1.05 * expected, per_voxel
