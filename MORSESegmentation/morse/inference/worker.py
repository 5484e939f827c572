"""Run segmentations in a separate process, for a GUI that must stay responsive (the 3D Slicer module).

    python -m morse.inference.worker --serve [--idle-timeout SECONDS]    # warm worker: many requests
    python -m morse.inference.worker REQUEST.json                        # one request, then exit

Why a process (and not a thread) in Slicer: the GUI can cancel by killing it at any moment, even in the middle of a
convolution; all memory (model, CUDA caches) is returned to the system when it ends; a crash or an out-of-memory
kill cannot take the application down; and torch is never imported into the application process.

Why it stays up (``--serve``): importing torch and MONAI and loading a model take seconds, far more than segmenting
a small volume. A serving worker pays that once; later requests for the same model pack and device reuse the network
it holds (the ``model`` event says ``"cached": true``). It exits when stdin closes (the application quit or dropped
it), on a ``shutdown`` request, or after ``--idle-timeout`` seconds without a request.

Requests, one JSON object per line on stdin::

    {"op": "segment", "id": "3", "request": "RUN_FOLDER/request.json"}
    {"op": "shutdown"}

Request file (JSON, written by the caller)::

    {"input": "input.npy",            # (K, J, I) volume, any real dtype; relative paths are relative to the JSON
     "ijk_to_ras": [[...4x4...]],
     "model": "default" | model id | model-pack folder,
     "device": "auto" | "cpu" | "cuda" | "cuda:N" | "mps",
     "refine": true, "gating": true, "uncertainty": true,
     "postprocess": true,             # anatomical post-processing (null: as the model pack says)
     "maps_uint8": true,              # gate/uncertainty maps as round(value*255) uint8 (1/4 of float32)
     "review": true,                  # also the review list (morse.uncertainty.review; default false)
     "output": "result"}              # folder for the result, created

Result folder: ``labels.npy``, ``coarse_labels.npy`` (uint8), and when computed ``gating.npy`` (N, K, J, I),
``dominant_expert.npy``, ``uncertainty.npy``, ``rectified.npy``, plus ``result.json`` (labels, model id/version,
device, timings, messages, post-processing and domain reports, the review list when asked for; the maps' dtype is
that of their ``.npy``). Read it back with :func:`read_result`.

Events go to stdout as one JSON object per line, each prefixed with ``MORSE-EVENT``; those about a request carry its
``id``::

    {"event": "ready", "pid": .., "python": "..", "seconds": 2.1}       (serving: torch and the engine imported)
    {"event": "started", "pid": ..}                                     (a request was taken)
    {"event": "device", "device": "cpu", "message": ".."|null}          (resolved once per request)
    {"event": "model", "cached": false, "seconds": 1.3}                 (network built, or reused)
    {"event": "progress", "stage": "segmenting", "fraction": 0.4}
    {"event": "message", "text": ".."}   {"event": "log", "level": "WARNING", "text": ".."}
    {"event": "done", "output": "..", "timings": {..}}
    {"event": "error", "kind": "ModelPackError", "message": ".."}
    {"event": "exit", "reason": "idle" | "shutdown" | "end of input"}

Any other line on stdout/stderr is library output for the log. Exit status of a one-shot run: 0 done, 2 a
:class:`MorseError` (message in the error event), 1 anything else (traceback on stderr). A serving worker reports
each request's failure as an ``error`` event and goes on. This module never imports Slicer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from ..labels import labels_from_json, labels_to_json

EVENT_PREFIX = "MORSE-EVENT "
ARRAYS = ("labels", "coarse_labels", "gating", "dominant_expert", "uncertainty", "rectified")
DEFAULT_IDLE_TIMEOUT_S = 900.0
_EMIT_LOCK = threading.Lock()


def emit(event: str, **fields) -> None:
    """Write one event line to stdout and flush, so the reader sees it at once."""
    line = EVENT_PREFIX + json.dumps({"event": event, **fields}) + "\n"
    with _EMIT_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


def write_result(result, folder: str | Path) -> Path:
    """Write a :class:`SegmentationResult` as ``.npy`` files + ``result.json`` into ``folder``; the maps keep their
    dtype (uint8 when the run asked :func:`segment_volume` for ``maps_uint8``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ARRAYS:
        value = getattr(result, name)
        if value is None:
            continue
        np.save(folder / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)
    meta = {
        "ijk_to_ras": np.asarray(result.ijk_to_ras, dtype=float).tolist(),
        "labels_info": labels_to_json(result.labels_info),
        "model_id": result.model_id,
        "model_version": result.model_version,
        "device": result.device,
        "timings": result.timings,
        "messages": result.messages,
        "postprocess": result.postprocess,
        "domain": result.domain,
        "intended_use": result.intended_use,
        "review": result.review,
    }
    (folder / "result.json").write_text(json.dumps(meta, indent=1, default=_jsonable), encoding="utf-8")
    return folder


def _jsonable(value):
    """numpy scalars and arrays in the reports, as plain JSON numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_result(folder: str | Path):
    """The :class:`SegmentationResult` written by :func:`write_result`. Maps keep the dtype they were written in
    (uint8 0..255 ↔ 0..1 when the request asked for ``maps_uint8``); nothing is unpickled."""
    from .result import SegmentationResult

    folder = Path(folder)
    meta = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    arrays = {}
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        arrays[name] = np.load(path, allow_pickle=False) if path.is_file() else None
    labels_info = labels_from_json(meta["labels_info"])
    return SegmentationResult(
        labels=arrays["labels"],
        coarse_labels=arrays["coarse_labels"],
        ijk_to_ras=np.asarray(meta["ijk_to_ras"], dtype=np.float64),
        labels_info=labels_info,
        gating=arrays["gating"],
        dominant_expert=arrays["dominant_expert"],
        uncertainty=arrays["uncertainty"],
        rectified=arrays["rectified"],
        model_id=meta.get("model_id", ""),
        model_version=meta.get("model_version", ""),
        device=meta.get("device", "cpu"),
        timings=dict(meta.get("timings", {})),
        messages=list(meta.get("messages", [])),
        postprocess=dict(meta.get("postprocess", {})),
        domain=dict(meta.get("domain", {})),
        intended_use=str(meta.get("intended_use", "")),
        review=meta.get("review"),
    )


class _EventLogHandler(logging.Handler):
    """Library warnings as ``log`` events of the request in hand (so the caller can show each text once)."""

    def __init__(self, state: _WorkerState):
        super().__init__(logging.WARNING)
        self.state = state

    def emit(self, record: logging.LogRecord) -> None:
        try:
            emit("log", id=self.state.request_id, level=record.levelname, text=record.getMessage())
        except Exception:  # logging must never break a run
            self.handleError(record)


class _WorkerState:
    """What a serving worker keeps between requests: the loaded model packs (by folder and file stamps)."""

    def __init__(self):
        self.request_id: str | None = None
        self.packs: dict[tuple, object] = {}

    def pack(self, model: str):
        """The :class:`ModelPack` for ``model``; re-read only when its files changed."""
        from ..modelpack import load_model_pack, resolve_model_path

        folder = resolve_model_path(model)
        stamps = tuple(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix in (".json", ".safetensors")
        )
        key = (str(folder.resolve()), stamps)
        if key not in self.packs:
            self.packs.clear()  # one pack at a time: the network of the last one is what the pipeline keeps
            self.packs[key] = load_model_pack(folder)
        return self.packs[key]


def _execute(request: dict, base: Path, state: _WorkerState) -> Path:
    """Run one request (already parsed); return the result folder. Raises what the engine raises."""
    from ..device import resolve_device
    from . import pipeline

    def resolve(p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else base / path

    volume = np.load(resolve(request["input"]), allow_pickle=False)
    pack = state.pack(request.get("model", "default"))
    # Resolved here, once: the engine is then handed the device actually used, so a fallback is reported (and
    # logged) a single time.
    choice = resolve_device(request.get("device", "auto"), pack.config.spatial_dims)
    emit("device", id=state.request_id, device=choice.name, message=choice.message)
    before = list(pipeline._MODEL_CACHE.values())
    started = time.perf_counter()
    net = pipeline.get_model(pack, choice.device)
    emit(
        "model",
        id=state.request_id,
        cached=any(net is held for held in before),
        seconds=round(time.perf_counter() - started, 4),
    )
    last = {"t": 0.0, "stage": None}

    def progress(stage: str, fraction: float) -> None:
        now = time.monotonic()
        # At most ~10 lines a second, but every stage change gets through.
        if stage != last["stage"] or now - last["t"] >= 0.1 or fraction >= 1.0:
            last.update(t=now, stage=stage)
            emit("progress", id=state.request_id, stage=stage, fraction=round(float(fraction), 4))

    postprocess = request.get("postprocess")
    result = pipeline.segment_volume(
        volume,
        np.asarray(request["ijk_to_ras"], dtype=np.float64),
        model=pack,
        device=str(choice.device),
        refine=bool(request.get("refine", True)),
        gating=bool(request.get("gating", True)),
        uncertainty=bool(request.get("uncertainty", True)),
        progress=progress,
        maps_uint8=bool(request.get("maps_uint8", True)),
        postprocess=None if postprocess is None else bool(postprocess),
        review=bool(request.get("review", False)),
    )
    if choice.message and choice.message not in result.messages:
        result.messages.insert(0, choice.message)  # the result tells the whole story, as an in-process run's does
    for text in result.messages:
        if text != choice.message:  # already in the device event
            emit("message", id=state.request_id, text=text)
    return write_result(result, resolve(request.get("output", "result")))


def _handle(request_path: str | Path, state: _WorkerState) -> int:
    """One request with its events; returns 0 done, 2 a :class:`MorseError`, 1 anything else."""
    from ..errors import MorseError

    emit("started", id=state.request_id, pid=os.getpid(), python=sys.executable)
    try:
        request_path = Path(request_path)
        request = json.loads(request_path.read_text(encoding="utf-8"))
        started = time.perf_counter()
        out = _execute(request, request_path.parent, state)
        timings = json.loads((out / "result.json").read_text(encoding="utf-8")).get("timings", {})
        emit("done", id=state.request_id, output=str(out), timings=timings, seconds=time.perf_counter() - started)
        return 0
    except MorseError as exc:
        emit("error", id=state.request_id, kind=type(exc).__name__, message=str(exc))
        return 2
    except Exception as exc:  # a bug: report it, with the traceback for the log
        traceback.print_exc()
        emit("error", id=state.request_id, kind=type(exc).__name__, message=f"unexpected error: {exc}")
        return 1


def _install_log_handler(state: _WorkerState) -> None:
    root = logging.getLogger()
    root.addHandler(_EventLogHandler(state))
    root.setLevel(min(root.level or logging.WARNING, logging.WARNING))


def run(request_path: str | Path) -> int:
    """Execute one request (see the module docstring); return the exit status."""
    state = _WorkerState()
    _install_log_handler(state)
    return _handle(request_path, state)


def _stdin_lines(lines: queue.Queue) -> None:
    for line in sys.stdin:
        lines.put(line)
    lines.put(None)  # end of input: the caller is gone


def serve(idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S) -> int:
    """Answer requests from stdin until ``shutdown``, end of input or ``idle_timeout`` seconds without one."""
    started = time.perf_counter()
    from . import pipeline  # noqa: F401  (torch, MONAI and the engine: imported once, before the first request)

    state = _WorkerState()
    _install_log_handler(state)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_stdin_lines, args=(lines,), name="MORSE requests", daemon=True).start()
    emit("ready", pid=os.getpid(), python=sys.executable, seconds=round(time.perf_counter() - started, 3))
    while True:
        try:
            line = lines.get(timeout=idle_timeout if idle_timeout > 0 else None)
        except queue.Empty:
            emit("exit", reason="idle")
            return 0
        if line is None:
            emit("exit", reason="end of input")
            return 0
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            emit("error", kind="ProtocolError", message=f"not a JSON request: {line.strip()[:200]}")
            continue
        op = message.get("op")
        if op == "shutdown":
            emit("exit", reason="shutdown")
            return 0
        if op != "segment" or "request" not in message:
            emit("error", id=message.get("id"), kind="ProtocolError", message=f"unknown request: {line.strip()[:200]}")
            continue
        state.request_id = str(message.get("id", ""))
        try:
            _handle(message["request"], state)
        finally:
            state.request_id = None
        emit("idle")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m morse.inference.worker", description=__doc__.split("\n")[0])
    parser.add_argument("request", nargs="?", help="request JSON file (one run, then exit)")
    parser.add_argument("--serve", action="store_true", help="answer requests from stdin (one JSON line each)")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_S,
        help="seconds without a request after which a serving worker exits (0: never)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve == bool(args.request):
        parser.print_usage(sys.stderr)
        sys.stderr.write("error: give either REQUEST.json or --serve\n")
        return 2
    return serve(args.idle_timeout) if args.serve else run(args.request)


if __name__ == "__main__":
    sys.exit(main())
