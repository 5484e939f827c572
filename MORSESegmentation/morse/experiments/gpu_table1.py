"""Table 1 rows on one lent GPU, as many iterations as fit a fixed wall-clock budget, and their evaluation back here.

Three steps, the middle one on the GPU machine (which receives the working tree, not ``../shared``)::

    # here, with the data: the 15 training cases on the model grid, one compressed file (git-ignored, carried)
    python -m morse.experiments.gpu_table1 cache
    # there: every row side by side on the GPU (bf16 autocast), one common iteration count chosen from a short
    # calibration so that all of them end inside --budget seconds; one tar per finished run and gpu-runs.json in --out
    python -m morse.experiments.gpu_table1 train --budget 480 --out "$OUT"
    # here again: unpack the tars, evaluate every run on the 3 validation and the 12 test cases, write the report
    python -m morse.experiments.gpu_report --runs-from FOLDER_OF_THE_TARS

The rows are those of :mod:`morse.experiments.synapse_table1` (same configs, cases and batch) plus row (e) with the
``paper`` preset, so that ``fast`` and ``paper`` are compared at the same schedule. All rows share one iteration
count: the protocol is "same schedule", so the slowest row sets it.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from .runs import Job

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
CACHE = "gpu-cache/btcv-train.npz"  # relative to the repository root, ignored by git, carried with the tree
ROWS = ("backbone", "pointrend", "smoe", "iar", "morse", "morse-paper")
PAPER_ITERATIONS = 30_000  # the paper's schedule (TransUNet's), the most worth training
CALIBRATION_ITERATIONS = 100  # metrics.csv logs every 50: its second row is the mean step time of steps 51-100
PACKING_S = 45.0  # kept free at the end of the budget: writing the packs and the tars
TRANSPORT_WEIGHTS = "model.f16.safetensors"


def config_of(row: str) -> Path:
    return REPO / "configs" / "btcv" / f"unet2d-{row}.yaml"


def run_name(row: str, seed: int) -> str:
    return f"unet2d-{row}-gpu-s{seed}"


def plan_iterations(step_times_s: dict[str, float], seconds: float, most: int = PAPER_ITERATIONS) -> int:
    """The common iteration count: what the slowest row (``step_times_s``: seconds per step, measured with all rows
    running side by side) finishes in ``seconds``, rounded down to a multiple of 100, at most ``most``."""
    slowest = max(step_times_s.values())
    if not math.isfinite(slowest) or slowest <= 0:
        raise ValueError(f"step times must be positive and finite: {step_times_s}")
    fit = int(seconds / slowest) // 100 * 100
    if fit < 100:
        raise RuntimeError(
            f"the budget leaves {seconds:.0f} s, fewer than 100 iterations of the slowest row "
            f"({slowest * 1000:.0f} ms per step): give a larger --budget or fewer --rows"
        )
    return min(most, fit)


def _launch(rows, seed, iterations, work: Path, cache: Path, device: str) -> dict[str, tuple[subprocess.Popen, Path]]:
    threads = max(1, (os.cpu_count() or 1) // len(rows))  # patch sampling and augmentation run on the CPU
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = {}
    for row in rows:
        out = work / run_name(row, seed)
        out.mkdir(parents=True, exist_ok=True)
        logfile = open(out / "train.log", "w", encoding="utf-8")  # noqa: SIM115 - the child keeps it open
        cmd = Job(out.name, config_of(row), seed, out, iterations, device=device, cache=cache).command()
        procs[row] = (subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env, cwd=REPO), out)
        logfile.close()
    return procs


def _wait(procs: dict, deadline: float) -> dict[str, str]:
    """Wait for every run until ``deadline`` (perf_counter seconds); a run still going then is stopped."""
    status = {}
    while len(status) < len(procs):
        for row, (proc, _) in procs.items():
            if row not in status and proc.poll() is not None:
                status[row] = "finished" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        if time.perf_counter() > deadline:
            for row, (proc, _) in procs.items():
                if row not in status:
                    proc.kill()
                    proc.wait()
                    status[row] = "stopped at the deadline"
        time.sleep(1.0)
    return status


def _show_logs(run_dirs: dict[str, Path], lines: int = 15) -> None:
    """The end of each run's log on stderr: the run folders stay on the device, its output comes back."""
    for row, run_dir in run_dirs.items():
        text = (run_dir / "train.log").read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
        tail = "\n".join(text.splitlines()[-lines:])
        print(f"--- {row}: end of {run_dir.name}/train.log ---\n{tail}", file=sys.stderr)


