"""Run one segmentation in a separate process, for a GUI that must stay responsive (the 3D Slicer module).

    python -m morse.inference.worker REQUEST.json

Why a process (and not a thread) in Slicer: the GUI can cancel by killing it at any moment, even in the middle of a
convolution; all memory (model, CUDA caches) is returned to the system when it ends; a crash or an out-of-memory
kill cannot take the application down; and torch is never imported into the application process.

Request (JSON, written by the caller)::

    {"input": "input.npy",            # (K, J, I) volume, any real dtype; relative paths are relative to the JSON
     "ijk_to_ras": [[...4x4...]],
     "model": "default" | model id | model-pack folder,
     "device": "auto" | "cpu" | "cuda" | "mps",
     "refine": true, "gating": true, "uncertainty": true,
     "maps_uint8": true,              # store gate/uncertainty maps as round(value*255) uint8 (1/4 of float32)
     "output": "result"}              # folder for the result, created

Result folder: ``labels.npy``, ``coarse_labels.npy`` (uint8), and when computed ``gating.npy`` (N, K, J, I),
``dominant_expert.npy``, ``uncertainty.npy``, ``rectified.npy``, plus ``result.json`` (labels, model id/version,
device, timings, messages; the maps' dtype is that of their ``.npy``). Read it back with :func:`read_result`.

Progress goes to stdout as one JSON object per line, each prefixed with ``MORSE-EVENT``::

    {"event": "started", "pid": ..}   {"event": "device", "device": "cpu", "message": ".."|null}
    {"event": "progress", "stage": "segmenting", "fraction": 0.4}   {"event": "message", "text": ".."}
    {"event": "done", "output": ".."}  {"event": "error", "kind": "ModelPackError", "message": ".."}

Any other line on stdout/stderr is library output for the log. Exit status: 0 done, 2 a :class:`MorseError` (message
in the error event), 1 anything else (traceback on stderr). This module never imports Slicer.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from ..labels import labels_from_json, labels_to_json

EVENT_PREFIX = "MORSE-EVENT "
ARRAYS = ("labels", "coarse_labels", "gating", "dominant_expert", "uncertainty", "rectified")


def emit(event: str, **fields) -> None:
    """Write one event line to stdout and flush, so the reader sees it at once."""
    sys.stdout.write(EVENT_PREFIX + json.dumps({"event": event, **fields}) + "\n")
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
    }
    (folder / "result.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return folder


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
    )


def run(request_path: str | Path) -> int:
    """Execute one request (see the module docstring); return the exit status."""
    from ..errors import MorseError

    emit("started", pid=os.getpid(), python=sys.executable)
    try:
        request_path = Path(request_path)
        request = json.loads(request_path.read_text(encoding="utf-8"))
        base = request_path.parent

        def resolve(p: str) -> Path:
            path = Path(p)
            return path if path.is_absolute() else base / path

        from ..device import resolve_device
        from ..modelpack import load_model_pack
        from .pipeline import segment_volume

        volume = np.load(resolve(request["input"]), allow_pickle=False)
        pack = load_model_pack(request.get("model", "default"))
        choice = resolve_device(request.get("device", "auto"), pack.config.spatial_dims)
        emit("device", device=choice.name, message=choice.message)
        last = {"t": 0.0, "stage": None}

        def progress(stage: str, fraction: float) -> None:
            now = time.monotonic()
            # At most ~10 lines a second, but every stage change gets through.
            if stage != last["stage"] or now - last["t"] >= 0.1 or fraction >= 1.0:
                last.update(t=now, stage=stage)
                emit("progress", stage=stage, fraction=round(float(fraction), 4))

        result = segment_volume(
            volume,
            np.asarray(request["ijk_to_ras"], dtype=np.float64),
            model=pack,
            device=request.get("device", "auto"),
            refine=bool(request.get("refine", True)),
            gating=bool(request.get("gating", True)),
            uncertainty=bool(request.get("uncertainty", True)),
            progress=progress,
            maps_uint8=bool(request.get("maps_uint8", True)),
        )
        for text in result.messages:
            emit("message", text=text)
        out = write_result(result, resolve(request.get("output", "result")))
        emit("done", output=str(out), timings=result.timings)
        return 0
    except MorseError as exc:
        emit("error", kind=type(exc).__name__, message=str(exc))
        return 2
    except Exception as exc:  # a bug: report it, with the traceback for the log
        traceback.print_exc()
        emit("error", kind=type(exc).__name__, message=f"unexpected error: {exc}")
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m morse.inference.worker REQUEST.json\n")
        return 2
    return run(argv[0])


if __name__ == "__main__":
    sys.exit(main())
