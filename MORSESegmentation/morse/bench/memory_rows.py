"""Memory rows of ``morse bench``: the estimated against the measured peak of ``morse segment`` with every output.

For each size (512×512×{100, 300, 600} by default) a synthetic CT-like volume is written once, then one fresh child
process runs ``morse segment`` on it with the shipped default pack (refined labels, gating maps, uncertainty, every
file) and reports:

- the estimate :func:`morse.inference.memory.plan_inference` logged before running (what it checks against the free
  memory), taken from its log record;
- the growth of the child's resident memory during the run: the child first segments a 2-slice phantom the same
  way (so that libraries, the network and its kernels are loaded, as in a Slicer session or for the second case of
  ``morse segment``), then Linux's peak counter (``VmHWM``) is reset and the run's peak is compared with the resident
  memory before it; the process's own peak (``getrusage``) is reported too (the 6 GB target);
- the peak of each stage (reading, inference, writing), from a thread that samples the resident memory.

The sizes run one after the other, each in its own process, so their peaks are independent.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SIZES = (100, 300, 600)
TOLERANCE = 0.20  # the estimate should lie within ±20 % of the measured growth
PEAK_TARGET_GB = 6.0  # the 600-slice CT with every output
RESULT_PREFIX = "MORSE-MEMORY-RESULT "


# ----------------------------------------------------------------------------------------------------------------------
# the synthetic CT


def synthetic_ct_slice(k: int, slices: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """One (size, size) int16 axial slice in Hounsfield units of an abdomen-like phantom: air, a body ellipse of soft
    tissue under a fat layer, a liver, kidneys and a spine that change along z, and scanner noise."""
    rng = np.random.default_rng(seed + k)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size / 2) - 1
    t = k / max(1, slices - 1)
    hu = np.full((size, size), -1000, np.float32)
    body = (x / 0.82) ** 2 + (y / 0.62) ** 2 < 1
    hu[body] = -100  # subcutaneous fat
    inner = (x / 0.74) ** 2 + (y / 0.54) ** 2 < 1
    hu[inner] = 40
    liver_r = 0.32 * max(0.0, 1 - abs(t - 0.35) / 0.35)
    hu[((x + 0.3) / 1.2) ** 2 + ((y + 0.05) / 0.9) ** 2 < liver_r**2] = 60
    kidney_r = 0.1 * max(0.0, 1 - abs(t - 0.55) / 0.2)
    for side in (-0.28, 0.28):
        hu[(x - side) ** 2 + ((y - 0.25) / 1.3) ** 2 < kidney_r**2] = 30
    hu[x**2 + (y - 0.42) ** 2 < 0.08**2] = 450  # vertebra
    hu[((x + 0.05) ** 2 + (y + 0.1) ** 2 < 0.05**2)] = 150  # aorta with contrast
    hu += rng.normal(0, 12, hu.shape).astype(np.float32)
    return np.clip(hu, -1024, 3071).astype(np.int16)


def write_synthetic_ct(path: Path, slices: int, size: int = 512) -> Path:
    """A size×size×slices CT-like NIfTI (0.75 × 0.75 × 1.5 mm, LPS storage) streamed slice by slice (constant
    memory). Cached: an existing file is kept."""
    from ..nifti_writer import nifti_header, write_gzip_stream

    path = Path(path)
    if path.is_file():
        return path
    m = np.diag([-0.75, -0.75, 1.5, 1.0])  # IJK→RAS of an LPS-stored scan
    m[:3, 3] = (size * 0.375, size * 0.375, -slices * 0.75)

    def pieces():
        yield nifti_header((slices, size, size), np.int16, m, description="MORSE synthetic CT phantom")
        for k in range(slices):
            yield synthetic_ct_slice(k, slices, size).tobytes()

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    write_gzip_stream(tmp, pieces())
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# the child process


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _peak_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * 1024 if sys.platform != "darwin" else peak


class _StageSampler:
    """Largest resident memory seen during each stage (sampled every ``interval`` s on a thread)."""

    def __init__(self, interval: float = 0.02):
        self.stage = "start"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            rss = _rss_bytes()
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)
            time.sleep(interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure_segment(path: str, model: str, out_dir: str) -> dict:
    """``morse segment`` with every output in this process: estimate, resident memory before, peak, stage peaks."""
    import morse.imageio as imageio
    from morse.cli import main
    from morse.inference import outputs, segment_command

    estimates = []

    class Grab(logging.Handler):
        def emit(self, record):
            if hasattr(record, "morse_estimate"):
                estimates.append(record.morse_estimate)

    logging.getLogger("morse.inference.memory").addHandler(Grab())
    logging.getLogger("morse.inference.memory").setLevel(logging.INFO)
    sampler = _StageSampler()

    def staged(name, fn):
        def wrapper(*args, **kwargs):
            sampler.stage = name
            try:
                return fn(*args, **kwargs)
            finally:
                sampler.stage = "between"

        return wrapper

    warm_up = write_synthetic_ct(Path(out_dir) / "warm-up.nii.gz", 2)
    main(["segment", str(warm_up), "-o", str(Path(out_dir) / "warm-up"), "--model", model, "--device", "cpu"])
    segment_command.read_image = staged("reading", imageio.read_image)
    segment_command.segment_volume = staged("inference", segment_command.segment_volume)
    segment_command.write_case = staged("writing", outputs.write_case)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = _status_bytes("VmRSS")
    start = time.perf_counter()
    with sampler:
        code = main(["segment", path, "-o", out_dir, "--model", model, "--device", "cpu", "--overwrite"])
    seconds = time.perf_counter() - start
    e = estimates[-1] if estimates else None
    return {
        "exit_code": code,
        "seconds": seconds,
        "rss_before_bytes": before,
        "run_peak_bytes": _status_bytes("VmHWM"),
        "peak_bytes": _peak_bytes(),
        "stage_peak_bytes": {k: v for k, v in sampler.peaks.items() if k in ("reading", "inference", "writing")},
        "estimate_bytes": e.peak if e else None,
        "estimate_phases_bytes": e.phases if e else None,
        "estimate_text": e.describe() if e else None,
    }


# ----------------------------------------------------------------------------------------------------------------------
# the parent: one child per size, and the table


def run_sizes(model: str, cache_dir: Path, sizes=SIZES, threads: int | None = None, timeout: float = 4 * 3600) -> dict:
    """Measure every size in its own child process; ``{slices: measurements}`` (an ``error`` entry on failure)."""
    rows = {}
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for slices in sizes:
        ct = write_synthetic_ct(Path(cache_dir) / f"phantom-512x512x{slices}.nii.gz", slices)
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "morse.bench.memory_rows", str(ct), model, out]
            log.info("bench: memory, %d slices", slices)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        if found:
            rows[slices] = json.loads(found[-1][len(RESULT_PREFIX) :])
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            rows[slices] = {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return rows


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def render(rows: dict) -> list[str]:
    """Markdown lines of the memory table and its verdicts."""
    lines = [
        "## Memory of `morse segment` with every output (512×512 synthetic CT, default pack, CPU)",
        "",
        "| slices | estimate (GB) | RSS before (GB) | process peak (GB) | growth (GB) | estimate / growth | "
        "reading / inference / writing peak (GB) | time (s) |",
        "|---:|---:|---:|---:|---:|---:|:---|---:|",
    ]
    verdicts = []
    for slices, r in sorted(rows.items(), key=lambda kv: int(kv[0])):
        if "error" in r:
            lines.append(f"| {slices} | failed: {r['error']} | | | | | | |")
            continue
        growth = r["run_peak_bytes"] - r["rss_before_bytes"]
        ratio = r["estimate_bytes"] / growth if growth > 0 else float("nan")
        st = r["stage_peak_bytes"]
        stages = " / ".join(_gb(st.get(k, 0)) for k in ("reading", "inference", "writing"))
        lines.append(
            f"| {slices} | {_gb(r['estimate_bytes'])} | {_gb(r['rss_before_bytes'])} | {_gb(r['peak_bytes'])} | "
            f"{_gb(growth)} | {ratio:.2f} | {stages} | {r['seconds']:.0f} |"
        )
        ok = abs(ratio - 1) <= TOLERANCE
        verdicts.append(f"{slices} slices: estimate {ratio:.2f}× the growth ({'met' if ok else '**missed**'})")
        if int(slices) == 600:
            peak_gb = r["peak_bytes"] / 2**30
            met = "met" if peak_gb <= PEAK_TARGET_GB else "**missed**"
            verdicts.append(f"600-slice peak {peak_gb:.2f} GiB (target ≤ {PEAK_TARGET_GB:.0f} GB: {met})")
    lines += ["", f"- Estimate within ±{TOLERANCE:.0%} of the measured growth: " + "; ".join(verdicts) + "."]
    return lines


def main(argv: list[str]) -> int:
    """Child entry: ``python -m morse.bench.memory_rows CT MODEL OUT_DIR`` → one result line on stdout."""
    result = measure_segment(*argv[:3])
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
