"""The background run: a real worker process (``python -m morse.inference.worker``) polled like the widget does."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
from morse.errors import CancelledError
from MORSESegmentationLib.backgroundRun import WorkerError, WorkerRun
from MORSESegmentationLib.volumeArrays import addVolumeFromArray

from MORSESegmentation import MORSESegmentationLogic


def test_worker_result_equals_the_in_process_result_and_imports(tinyPack):
    """One real worker run (they cost ~5 s of process start): device fallback, progress protocol, exact results,
    the volume captured at start, and import into nodes."""
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(12, 40, 48))
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    logic = MORSESegmentationLogic()
    request = logic.prepareRequest(node, model=str(tinyPack), device="cuda")  # no GPU here: falls back to the CPU
    expected = logic.runEngine(request)

    run = WorkerRun(request.volume, request.ijkToRas, model=str(tinyPack), device="cuda")
    run.start()
    slicer.util.arrayFromVolume(node)[:] = 0  # editing the volume during the run does not affect it
    events = []
    assert run.wait(timeout=120, onEvent=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and "device" in kinds and kinds[-2:] == ["done", "exit"]
    stages = [e.stage for e in events if e.kind == "progress"]
    assert stages[0] == "loading model" and "segmenting" in stages and stages[-1] == "finishing"
    assert run.device == "cpu"
    assert "CUDA" in run.deviceMessage and "CPU" in run.deviceMessage
    assert np.array_equal(np.load(run.workDir / "input.npy"), volume)

    result = run.result()
    assert any("CUDA" in m for m in result.messages)
    np.testing.assert_array_equal(result.labels, expected.labels)
    np.testing.assert_array_equal(result.coarse_labels, expected.coarse_labels)
    np.testing.assert_array_equal(result.rectified, expected.rectified)
    assert result.gating.dtype == np.uint8  # maps travel quantised: a quarter of the float32 size
    np.testing.assert_array_equal(result.gating, np.rint(np.clip(expected.gating, 0, 1) * 255).astype(np.uint8))
    assert [i.name for i in result.labels_info] == [i.name for i in expected.labels_info]
    assert result.labels_info[0].type == expected.labels_info[0].type
    np.testing.assert_array_equal(result.ijk_to_ras, ijkToRas)

    outputs = logic.importResult(request, result)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(outputs.gatingVolumes[0]), result.gating[0])
    np.testing.assert_array_equal(
        slicer.util.arrayFromSegmentBinaryLabelmap(outputs.segmentation, "liver", node) > 0, expected.labels == 1
    )
    workDir = run.workDir
    assert workDir.exists()
    run.cleanup()
    assert not workDir.exists()


def test_cancel_kills_the_worker_and_leaves_no_result(tinyPack):
    volume = np.zeros((200, 256, 256), np.int16)  # several seconds of work: still running when cancelled
    run = WorkerRun(volume, np.eye(4), model=str(tinyPack), device="cpu")
    run.start()
    pid = run._process.pid
    deadline = time.monotonic() + 60
    seen = []
    while not any(e.kind == "progress" and e.stage == "segmenting" for e in seen):  # mid-inference
        assert time.monotonic() < deadline and run.isRunning()
        seen += run.poll()
        time.sleep(0.01)
    started = time.monotonic()
    run.cancel()
    assert time.monotonic() - started < 4
    assert run.wait(timeout=10, onEvent=seen.append)
    assert "done" not in [e.kind for e in seen]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the process is gone
    with pytest.raises(CancelledError):
        run.result()
    run.cleanup()
    assert not run.workDir.exists()


def test_engine_error_message_reaches_the_caller(tmp_path):
    (tmp_path / "weights.pth").write_bytes(b"\x80\x04")
    volume, _ = np.zeros((2, 16, 16), np.int16), None
    run = WorkerRun(volume, np.eye(4), model=str(tmp_path / "weights.pth"))
    run.start()
    assert run.wait(timeout=120)
    with pytest.raises(WorkerError, match="pickle checkpoint"):
        run.result()
    run.cleanup()
