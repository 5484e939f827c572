"""The background run: the logic's run contract on a real warm worker process (``python -m morse.inference.worker
--serve``), the in-process path beside it, and cancel killing whole process trees."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
from morse.errors import CancelledError
from MORSESegmentationLib import backgroundRun
from MORSESegmentationLib.backgroundRun import WarmWorker, WorkerError, WorkerRun, killProcessTree
from MORSESegmentationLib.logic import RunError, RunOptions
from MORSESegmentationLib.volumeArrays import addVolumeFromArray

from MORSESegmentation import MORSESegmentationLogic

posixOnly = pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def nodeArrays(outputs, inputNode) -> dict:
    arrays = {}
    for segmentID in outputs.segmentIDs:
        arrays[segmentID] = slicer.util.arrayFromSegmentBinaryLabelmap(outputs.segmentation, segmentID, inputNode)
    for k, volume in enumerate(outputs.gatingVolumes):
        arrays[f"gating {k}"] = slicer.util.arrayFromVolume(volume).copy()
    arrays["uncertainty"] = slicer.util.arrayFromVolume(outputs.uncertaintyVolume).copy()
    return arrays


def test_background_run_equals_the_in_process_run_and_the_second_run_is_warm(tinyPack):
    """One real worker for two runs: same nodes as process(), each message once, monotone progress, and the second
    run on the same process with the model cached. The timings are reported, not asserted."""
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(12, 40, 48))
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    logic = MORSESegmentationLogic()
    inProcess = logic.process(node, model=str(tinyPack), device="cuda")  # no GPU: the CPU
    expected = nodeArrays(inProcess, node)
    expectedReview = logic.reviewList(inProcess)

    runs = []
    for _ in range(2):
        progress, lines, finished = [], [], []
        logic.startRun(
            RunOptions(inputVolume=node, model=str(tinyPack), device="cuda"),
            onProgress=lambda stage, overall, progress=progress: progress.append((stage, overall)),
            onLog=lambda text, level, lines=lines: lines.append(text),
            onFinished=finished.append,
        )
        assert logic.isRunning
        with pytest.raises(RunError, match="already running"):
            logic.startRun(RunOptions(inputVolume=node, model=str(tinyPack)))
        slicer.util.arrayFromVolume(node)[:] += 0  # the scene stays usable during the run
        outcome = logic.waitForRun(timeout=300)
        assert not logic.isRunning and finished == [outcome]
        assert outcome.status == "done", outcome.error
        runs.append((outcome, progress, lines))

        arrays = nodeArrays(outcome.outputs, node)
        assert arrays.keys() == expected.keys()
        for name, array in arrays.items():
            assert array.dtype == expected[name].dtype, name
            np.testing.assert_array_equal(array, expected[name], err_msg=name)
        assert logic.reviewList(outcome.outputs) == expectedReview  # the worker's review list is the engine's too
        overall = [value for _, value in progress]
        assert overall == sorted(overall) and overall[-1] == 1.0  # never drops (e.g. to 0 at "creating outputs")
        assert {"starting", "segmenting", "creating outputs"} <= {stage for stage, _ in progress}
        fallback = [line for line in lines if "CUDA" in line]
        assert len(fallback) == 1, lines  # resolved once, shown once
        assert len(lines) == len(set(lines))

    (first, _, _firstLines), (second, _, secondLines) = runs
    assert second.workerPid == first.workerPid == logic.workerPid
    assert not first.modelCached and first.startupSeconds is not None
    assert second.modelCached and second.startupSeconds is None
    assert any("Model cached in worker process" in line for line in secondLines)
    print(
        f"\nfirst run {first.seconds:.1f} s (start-up {first.startupSeconds:.1f} s, model {first.modelSeconds:.2f} s);"
        f" second run {second.seconds:.1f} s (model {second.modelSeconds:.4f} s, engine "
        f"{second.timings.get('total', 0.0):.1f} s)"
    )

    pid = logic.workerPid
    slicer.mrmlScene.Clear(0)  # scene close ends the warm worker
    assert logic.workerPid is None
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


LAUNCHER = """#!{python}
# Like PythonSlicer: the real interpreter runs as a child of this launcher.
import subprocess, sys
sys.exit(subprocess.call([{python!r}, *sys.argv[1:]]))
"""


@posixOnly
def test_cancel_kills_the_launcher_and_the_python_it_started(tinyPack, tmp_path):
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    volume = np.zeros((200, 256, 256), np.int16)  # several seconds of work: still running when cancelled
    run = WorkerRun(volume, np.eye(4), model=str(tinyPack), device="cpu", python=str(launcher))
    run.start()
    seen = []
    deadline = time.monotonic() + 240
    while not any(e.kind == "progress" and e.stage == "segmenting" for e in seen):  # mid-inference
        assert time.monotonic() < deadline and run.isRunning()
        seen += run.poll()
        time.sleep(0.01)
    launcherPid = run.pid
    pythonPid = next(e.data["pid"] for e in seen if e.kind == "ready")
    assert pythonPid != launcherPid and alive(pythonPid)
    started = time.monotonic()
    run.cancel()
    assert time.monotonic() - started < 8
    assert run.wait(timeout=10, onEvent=seen.append)
    assert "done" not in [e.kind for e in seen]
    assert not alive(launcherPid) and not alive(pythonPid)  # the real Python too, not only the launcher
    with pytest.raises(CancelledError):
        run.result()
    run.cleanup()
    assert not run.workDir.exists()


@posixOnly
def test_process_tree_kill_reaches_a_grandchild():
    child = textwrap.dedent(
        """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(grandchild.pid, flush=True)
        time.sleep(120)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, **backgroundRun.processGroupOptions()
    )
    grandchild = int(process.stdout.readline())
    assert alive(process.pid) and alive(grandchild)
    killProcessTree(process)
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(process.pid) and not alive(grandchild)
    process.stdout.close()