def _step_time(run_dir: Path) -> float:
    """Mean seconds per step over the last logged window of a run's metrics.csv."""
    with open(run_dir / "metrics.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["step_time_s"])


def calibrate(
    rows, seed: int, work: Path, cache: Path, device: str, deadline: float, iterations: int = CALIBRATION_ITERATIONS
) -> dict[str, float]:
    """Seconds per step of every row, all rows running side by side as they will in the real runs."""
    procs = _launch(rows, seed, iterations, work, cache, device)
    status = _wait(procs, deadline)
    failed = {r: s for r, s in status.items() if s != "finished"}
    if failed:
        _show_logs({r: procs[r][1] for r in failed})
        raise RuntimeError(f"calibration runs did not finish: {failed}")
    return {row: _step_time(out) for row, (_, out) in procs.items()}


def _pack_run(run_dir: Path, out: Path) -> Path:
    """One tar per run: the model pack with its weights as float16, the metrics, loss curve, settings and log.

    float16 because of what the device can return (16 MiB per file, 64 MiB in all): the `paper` row's float32
    weights alone are 27 MiB, all six rows 66 MiB; as float16 they are 33 MiB. :func:`weights_to_float32` undoes the
    format, not the rounding (about 3 significant digits), which the report states."""
    from safetensors.torch import load_file, save_file

    tar_path = out / f"{run_dir.name}.tar"
    weights = load_file(run_dir / "model" / "model.safetensors")
    half = run_dir / TRANSPORT_WEIGHTS
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in weights.items()}, half)
    with tarfile.open(tar_path, "w") as tar:
        tar.add(run_dir / "model" / "model.json", arcname=f"{run_dir.name}/model/model.json")
        tar.add(half, arcname=f"{run_dir.name}/model/{TRANSPORT_WEIGHTS}")
        for name in ("metrics.csv", "config.yaml", "train.log", "loss.png"):
            if (run_dir / name).exists():
                tar.add(run_dir / name, arcname=f"{run_dir.name}/{name}")
    return tar_path


def weights_to_float32(pack: Path) -> None:
    """Turn a returned pack back into a standard one: float32 ``model.safetensors``, its sha256 in ``model.json``,
    and a note there that the weights went through float16."""
    from safetensors.torch import load_file, save_file

    from ..fileutils import sha256_file

    half = pack / TRANSPORT_WEIGHTS
    weights = load_file(half)
    save_file({k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}, pack / "model.safetensors")
    half.unlink()
    meta = json.loads((pack / "model.json").read_text(encoding="utf-8"))
    meta["weights"]["sha256"] = sha256_file(pack / "model.safetensors")
    meta.setdefault("training", {})["returned_as"] = "float16 (weights rounded for the transfer from the GPU machine)"
    (pack / "model.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def train(args) -> int:
    import torch

    start = time.perf_counter()
    deadline = start + args.budget
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: this step is for the GPU machine (--device cpu for a dry run)")
    cache = (REPO / args.cache).resolve()
    if not cache.is_file():
        raise SystemExit(f"{cache}: no training cache; build it where the data is: gpu_table1 cache")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve() / time.strftime("%Y%m%d-%H%M%S")  # a fresh folder: never resumes a stale run
    record: dict = {"device": _device_name(torch, device), "torch": torch.__version__, "rows": list(args.rows),
                    "seed": args.seed, "budget_s": args.budget, "bf16_autocast": device == "cuda"}  # fmt: skip
    try:
        times = calibrate(args.rows, args.seed, work / "calibration", cache, device, deadline, args.calibration)
        record["calibration_s_per_step"] = times
        left = deadline - time.perf_counter() - PACKING_S - args.startup
        iterations = plan_iterations(times, left, args.max_iterations)
        record["iterations"] = iterations
        log.info("calibration %s s/step; %d iterations for every row in %.0f s", times, iterations, left)
        procs = _launch(args.rows, args.seed, iterations, work / "runs", cache, device)
        status = _wait(procs, deadline - PACKING_S)
        _show_logs({r: procs[r][1] for r, st in status.items() if st.startswith("failed")})
        record["runs"] = {}
        for row, (_, run_dir) in procs.items():
            entry = {"name": run_dir.name, "status": status[row]}
            meta = run_dir / "model" / "model.json"
            if status[row] == "finished" and meta.is_file():
                entry["wall_time_s"] = json.loads(meta.read_text(encoding="utf-8"))["training"]["wall_time_s"]
                entry["tar"] = _pack_run(run_dir, out).name
            record["runs"][row] = entry
    finally:
        record["total_s"] = round(time.perf_counter() - start, 1)
        (out / "gpu-runs.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=1))
    return 0 if all(r.get("tar") for r in record["runs"].values()) else 1


def _device_name(torch, device: str) -> str:
    return torch.cuda.get_device_name(0) if device == "cuda" else "cpu"


def build_cache(args) -> int:
    from ..config import load_experiment
    from ..train.cache import cache_key
    from ..train.dataset import load_training_data

    configs = {row: load_experiment(config_of(row)) for row in ROWS}
    keys = {row: json.dumps(cache_key(cfg), sort_keys=True) for row, cfg in configs.items()}
    if len(set(keys.values())) != 1:
        raise SystemExit(f"the rows' configs differ in data or preprocessing, one cache cannot serve them: {keys}")
    path = REPO / args.cache
    if path.exists():
        path.unlink()  # always rebuilt from the dataset as it is now
    volumes, _, _ = load_training_data(configs["morse"], path)
    print(f"{path}: {len(volumes)} cases, {path.stat().st_size / 2**20:.1f} MiB")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("cache", help="build the training cache from the dataset (run where the data is)")
    p.add_argument("--cache", default=CACHE, help="cache file, relative to the repository root")
    p = sub.add_parser("train", help="train the rows side by side inside --budget seconds (run on the GPU machine)")
    p.add_argument("--cache", default=CACHE)
    p.add_argument("--budget", type=float, default=480.0, help="wall-clock seconds for calibration, runs and tars")
    p.add_argument("--startup", type=float, default=20.0, help="seconds a run needs before its first step")
    p.add_argument("--out", required=True, help="folder for the tars and gpu-runs.json (the device's $OUT)")
    p.add_argument("--work", default="runs/gpu-table1", help="run folders (not brought back)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--max-iterations", type=int, default=PAPER_ITERATIONS)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--calibration", type=int, default=CALIBRATION_ITERATIONS, help="iterations of each timing run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.step == "cache":
        return build_cache(args)
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
