"""Run a segmentation without blocking Slicer: a worker *process* polled by a timer.

Why a process and not a thread:

- Cancel is immediate and always works: the process is killed, even inside a long convolution. A thread can only
  stop where the engine polls its ``cancel`` hook (between batches: seconds to minutes on a CPU).
- Memory comes back: the model, its activations and CUDA caches die with the process. In a thread they stay in
  Slicer's process until the allocator decides otherwise (the MONAIAuto3DSeg / nnU-Net extensions do the same).
- A crash or an out-of-memory kill of the worker is reported as an error; Slicer keeps running.
- Inference never holds Slicer's GIL, so the GUI repaints smoothly, and no CUDA context is created in Slicer's
  process (torch is imported there only to validate a model pack, see modelCatalog).

The cost is ~2-4 s of process start and model load per run, and passing arrays through files. The files are
``.npy`` (uncompressed, exact: no resampling or LPS/RAS conversion on the way); maps travel as uint8.

The protocol is the one of :mod:`morse.inference.worker` (JSON event lines on stdout). This class has no Qt in it:
the widget calls :meth:`WorkerRun.poll` from a ``qt.QTimer``; scripts and tests call it in a loop.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from morse.errors import CancelledError, MorseError
from morse.inference.worker import EVENT_PREFIX

MODULE_DIR = Path(__file__).resolve().parents[1]  # the folder that holds the ``morse`` package


class WorkerError(MorseError):
    """The worker process failed; the message says why (the engine's own message where there is one)."""


@dataclass
class WorkerEvent:
    """One thing the worker reported. ``kind``: started, device, progress, message, done, error, log, exit."""

    kind: str
    stage: str = ""
    fraction: float = 0.0
    text: str = ""
    data: dict = field(default_factory=dict)


def pythonExecutable() -> str:
    """The Python that runs the worker: ``PythonSlicer`` inside the Slicer application (``sys.executable`` is the
    application there), otherwise this interpreter."""
    try:
        import slicer

        if getattr(slicer, "app", None) is not None:
            found = shutil.which("PythonSlicer")
            if found:
                return found
    except ImportError:
        pass
    return sys.executable


def _parseLine(line: str) -> WorkerEvent:
    line = line.rstrip("\r\n")
    if not line.startswith(EVENT_PREFIX):
        return WorkerEvent("log", text=line)
    try:
        data = json.loads(line[len(EVENT_PREFIX) :])
    except json.JSONDecodeError:
        return WorkerEvent("log", text=line)
    kind = data.get("event", "log")
    if kind == "progress":
        return WorkerEvent(kind, stage=str(data.get("stage", "")), fraction=float(data.get("fraction", 0.0)), data=data)
    if kind in ("message", "error"):
        return WorkerEvent(kind, text=str(data.get("text") or data.get("message") or ""), data=data)
    if kind == "device":
        return WorkerEvent(kind, text=str(data.get("message") or ""), data=data)
    return WorkerEvent(kind, data=data)


class WorkerRun:
    """One segmentation in a worker process.

    Usage (what the widget does with a 200 ms timer)::

        run = WorkerRun(volumeKJI, ijkToRas, model="default", device="auto")
        run.start()
        while run.isRunning():
            for event in run.poll():
                ...                     # progress bar, log
        result = run.result()           # SegmentationResult (maps uint8 0..255); WorkerError / CancelledError
        run.cleanup()                   # delete the temporary folder

    ``cancel()`` kills the process (and its children) and makes :meth:`result` raise :class:`CancelledError`.
    """

    def __init__(
        self,
        volume: np.ndarray,
        ijkToRas: np.ndarray,
        model: str = "default",
        device: str = "auto",
        refine: bool = True,
        gating: bool = True,
        uncertainty: bool = True,
        mapsUint8: bool = True,
        python: str | None = None,
        workDir: str | Path | None = None,
    ):
        self.python = python or pythonExecutable()
        self._ownsWorkDir = workDir is None
        self.workDir = Path(workDir) if workDir else Path(tempfile.mkdtemp(prefix="morse-run-"))
        self.request = {
            "input": "input.npy",
            "ijk_to_ras": np.asarray(ijkToRas, dtype=float).tolist(),
            "model": str(model),
            "device": device,
            "refine": bool(refine),
            "gating": bool(gating),
            "uncertainty": bool(uncertainty),
            "maps_uint8": bool(mapsUint8),
            "output": "result",
        }
        self._volume = volume
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None
        self._cancelled = False
        self._error: WorkerEvent | None = None
        self._done: WorkerEvent | None = None
        self._returnCode: int | None = None
        self._logTail: list[str] = []
        self.device = ""
        self.deviceMessage = ""

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        np.save(self.workDir / "input.npy", np.ascontiguousarray(self._volume), allow_pickle=False)
        self._volume = None  # the file holds it now; do not keep a second copy alive
        requestPath = self.workDir / "request.json"
        requestPath.write_text(json.dumps(self.request), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(MODULE_DIR)] + [p for p in [env.get("PYTHONPATH", "")] if p])
        env["PYTHONUNBUFFERED"] = "1"
        kwargs = {}
        if os.name == "nt":
            # No console window; own process group so that cancel can stop it and its children.
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        self._process = subprocess.Popen(
            [self.python, "-m", "morse.inference.worker", str(requestPath)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(self.workDir),
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        self._reader = threading.Thread(target=self._readOutput, name="MORSE worker output", daemon=True)
        self._reader.start()

    def _readOutput(self) -> None:
        # Runs on a plain thread: it only moves lines into a queue; the GUI thread consumes them in poll().
        for line in self._process.stdout:
            self._events.put(_parseLine(line))
        self._process.stdout.close()
        self._events.put(WorkerEvent("exit", data={"returncode": self._process.wait()}))

    def isRunning(self) -> bool:
        """True until the process has exited *and* all its output has been polled."""
        return self._process is not None and self._returnCode is None

    def poll(self) -> list[WorkerEvent]:
        """The events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            events.append(self._record(event))
        return events

    def _record(self, event: WorkerEvent) -> WorkerEvent:
        if event.kind == "exit":
            self._returnCode = int(event.data.get("returncode", -1))
        elif event.kind == "error":
            self._error = event
        elif event.kind == "done":
            self._done = event
        elif event.kind == "device":
            self.device = str(event.data.get("device", ""))
            self.deviceMessage = event.text
        elif event.kind == "log":
            self._logTail = [*self._logTail, event.text][-20:]
        return event

    def wait(self, timeout: float | None = None, onEvent=None) -> bool:
        """Block until the run ended (for scripts and tests); ``onEvent(event)`` sees every event. True if ended."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.isRunning():
            for event in self.poll():
                if onEvent:
                    onEvent(event)
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(0.02)
        for event in self.poll():
            if onEvent:
                onEvent(event)
        return True

    def cancel(self) -> None:
        """Stop the worker now (terminate, then kill after 3 s). Safe to call at any time, more than once."""
        self._cancelled = True
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            if os.name == "nt":
                process.terminate()
            else:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            if os.name == "nt":
                process.kill()
            else:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=3)
        except (ProcessLookupError, PermissionError):
            pass

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    # -- outcome ---------------------------------------------------------------------------------------------------

    def result(self):
        """The :class:`SegmentationResult` of a finished run; raises :class:`CancelledError` or :class:`WorkerError`."""
        if self._cancelled:
            raise CancelledError()
        if self.isRunning():
            raise WorkerError("the segmentation is still running")
        if self._error is not None:
            raise WorkerError(self._error.text)
        if self._returnCode != 0 or self._done is None:
            tail = "\n".join(self._logTail[-8:])
            hint = " (killed: out of memory?)" if self._returnCode in (-9, 137) else ""
            raise WorkerError(f"the segmentation process ended with status {self._returnCode}{hint}.\n{tail}".strip())
        from morse.inference.worker import read_result

        return read_result(Path(self._done.data["output"]))

    def cleanup(self) -> None:
        """Delete the temporary files (input, result). Cancels first if still running."""
        if self._process is not None and self._process.poll() is None:
            self.cancel()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._ownsWorkDir:
            shutil.rmtree(self.workDir, ignore_errors=True)
        else:
            logging.debug("MORSE worker files kept in %s", self.workDir)