def test_windows_cancel_kills_the_tree_with_taskkill(monkeypatch):
    assert backgroundRun.windowsTreeKillCommand(4242) == ["taskkill", "/T", "/F", "/PID", "4242"]

    class FakeProcess:
        pid = 4242
        killed = False

        def poll(self):
            return 1 if self.killed else None

        def kill(self):
            self.killed = True

        def wait(self, timeout=None):
            return 1

    calls = []

    def runner(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(backgroundRun.os, "name", "nt")
    process = FakeProcess()
    killProcessTree(process, grace=0.1, runner=runner)
    assert calls == [["taskkill", "/T", "/F", "/PID", "4242"]]
    assert process.killed  # the fake taskkill did nothing: the launcher is killed directly as well


def test_engine_error_message_reaches_the_caller(tmp_path):
    (tmp_path / "weights.pth").write_bytes(b"\x80\x04")
    run = WorkerRun(np.zeros((2, 16, 16), np.int16), np.eye(4), model=str(tmp_path / "weights.pth"))
    run.start()
    assert run.wait(timeout=240)
    with pytest.raises(WorkerError, match="pickle checkpoint"):
        run.result()
    assert run.worker.isAlive()  # a serving worker survives a failed request
    run.cleanup()
    assert not run.worker.isAlive()


def test_idle_worker_exits_by_itself():
    worker = WarmWorker(idleTimeout=0.5)
    worker.start()
    process = worker._process
    assert process.wait(timeout=240) == 0
    worker._reader.join(timeout=10)
    events = []
    while not worker._events.empty():
        events.append(worker._events.get_nowait())
    kinds = [e.kind for e in events]
    assert kinds[0] == "ready" and kinds[-1] == "exit"  # the last: the process ended (status 0 above)
    assert any(e.kind == "exit" and e.data.get("reason") == "idle" for e in events)
    worker.kill()
