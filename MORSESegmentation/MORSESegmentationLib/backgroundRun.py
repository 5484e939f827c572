"""Run segmentations without blocking Slicer: a worker *process* that stays up between runs, polled by a timer.

Why a process and not a thread:

- Cancel is immediate and always works: the process tree is killed, even inside a long convolution. A thread can
  only stop where the engine polls its ``cancel`` hook (between batches: seconds to minutes on a CPU).
- A crash or an out-of-memory kill of the worker is reported as an error; Slicer keeps running.
- Inference never holds Slicer's GIL, so the GUI repaints smoothly, and no CUDA context is created in Slicer's
  process (torch is not imported there at all).

Why it stays up (:class:`WarmWorker`): importing torch and MONAI and loading the network cost several seconds, more
than segmenting a small volume. The worker pays that once per Slicer session; later runs reuse the network it holds.
It is shut down on scene close, module cleanup, after an idle timeout (the worker exits by itself), or when Slicer
exits (its stdin closes). A cancelled run kills it (the next run starts a fresh one): memory always comes back.

Arrays travel through ``.npy`` files in a temporary folder per run (uncompressed, exact: no resampling or LPS/RAS
conversion on the way); maps travel as uint8. The protocol is the one of :mod:`morse.inference.worker` (one JSON
request line on stdin, JSON event lines on stdout). No Qt in here: the module's logic calls :meth:`WorkerRun.poll`
from a ``qt.QTimer``; scripts and tests call :meth:`WorkerRun.wait`.
"""

from __future__ import annotations

import contextlib
import itertools
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
IDLE_TIMEOUT_S = 900.0  # a warm worker left alone this long exits and gives its memory back
KILL_GRACE_S = 3.0

log = logging.getLogger(__name__)


class WorkerError(MorseError):
    """The worker process failed; the message says why (the engine's own message where there is one)."""


@dataclass
class WorkerEvent:
    """One thing the worker reported. ``kind``: ready, started, device, model, progress, message, log, done, error,
    idle, exit (the process ended; ``data["returncode"]``)."""

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


def parseLine(line: str) -> WorkerEvent:
    """A :class:`WorkerEvent` from one line of the worker's output (a plain line is a ``log`` event)."""
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
    if kind in ("message", "error", "log"):
        return WorkerEvent(kind, text=str(data.get("text") or data.get("message") or ""), data=data)
    if kind == "device":
        return WorkerEvent(kind, text=str(data.get("message") or ""), data=data)
    return WorkerEvent(kind, data=data)


# ----------------------------------------------------------------------------------------------------------------------
# process trees


