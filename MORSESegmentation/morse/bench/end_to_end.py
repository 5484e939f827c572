"""What a user of ``morse segment`` waits for: the command's wall time from the first byte read to the last file
written, and where it went.

The command runs unchanged in this process (``morse.cli.main``); its three steps (reading the image, segmenting,
writing every output file) are timed where :mod:`morse.inference.segment_command` calls them, and the segmenting
step is split by the engine's own stage timings (``SegmentationResult.timings``).
"""

from __future__ import annotations

import time

# the engine's stage keys → the rows of the report, in the order a run goes through them
ENGINE_STAGES = (
    ("preprocess", "preprocess (reorient, normalise, resize)"),
    ("backbone", "backbone"),
    ("refine", "refinement (rendering head)"),
    ("gating", "maps: gate weights"),
    ("to_input_grid", "maps and labels back on the input grid"),
    ("postprocess", "post-processing (anatomy, domain check)"),
)


def segment_stages(path: str, model: str, out_dir: str, device: str = "cpu") -> dict:
    """``morse segment PATH -o OUT_DIR`` with every output: wall seconds in all, and per step and engine stage."""
    from ..cli import main
    from ..inference import segment_command

    steps: dict[str, float] = {}
    engine: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                steps[name] = steps.get(name, 0.0) + time.perf_counter() - start

        return wrapper

    def segmented(*args, **kwargs):
        result = original_segment(*args, **kwargs)
        engine.update(result.timings)
        return result

    original = segment_command.read_image, segment_command.segment_volume, segment_command.write_case
    original_segment = original[1]
    segment_command.read_image = timed("read", original[0])
    segment_command.segment_volume = timed("segment", segmented)
    segment_command.write_case = timed("write", original[2])
    try:
        start = time.perf_counter()
        code = main(["segment", path, "-o", out_dir, "--model", model, "--device", device, "--overwrite"])
        seconds = time.perf_counter() - start
    finally:
        segment_command.read_image, segment_command.segment_volume, segment_command.write_case = original
    if code != 0:
        raise RuntimeError(f"morse segment exited with {code}")
    return {"seconds": seconds, "steps": steps, "engine": engine}


def stage_rows(run: dict) -> list[tuple[str, float]]:
    """``(stage, seconds)`` from reading to writing; what the named stages leave of the wall time is its own row
    (loading the model, the command's checks, the summary)."""
    steps, engine = run["steps"], run["engine"]
    rows = [("read the image", steps.get("read", 0.0))]
    rows += [(label, engine.get(key, 0.0)) for key, label in ENGINE_STAGES]
    rows.append(("write every output file", steps.get("write", 0.0)))
    named = sum(seconds for _, seconds in rows)
    rows.append(("the rest (model load, checks, summary)", max(0.0, run["seconds"] - named)))
    return rows
