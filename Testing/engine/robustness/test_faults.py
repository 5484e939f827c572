"""Device and memory faults during inference, injected on the CPU: out-of-memory errors from the network (as CUDA
raises them) make the pipeline halve its batches and finally hand over to the CPU, saying so; short memory makes it
plan smaller batches or stitching slabs, or refuse with what to turn off; unavailable devices fall back visibly."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from morse.device import DeviceChoice, resolve_device
from morse.errors import ConfigError, InputError, ModelPackError
from morse.fileutils import sha256_file
from morse.inference import memory
from morse.inference import pipeline as pipeline_module
from morse.inference.pipeline import segment_volume
from morse.modelpack import load_model_pack
from synthetic import LPS_1MM, ring_slices


class OutOfMemoryAbove:
    """Wraps a MORSE network; ``predict`` raises CUDA's out-of-memory error for batches larger than ``limit``
    (``limit=0``: always), like a GPU whose memory holds only that many slices."""

    def __init__(self, net, limit: int):
        self._net, self.limit, self.calls = net, limit, []

    def predict(self, x, **kwargs):
        self.calls.append(int(x.shape[0]))
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (batch of {x.shape[0]})")
        return self._net.predict(x, **kwargs)

    def __getattr__(self, name):
        return getattr(self._net, name)


@pytest.fixture
def rings(trained_rings):
    image, _ = ring_slices(12, seed=5)
    return image, load_model_pack(trained_rings[1])


def test_out_of_memory_halves_the_batch_and_gives_the_same_labels(rings, monkeypatch):
    image, pack = rings
    reference = segment_volume(image, LPS_1MM, model=pack, device="cpu", batch_size=8)
    real = pipeline_module.get_model(pack, torch.device("cpu"))
    faulty = OutOfMemoryAbove(real, limit=3)
    monkeypatch.setattr(pipeline_module, "get_model", lambda _pack, _device: faulty)
    result = segment_volume(image, LPS_1MM, model=pack, device="cpu", batch_size=8)
    assert result.messages == ["out of memory with 8 slices per batch: continued with 2 slices per batch"]
    # 8 fails, 4 fails, 2+2 work; the remaining 4 slices go straight in batches of 2
    assert faulty.calls == [8, 4, 2, 2, 4, 2, 2, 2, 2]
    assert np.array_equal(result.labels, reference.labels)
    assert np.array_equal(result.coarse_labels, reference.coarse_labels)
    assert np.allclose(result.gating, reference.gating, atol=1e-6)


def test_a_gpu_out_of_memory_even_for_one_slice_hands_over_to_the_cpu(rings, monkeypatch):
    """The GPU is played by PyTorch's "meta" device (tensors without data): the network there always runs out of
    memory; the CPU model is the real one."""
    image, pack = rings
    reference = segment_volume(image[:3], LPS_1MM, model=pack, device="cpu", gating=False)
    real = pipeline_module.get_model(pack, torch.device("cpu"))
    gpu = OutOfMemoryAbove(real, limit=0)
    monkeypatch.setattr(
        pipeline_module, "resolve_device", lambda requested, dims: DeviceChoice(torch.device("meta"), requested)
    )
    monkeypatch.setattr(pipeline_module, "get_model", lambda _pack, device: gpu if device.type == "meta" else real)
    result = segment_volume(image[:3], LPS_1MM, model=pack, device="cuda", batch_size=2, gating=False)
    assert result.messages == [
        "out of memory with 2 slices per batch: continued with 1 slice per batch",
        "out of memory on meta even with one slice per batch: continued on the CPU (slower)",
    ]
    assert result.device == "cpu" and gpu.calls == [2, 1]
    assert np.array_equal(result.labels, reference.labels)


def test_out_of_memory_on_the_cpu_with_one_slice_is_a_clear_error(rings, monkeypatch):
    image, pack = rings
    real = pipeline_module.get_model(pack, torch.device("cpu"))
    monkeypatch.setattr(pipeline_module, "get_model", lambda _pack, _device: OutOfMemoryAbove(real, limit=0))
    with pytest.raises(InputError) as err:
        segment_volume(image[:2], LPS_1MM, model=pack, device="cpu", batch_size=1)
    assert str(err.value) == (
        "not enough memory to run the model on even one slice ((64, 64) model voxels) on the CPU; close other "
        "programs, or crop the volume"
    )


def test_other_network_errors_are_not_mistaken_for_out_of_memory(rings, monkeypatch):
    image, pack = rings

    class Broken(OutOfMemoryAbove):
        def predict(self, x, **kwargs):
            raise RuntimeError("Expected all tensors to be on the same device")

    real = pipeline_module.get_model(pack, torch.device("cpu"))
    monkeypatch.setattr(pipeline_module, "get_model", lambda _pack, _device: Broken(real, 0))
    with pytest.raises(RuntimeError, match="same device"):
        segment_volume(image[:2], LPS_1MM, model=pack, device="cpu")


def test_3d_window_batches_halve_and_stitching_falls_back_to_thinner_slabs(pack3d, monkeypatch):
    rng = np.random.default_rng(0)
    volume = rng.random((80, 40, 36)).astype(np.float32)  # model grid 80×40×36 at 2 mm → padded 80×48×48
    m = np.diag([-2.0, -2.0, 2.0, 1.0])
    pack = load_model_pack(pack3d)
    reference = segment_volume(volume, m, model=pack, device="cpu", batch_size=4)
    real = pipeline_module.get_model(pack, torch.device("cpu"))
    faulty = OutOfMemoryAbove(real, limit=1)
    monkeypatch.setattr(pipeline_module, "get_model", lambda _pack, _device: faulty)
    result = segment_volume(volume, m, model=pack, device="cpu", batch_size=4)
    assert result.messages == ["out of memory with 4 windows per batch: continued with 1 window per batch"]
    assert np.array_equal(result.labels, reference.labels) and np.array_equal(result.rectified, reference.rectified)
    # stitching: the first attempt over the whole depth runs out of memory, thinner slabs work
    real_window = pipeline_module._sliding_window
    depths = []

    def short_of_memory(x, *args):
        depths.append(int(x.shape[2]))
        if x.shape[2] > limit["depth"]:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123456789 bytes.")
        return real_window(x, *args)

    limit = {"depth": 56}
    monkeypatch.setattr(pipeline_module, "get_model", lambda _pack, _device: real)
    monkeypatch.setattr(pipeline_module, "_sliding_window", short_of_memory)
    slabbed = segment_volume(volume, m, model=pack, device="cpu")
    assert slabbed.messages == [
        "out of memory while stitching the sliding windows: continued in slabs of 40 model slices"
    ]
    assert depths == [80, 56, 56]  # each slab: its 40-slice core plus 16 slices (half a window) of context inside
    assert (slabbed.labels == reference.labels).mean() > 0.97  # windows sit elsewhere: near, not equal
    assert np.abs(slabbed.uncertainty - reference.uncertainty).mean() < 0.01
    limit["depth"] = 30  # not even the thinnest slab (16 slices + context) fits
    with pytest.raises(InputError) as err:
        segment_volume(volume, m, model=pack, device="cpu")
    assert str(err.value) == (
        "not enough memory to stitch even a 16-slice slab of the (80, 48, 48) model grid; close other programs, "
        "turn off the gating/uncertainty maps, or crop the volume"
    )


def test_memory_plan_lowers_the_2d_batch_and_logs_the_estimate(rings, monkeypatch, caplog):
    image, pack = rings
    reference = segment_volume(image, LPS_1MM, model=pack, device="cpu", batch_size=8)
    cfg = pack.config
    kw = dict(refine=True, gating=True, uncertainty=True, gating_stride=2)
    two = memory.estimate(image.shape, 4, image.shape, cfg, batch_size=2, **kw)
    monkeypatch.setattr(memory, "available_memory", lambda: int(two.to_allocate / memory.HEADROOM) + 1)
    with caplog.at_level(logging.INFO, logger="morse.inference.memory"):
        result = segment_volume(image, LPS_1MM, model=pack, device="cpu", batch_size=8)
    available = memory.size_text(int(two.to_allocate / memory.HEADROOM) + 1)
    assert result.messages == [f"2 slices per batch instead of 8, to stay within the {available} of free memory"]
    assert f"input: estimated peak memory {two.describe()}; {available} available" in caplog.messages
    assert np.array_equal(result.labels, reference.labels)


def test_memory_plan_refuses_what_cannot_fit(rings, monkeypatch):
    image, pack = rings
    monkeypatch.setattr(memory, "available_memory", lambda: 1_000_000)
    with pytest.raises(InputError) as err:
        segment_volume(image, LPS_1MM, model=pack, device="cpu")
    e = memory.estimate(image.shape, 4, image.shape, pack.config, batch_size=1, refine=True, gating=True,
                        uncertainty=True)  # fmt: skip
    assert str(err.value) == (
        f"input: segmenting this 12×64×64 volume needs about {memory.size_text(e.peak)} of memory (input 0.197 MB, "
        f"prepared copy 0.197 MB, full-resolution outputs 1.38 MB, working {memory.size_text(e.working)}; after the "
        f"network: post-processing {memory.size_text(e.phases['postprocessing'])}, writing the files "
        f"{memory.size_text(e.phases['writing'])}) but only "
        f"1 MB is available. Turn off the gating maps (--no-gating; 0.983 MB); the uncertainty map "
        f"(--no-uncertainty; 0.197 MB); crop the volume to the region of interest, or use a computer with more memory."
    )


def test_memory_plan_splits_3d_stitching_into_slabs(pack3d, monkeypatch):
    pack = load_model_pack(pack3d)
    volume = np.random.default_rng(1).random((64, 32, 32)).astype(np.float32)
    m = np.diag([-2.0, -2.0, 2.0, 1.0])
    kw = dict(refine=True, gating=True, uncertainty=True, batch_size=1, roi=(32, 32, 32), num_experts=3)
    whole = memory.estimate(volume.shape, 4, volume.shape, pack.config, **kw)
    slab20 = memory.estimate(volume.shape, 4, volume.shape, pack.config, slab=20, **kw)
    assert slab20.working < whole.working and slab20.outputs == whole.outputs
    assert slab20.phases["resampling"] < slab20.phases["stitching"] < whole.phases["stitching"]
    available = int(slab20.phases["stitching"] / memory.HEADROOM) + 2
    monkeypatch.setattr(memory, "available_memory", lambda: available)
    result = segment_volume(volume, m, model=pack, device="cpu")
    assert result.messages == [
        f"the sliding-window results are stitched in slabs of 20 model slices (z) to stay within the "
        f"{memory.size_text(available)} of free memory"
    ]


def test_unavailable_devices_fall_back_visibly():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the fallback cannot be observed")
    assert resolve_device("cuda").message == (
        "CUDA was requested but no CUDA GPU is available to PyTorch; using the CPU instead"
    )
    assert resolve_device("cuda:3").device.type == "cpu"
    mps = resolve_device("mps", spatial_dims=3)
    assert mps.device.type == "cpu" and "using the CPU instead" in mps.message
    assert resolve_device("cpu").message is None and resolve_device("auto").device.type == "cpu"
    for bad in ("tpu", "cuda:x", "cuda:-1", "gpu"):
        with pytest.raises(ConfigError, match=r"unknown device .*; choose one of auto, cpu, cuda, mps \(or cuda:N\)"):
            resolve_device(bad)


def test_model_with_two_input_channels_is_refused_for_a_single_volume(trained_rings, tmp_path):
    import shutil

    pack_dir = shutil.copytree(trained_rings[1], tmp_path / "two-channel")
    meta = json.loads((pack_dir / "model.json").read_text(encoding="utf-8"))
    meta["architecture"]["backbone"]["in_channels"] = 2
    (pack_dir / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    assert sha256_file(pack_dir / "model.safetensors") == meta["weights"]["sha256"]
    image, _ = ring_slices(2, seed=1)
    with pytest.raises(ModelPackError) as err:
        segment_volume(image, LPS_1MM, model=pack_dir, device="cpu")
    assert str(err.value) == (
        f"{pack_dir}: the model takes 2 input channels (several images per case, e.g. MR sequences), but MORSE gives "
        f"it one volume. Use a model trained on single images."
    )


def test_out_of_memory_errors_are_recognised_on_every_device():
    assert pipeline_module.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB"))
    assert pipeline_module.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 17 GB)"))
    assert pipeline_module.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ..."))
    assert pipeline_module.is_out_of_memory(MemoryError())
    assert not pipeline_module.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not pipeline_module.is_out_of_memory(ValueError("out of memory"))


def test_3d_stitching_keeps_only_the_channels_asked_for(pack3d, monkeypatch):
    """Stitched outputs (float32 on the model grid): refined + coarse logits, rectified mask and gates with every
    option; only the coarse logits when refinement and gating maps are off."""
    volume = np.random.default_rng(5).random((36, 36, 36)).astype(np.float32)
    real_window = pipeline_module._sliding_window
    channels = []

    def recording(*args):
        out = real_window(*args)
        channels.append([int(t.shape[1]) for t in out])
        return out

    monkeypatch.setattr(pipeline_module, "_sliding_window", recording)
    m = np.diag([-2.0, -2.0, 2.0, 1.0])
    segment_volume(volume, m, model=pack3d, device="cpu")
    segment_volume(volume, m, model=pack3d, device="cpu", refine=False, gating=False, uncertainty=False)
    assert channels == [[3, 3, 1, 3], [3]]