def processGroupOptions() -> dict:
    """``Popen`` options that make a process the root of a tree :func:`killProcessTree` can stop as a whole."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}  # its own process group: killpg reaches the children of a launcher too


def windowsTreeKillCommand(pid: int) -> list[str]:
    """The command that ends ``pid`` and every process it started on Windows. ``PythonSlicer.exe`` is a launcher
    that runs the real ``python.exe`` as its child: terminating the launcher alone leaves the run going."""
    return ["taskkill", "/T", "/F", "/PID", str(int(pid))]


def killProcessTree(process: subprocess.Popen, grace: float = KILL_GRACE_S, runner=subprocess.run) -> None:
    """Stop ``process`` and its descendants (started with :func:`processGroupOptions`); safe if already gone.

    POSIX: SIGTERM to the process group, SIGKILL after ``grace`` seconds. Windows: ``taskkill /T /F`` (the tree,
    forcibly), then ``kill()`` in case taskkill could not run.
    """
    if process.poll() is not None and os.name == "nt":
        return
    if os.name == "nt":
        try:
            runner(windowsTreeKillCommand(process.pid), capture_output=True, check=False, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("taskkill failed (%s); stopping the worker process only", exc)
        if process.poll() is None:
            process.kill()
        _reap(process, grace)
        return
    # The group outlives its leader: a launcher that already exited may have left the real Python running.
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        _reap(process, grace)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _groupAlive(process.pid):
        process.poll()
        time.sleep(0.02)
    if _groupAlive(process.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    _reap(process, grace)


def _groupAlive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _reap(process: subprocess.Popen, timeout: float) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("worker process %s did not exit", process.pid)


# ----------------------------------------------------------------------------------------------------------------------
# the warm worker


class WarmWorker:
    """One worker process (``python -m morse.inference.worker --serve``) that answers run requests one at a time.

    :meth:`submit` starts it when needed (it then imports torch and the engine: the ``ready`` event says how long
    that took) and sends a request; the :class:`WorkerRun` it returns receives that request's events.
    :meth:`shutdown` ends the process; :meth:`kill` ends it at once, with its whole process tree.
    """

    def __init__(self, python: str | None = None, idleTimeout: float = IDLE_TIMEOUT_S):
        self.python = python or pythonExecutable()
        self.idleTimeout = float(idleTimeout)
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._current: WorkerRun | None = None
        self.readyEvent: WorkerEvent | None = None
        self.startedAt = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def isAlive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.isAlive():
            return
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(MODULE_DIR)] + [p for p in [env.get("PYTHONPATH", "")] if p])
        env["PYTHONUNBUFFERED"] = "1"
        self._events = queue.Queue()
        self.readyEvent = None
        self.startedAt = time.monotonic()
        self._process = subprocess.Popen(
            [self.python, "-m", "morse.inference.worker", "--serve", "--idle-timeout", str(self.idleTimeout)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            cwd=tempfile.gettempdir(),
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **processGroupOptions(),
        )
        self._reader = threading.Thread(
            target=self._readOutput, args=(self._process, self._events), name="MORSE worker output", daemon=True
        )
        self._reader.start()

    @staticmethod
    def _readOutput(process: subprocess.Popen, events: queue.Queue) -> None:
        # A plain thread that only moves lines into a queue; the GUI thread consumes them in poll().
        for line in process.stdout:
            events.put(parseLine(line))
        process.stdout.close()
        events.put(WorkerEvent("exit", data={"returncode": process.wait()}))

    def submit(self, run: WorkerRun) -> None:
        """Send ``run``'s request (its files are written); starts the process first if it is not up."""
        if self._current is not None and self._current.isRunning():
            raise WorkerError("the worker is busy with another segmentation")
        self.start()
        run.requestID = str(next(self._ids))
        self._current = run
        line = json.dumps({"op": "segment", "id": run.requestID, "request": str(run.requestPath)}) + "\n"
        try:
            self._process.stdin.write(line)
            self._process.stdin.flush()
        except OSError:  # the worker died meanwhile (idle exit, killed): its exit event fails the run
            pass

    def poll(self) -> None:
        """Move the events that arrived into the current run (never blocks)."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event.kind == "ready":
                self.readyEvent = event
            target = self._current
            if target is None:
                continue
            eventID = event.data.get("id")
            if eventID is not None and str(eventID) != target.requestID:
                continue  # a late line of an earlier request
            target._record(event)
            if event.kind == "exit" or (event.kind in ("done", "error") and eventID is not None):
                target._ended = True  # its outcome is known; the worker is free for the next run
                self._current = None

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit (it finishes nothing half-way: a running request is killed)."""
        process = self._process
        if process is None:
            return
        if self._current is not None and self._current.isRunning():
            self.kill()
            return
        if process.poll() is None:
            try:
                process.stdin.write(json.dumps({"op": "shutdown"}) + "\n")
                process.stdin.flush()
                process.stdin.close()
                process.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                killProcessTree(process)
        self._finish()

    def kill(self) -> None:
        """End the worker and everything it started, now."""
        if self._process is not None:
            killProcessTree(self._process)
        self._finish()

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.poll()  # the exit event reaches a run still waiting for it
        for stream in (self._process.stdin,) if self._process is not None else ():
            with contextlib.suppress(OSError):
                stream.close()
        self._process = None
        self._reader = None


