"""The Slicer module's Apply, timed: the first and the second background run of ``SegmentationLogic`` on one volume.

Runs on slicer-core (the real MRML scene, volume and segmentation nodes and module logics) with the headless
application of ``Testing/slicer`` standing in for the Qt parts slicer-core lacks. Apply in the module is
``logic.startRun(RunOptions(...))`` and the result appears when the run finishes, so each Apply is timed from
``startRun`` to the outcome (worker start-up, engine, creating the nodes). The first Apply starts the worker; the
second finds it warm when the logic keeps it.

``python tools/bench_slicer_apply.py VOLUME [--model default] [--device cpu]`` prints one line
``MORSE-BENCH-RESULT {json}`` (the protocol of ``morse bench``'s workloads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _headless_slicer():
    for folder in (ROOT / "Testing" / "slicer", ROOT / "MORSESegmentation"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    import slicerHarness
    import slicerStandIns

    slicerHarness.makeHeadlessSlicer()
    slicerStandIns.install()


def apply_twice(volume_path: str, model: str, device: str) -> dict:
    """Two Applies on the same volume node: seconds of each, and how the logic accounts for them."""
    _headless_slicer()
    from morse.imageio import read_image
    from MORSESegmentationLib.logic import RunOptions
    from MORSESegmentationLib.volumeArrays import addVolumeFromArray

    from MORSESegmentation import MORSESegmentationLogic

    image = read_image(volume_path)
    node = addVolumeFromArray(image.array, image.ijk_to_ras, "CT")
    logic = MORSESegmentationLogic()
    applies = []
    try:
        for _ in range(2):
            start = time.perf_counter()
            logic.startRun(RunOptions(inputVolume=node, model=model, device=device, replaceExisting=True))
            outcome = logic.waitForRun(timeout=3600)
            seconds = time.perf_counter() - start
            if outcome is None or outcome.status != "done":
                raise RuntimeError(f"Apply did not finish: {getattr(outcome, 'error', 'no outcome')}")
            applies.append(
                {
                    "seconds": seconds,
                    "worker_pid": outcome.workerPid,
                    "model_cached": bool(outcome.modelCached),
                    "startup_s": outcome.startupSeconds,
                    "model_s": outcome.modelSeconds,
                    "engine_s": float(outcome.timings.get("total", 0.0)),
                    "import_s": float(outcome.timings.get("import", 0.0)),
                }
            )
    finally:
        logic.shutdownWorker()
    return {
        "shape_kji": list(image.array.shape),
        "first": applies[0],
        "second": applies[1],
        "same_worker": applies[0]["worker_pid"] == applies[1]["worker_pid"],
        "api": "SegmentationLogic.startRun + waitForRun (the module's Apply)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("volume")
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        import slicer  # noqa: F401  (slicer-core)
    except ImportError:
        result = {"skipped": "slicer-core is not installed (pip install -e '.[test]')"}
    else:
        result = apply_twice(args.volume, args.model, args.device)
    print("MORSE-BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
