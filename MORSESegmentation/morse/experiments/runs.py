"""Running a list of training jobs (configs × seeds) as subprocesses and evaluating the resulting model packs.

Jobs already finished (their run folder holds ``model/model.json``) are skipped, interrupted ones resume from their
checkpoint, so an experiment can be stopped and started again without losing work. Several jobs can run side by side
(``jobs``), each with ``threads`` CPU threads.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..fileutils import total_memory

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One training run: ``config`` with ``seed`` (and optional iteration override) into ``out``."""

    name: str
    config: Path
    seed: int
    out: Path
    iterations: int | None = None
    wall_time_s: float | None = None
    extra: dict = field(default_factory=dict)

    pack_dir: Path | None = None  # an already trained pack (e.g. the shipped model) instead of ``out/model``
    device: str = "cpu"
    cache: Path | None = None  # training arrays (``morse train --cache``) instead of the dataset

    @property
    def pack(self) -> Path:
        return self.pack_dir or self.out / "model"

    @property
    def done(self) -> bool:
        return (self.pack / "model.json").is_file()

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "morse.cli", "train", str(self.config), "--out", str(self.out), "--seed",
               str(self.seed), "--device", self.device]  # fmt: skip
        if self.iterations:
            cmd += ["--iterations", str(self.iterations)]
        if self.cache is not None:
            cmd += ["--cache", str(self.cache)]
        if (self.out / "checkpoint.pt").is_file():
            cmd.append("--resume")
        return cmd


def run_jobs(jobs: list[Job], parallel: int = 1, threads: int = 1) -> None:
    """Train every unfinished job, ``parallel`` at a time, each limited to ``threads`` CPU threads."""
    pending = [j for j in jobs if not j.done]
    running: list[tuple[Job, subprocess.Popen, float, object]] = []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            job.out.mkdir(parents=True, exist_ok=True)
            logfile = open(job.out / "train.log", "a", encoding="utf-8")  # noqa: SIM115 - closed when the job ends
            log.info("start %s: %s", job.name, " ".join(job.command()))
            proc = subprocess.Popen(job.command(), stdout=logfile, stderr=subprocess.STDOUT, env=env)
            running.append((job, proc, time.perf_counter(), logfile))
        time.sleep(5)
        for entry in list(running):
            job, proc, started, logfile = entry
            if proc.poll() is None:
                continue
            running.remove(entry)
            logfile.close()
            if proc.returncode != 0:
                raise RuntimeError(f"training job {job.name} failed (exit {proc.returncode}); see {job.out}/train.log")
            log.info("done %s in %.0f s", job.name, time.perf_counter() - started)


def job_wall_time(job: Job) -> float | None:
    """Training wall time recorded in the job's model pack (seconds)."""
    try:
        meta = json.loads((job.pack / "model.json").read_text(encoding="utf-8"))
        return float(meta["training"]["wall_time_s"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def evaluate_job(
    job: Job, data: str, cache: Path, split: str = "test", variants: tuple[tuple[str, str], ...] = (), **options
) -> dict:
    """Evaluation report of a job's model pack on ``split`` (cached as JSON next to the run); ``variants`` and
    ``options`` (e.g. ``postprocess=False``) as in :func:`morse.evaluation.evaluate_command.evaluate`."""
    from ..evaluation.evaluate_command import evaluate

    cache.parent.mkdir(parents=True, exist_ok=True)
    weights = (job.pack / "model.safetensors").stat().st_mtime
    # the pack's inference settings (post-processing, rendering budget) change the numbers as much as the weights
    inference = json.loads((job.pack / "model.json").read_text(encoding="utf-8")).get("inference", {})
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if (
            cached.get("_weights_mtime") == weights
            and cached.get("_options") == options
            and cached.get("_inference", {}) == inference
            and all(f"{u}/{c}" in cached.get("variants", {}) or (u, c) == ("mm", "default") for u, c in variants)
        ):
            return cached
    report = evaluate(
        str(job.pack), data, split=split, units="mm", convention="default", device="cpu", variants=variants, **options
    )
    report.pop("_case_metrics", None)
    report["_weights_mtime"] = weights
    report["_options"] = options
    report["_inference"] = inference
    cache.write_text(json.dumps(report, indent=1, default=_nan_safe), encoding="utf-8")
    return json.loads(cache.read_text(encoding="utf-8"))


def _nan_safe(obj):
    return None if isinstance(obj, float) else str(obj)


def hardware() -> str:
    """One line describing this machine (CPU model, cores, memory, torch)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total = total_memory()
    mem = f", {total / 2**30:.0f} GiB RAM" if total else ""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{mem}{gpu}; Python {platform.python_version()}, torch {torch.__version__}"