class WorkerRun:
    """One segmentation request on a :class:`WarmWorker` (a worker of its own when none is given).

    Usage (what the logic does with a timer)::

        run = WorkerRun(volumeKJI, ijkToRas, model="default", device="auto", worker=warmWorker)
        run.start()
        while run.isRunning():
            for event in run.poll():
                ...                     # progress bar, log
        result = run.result()           # SegmentationResult (maps uint8 0..255); WorkerError / CancelledError
        run.cleanup()                   # delete the temporary folder

    ``cancel()`` kills the worker's process tree and makes :meth:`result` raise :class:`CancelledError`.
    ``modelCached`` tells whether the worker reused a network it already held (no model load).
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
        postprocess: bool | None = True,
        review: bool = True,
        python: str | None = None,
        workDir: str | Path | None = None,
        worker: WarmWorker | None = None,
    ):
        self._ownsWorker = worker is None
        self.worker = worker or WarmWorker(python=python)
        self._ownsWorkDir = workDir is None
        self.workDir = Path(workDir) if workDir else Path(tempfile.mkdtemp(prefix="morse-run-"))
        self.requestPath = self.workDir / "request.json"
        self.requestID = ""
        self.request = {
            "input": "input.npy",
            "ijk_to_ras": np.asarray(ijkToRas, dtype=float).tolist(),
            "model": str(model),
            "device": device,
            "refine": bool(refine),
            "gating": bool(gating),
            "uncertainty": bool(uncertainty),
            "postprocess": None if postprocess is None else bool(postprocess),
            "maps_uint8": bool(mapsUint8),
            "review": bool(review),
            "output": "result",
        }
        self._volume = volume
        self._started = False
        self._ended = False
        self._pending: list[WorkerEvent] = []
        self._cancelled = False
        self._error: WorkerEvent | None = None
        self._done: WorkerEvent | None = None
        self._returnCode: int | None = None
        self._logTail: list[str] = []
        self.device = ""
        self.deviceMessage = ""
        self.modelCached: bool | None = None
        self.modelSeconds: float | None = None
        self.pid: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        np.save(self.workDir / "input.npy", np.ascontiguousarray(self._volume), allow_pickle=False)
        self._volume = None  # the file holds it now; do not keep a second copy alive
        self.requestPath.write_text(json.dumps(self.request), encoding="utf-8")
        self.worker.submit(self)
        self.pid = self.worker.pid
        self._started = True

    def isRunning(self) -> bool:
        """True from :meth:`start` until its outcome (done, error or the worker's exit) has been polled."""
        return self._started and not (self._ended and not self._pending)

    def poll(self) -> list[WorkerEvent]:
        """The events of this run that arrived since the last call (never blocks)."""
        self.worker.poll()
        events, self._pending = self._pending, []
        return events

    def _record(self, event: WorkerEvent) -> None:
        if event.kind == "exit":
            self._returnCode = int(event.data.get("returncode", -1))
        elif event.kind == "error":
            self._error = event
        elif event.kind == "done":
            self._done = event
        elif event.kind == "device":
            self.device = str(event.data.get("device", ""))
            self.deviceMessage = event.text
        elif event.kind == "model":
            self.modelCached = bool(event.data.get("cached"))
            self.modelSeconds = float(event.data.get("seconds", 0.0))
        elif event.kind == "log":
            self._logTail = [*self._logTail, event.text][-20:]
        self._pending.append(event)

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
        return True

    def cancel(self) -> None:
        """Stop the run now: its worker's process tree is killed. Safe to call at any time, more than once."""
        self._cancelled = True
        if self._started and not self._ended:
            self.worker.kill()
            self._ended = True

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
        if self._done is None:
            tail = "\n".join(self._logTail[-8:])
            hint = " (killed: out of memory?)" if self._returnCode in (-9, 137) else ""
            raise WorkerError(f"the segmentation process ended with status {self._returnCode}{hint}.\n{tail}".strip())
        from morse.inference.worker import read_result

        return read_result(Path(self._done.data["output"]))

    def cleanup(self) -> None:
        """Delete the temporary files (input, result). Cancels first if still running; a worker of its own ends."""
        if self.isRunning():
            self.cancel()
        if self._ownsWorker:
            self.worker.shutdown()
        if self._ownsWorkDir:
            shutil.rmtree(self.workDir, ignore_errors=True)
        else:
            logging.debug("MORSE worker files kept in %s", self.workDir)
