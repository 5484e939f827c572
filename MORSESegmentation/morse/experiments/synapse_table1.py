"""The paper's Table 1 on the BTCV (Synapse-8) CTs, 2D UNet: (a) backbone, (b) + PointRend, (c) + SMoE, (d) + IAR,
(e) MORSE — the same 15 training cases, schedule and seeds — evaluated on the 12 Synapse test cases.

``python -m morse.experiments.synapse_table1 --data ../shared/data/btcv-synapse8`` trains what is missing (resumable:
finished runs are skipped, interrupted ones resume from their checkpoint), evaluates every finished run once on the 3
held-out training cases (selection) and once on the 12 test cases, scored twice from one inference pass (ours: mm,
organs absent from a reference not scored; the paper's: voxel units and medpy's empty-mask rules), and writes
``docs/results/synapse-table1.json`` (aggregate numbers only) and ``docs/results/synapse-table1.md``. Row (e) seed
1337 is the shipped default model (trained by :mod:`morse.experiments.btcv_model` from the same config), so it is
evaluated, not trained again.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from ..modelpack import DEFAULT_MODEL_ID, models_dir
from .ablation import HEADERS, ORGANS, _mean_std, _params
from .btcv_model import VALIDATION
from .runs import Job, evaluate_job, hardware, job_wall_time, run_jobs

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
ROWS = {
    "backbone": "(a) UNet (backbone alone)",
    "pointrend": "(b) + PointRend",
    "smoe": "(c) + SMoE",
    "iar": "(d) + IAR",
    "morse": "(e) MORSE (SMoE + IAR)",
    "morse-6k": "(e′) MORSE, 6 000 iterations",
    "morse-paper": "(e″) MORSE, `paper` preset",  # GPU only (morse.experiments.gpu_table1)
}
# Training order: the comparison that matters most (backbone vs MORSE, two seeds each) first, then the other rows,
# then a second seed of the row whose refinement gained most, a third MORSE seed on the 3 000-iteration schedule,
# MORSE on twice the schedule (seed 2024, as its 3 000-iteration run) and the second seeds of the other rows.
PLAN = [
    ("backbone", 1337),
    ("morse", 2024),
    ("backbone", 2024),
    ("pointrend", 1337),
    ("smoe", 1337),
    ("iar", 1337),
    ("iar", 2024),
    ("morse", 7),
    ("morse-6k", 2024),
    ("pointrend", 2024),
    ("smoe", 2024),
]
SHIPPED = ("morse", 1337)
SCORINGS = (("mm", "default"), ("voxel", "paper"))  # ours, and the paper's (medpy rules, voxel units)
# The paper's Table 1 (2D UNet rows, DSC %), for the side-by-side.
PAPER = {
    "backbone": {"mean": 70.11},
    "morse": {"mean": 76.59},
}


def make_jobs(root: Path, plan=PLAN) -> list[Job]:
    jobs = []
    for row, seed in [SHIPPED, *plan]:
        job = Job(f"unet2d-{row}-s{seed}", REPO / "configs" / "btcv" / f"unet2d-{row}.yaml", seed,
                  root / f"unet2d-{row}-s{seed}", extra={"row": row})  # fmt: skip
        if (row, seed) == SHIPPED:
            job.pack_dir = models_dir() / DEFAULT_MODEL_ID
        jobs.append(job)
    return jobs


def _trim(summary: dict) -> dict:
    keep = ("per_class", "mean", "false_positives", "cases")
    return {k: _finite(summary[k]) for k in keep if k in summary}


def _finite(value):
    """NaN (undefined metric) as JSON null, so the results file is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def scored(report: dict) -> dict:
    """``{"mm/default": {"coarse": summary, "refined": summary}, ...}`` of one evaluation report."""
    out = {f"{report['units']}/{report['convention']}": {o: _trim(s) for o, s in report["summary"].items()}}
    for key, outputs in report.get("variants", {}).items():
        out[key] = {o: _trim(s) for o, s in outputs.items()}
    return out


def collect(jobs: list[Job], data: str, recorded: dict | None = None) -> dict:
    """Evaluate every finished job on the validation and test cases; aggregate numbers per job. A job in
    ``recorded`` whose run folder is not here keeps its recorded numbers (it is not evaluated again)."""
    results = {}
    for job in jobs:
        if not job.done or (job.name in (recorded or {}) and not job.out.is_dir()):
            continue
        # The network's own outputs, as in the paper: no anatomical post-processing (docs/results/anatomy.md)
        opts = {"variants": SCORINGS, "postprocess": False}
        val = evaluate_job(job, data, job.out / "evaluation-val.json", split=VALIDATION, **opts)
        test = evaluate_job(job, data, job.out / "evaluation-test.json", **opts)
        meta = json.loads((job.pack / "model.json").read_text(encoding="utf-8"))
        results[job.name] = {
            "row": job.extra["row"],
            "seed": job.seed,
            "config": str(job.config.relative_to(REPO)),
            "iterations": meta.get("training", {}).get("iterations"),
            "parameters": _params(job),
            "training_wall_time_s": job_wall_time(job),
            "validation": {"cases": val["data"]["cases"], "scores": scored(val)},
            "test": {"cases": test["data"]["cases"], "scores": scored(test)},
        }
    return results


def recorded(path: Path) -> dict:
    """Results already in the report's JSON: runs trained elsewhere (their ``runs/`` folder is not here) keep their
    numbers, and a run evaluated again here replaces its entry."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _fmt(mean: float, std: float = math.nan, scale: float = 100.0) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    text = f"{mean * scale:.1f}"
    return text + (f" ± {std * scale:.1f}" if not math.isnan(std) else "")


def _by_row(results: dict) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {r: [] for r in ROWS}
    for entry in results.values():
        rows[entry["row"]].append(entry)
    return rows


def _stat(entries: list[dict], split: str, scoring: str, output: str, key: str, organ: str | None = None):
    vals = []
    for e in entries:
        s = e[split]["scores"][scoring][output]
        v = s["per_class"].get(organ, {}).get(key) if organ else s["mean"].get(key)
        vals.append(math.nan if v is None else v)
    return _mean_std(vals)


def table(results: dict, split: str, scoring: str) -> str:
    """Markdown table: one line per row and output (coarse/refined), mean ± std over seeds."""
    units = scoring.split("/")[0]
    hd_scale = 1.0
    head = (
        f"| Method | seeds | Output | DSC (%) ↑ | HD95 ({units}) ↓ | " + " | ".join(HEADERS[o] for o in ORGANS) + " |"
    )
    lines = [head, "|:---|---:|:---|---:|---:|" + "---:|" * len(ORGANS)]
    for row, entries in _by_row(results).items():
        if not entries:
            continue
        for output in ("coarse", "refined"):
            dsc = _fmt(*_stat(entries, split, scoring, output, "dsc"))
            hd = _fmt(*_stat(entries, split, scoring, output, "hd95"), scale=hd_scale)
            organs = " | ".join(_fmt(_stat(entries, split, scoring, output, "dsc", o)[0]) for o in ORGANS)
            lines.append(f"| {ROWS[row]} | {len(entries)} | {output} | {dsc} | {hd} | {organs} |")
    return "\n".join(lines)


def invented(results: dict, split: str = "test") -> str:
    """How many (case, organ) pairs each run predicts where the reference has none (our convention)."""
    lines = ["| Run | coarse | refined |", "|:---|---:|---:|"]
    for name, e in results.items():
        s = e[split]["scores"]["mm/default"]
        cells = [str(sum(s[o]["false_positives"].values())) for o in ("coarse", "refined")]
        lines.append(f"| `{name}` | {' | '.join(cells)} |")
    return "\n".join(lines)


def refinement_vs_seed_noise(results: dict, split: str = "test") -> str:
    """Refined − coarse per row (DSC points), beside the seed-to-seed spread of the rows with two seeds."""
    lines = []
    for row, entries in _by_row(results).items():
        if not entries or row == "backbone":
            continue
        deltas = []
        for e in entries:
            s = e[split]["scores"]["mm/default"]
            deltas.append((s["refined"]["mean"]["dsc"] - s["coarse"]["mean"]["dsc"]) * 100)
        organ_delta = {
            o: (_stat(entries, split, "mm/default", "refined", "dsc", o)[0]
                - _stat(entries, split, "mm/default", "coarse", "dsc", o)[0]) * 100
            for o in ORGANS
        }  # fmt: skip
        best = max(organ_delta, key=organ_delta.get)
        worst = min(organ_delta, key=organ_delta.get)
        # refined and coarse come from the same weights: the gain's own spread over seeds, not the seed spread of
        # either output, says whether it is more than noise
        paired = ""
        if len(deltas) > 1:
            mean, std = _mean_std(deltas)
            paired = f", {mean:+.1f} ± {std:.1f} over the {len(deltas)} seeds"
        lines.append(
            f"- {ROWS[row]}: refined − coarse {', '.join(f'{d:+.1f}' for d in deltas)} mean DSC points "
            f"(per seed{paired}); most helped {HEADERS[best]} {organ_delta[best]:+.1f}, most hurt {HEADERS[worst]} "
            f"{organ_delta[worst]:+.1f}"
        )
    for row, entries in _by_row(results).items():
        if len(entries) > 1:
            for output in ("coarse", "refined"):
                _, std = _stat(entries, split, "mm/default", output, "dsc")
                lines.append(f"- seed spread, {ROWS[row]} {output}: standard deviation {std * 100:.1f} DSC points")
    return "\n".join(lines)


def write_markdown(path: Path, results: dict, jobs: list[Job]) -> None:
    done = sum(j.name in results for j in jobs)
    text = (
        f"""# Table 1 on BTCV (Synapse-8), 2D UNet: generated numbers

Generated by `python -m morse.experiments.synapse_table1` from `synapse-table1.json`; read `synapse.md` for the
protocol, the comparison with the paper and what the numbers mean. {done} of {len(jobs)} planned runs finished.
Means over the seeds listed (± = standard deviation over seeds where there are two or more). **coarse** = the
backbone's own head; **refined** = after the point head re-predicted the most uncertain pixels. Row (a) has no point
head, so its refined line equals its coarse line. The network's own outputs are scored (no anatomical
post-processing), as in the paper. Row (e) seed 1337 is the shipped default model; its first 750 iterations followed
a 5 000-iteration learning-rate schedule before it was resumed with 3 000 (see `synapse.md`); row (e′) ran 6 000
iterations, the other runs 3 000 throughout.

## Test: 12 Synapse test cases, our convention (mm; organs missing from a reference are not scored)

{table(results, "test", "mm/default")}

## Test: the paper's convention (voxel units, medpy rules: an empty prediction scores 0, HD95 0)

{table(results, "test", "voxel/paper")}

## Validation: 3 held-out training cases ({VALIDATION.replace(",", ", ")}), our convention

{table(results, "validation", "mm/default")}

## Refinement against seed noise (test, our convention)

{refinement_vs_seed_noise(results)}

## Invented organs (test): (case, organ) pairs predicted where the reference has none

{invented(results)}

## Runs

| Run | Parameters | Training wall time |
|:---|---:|---:|
"""
        + "\n".join(
            f"| `{n}` | {e['parameters'] / 1e6:.2f} M | "
            + (f"{e['training_wall_time_s'] / 60:.0f} min" if e["training_wall_time_s"] else "–")
            + " |"
            for n, e in results.items()
        )
        + f"\n\nHardware: {hardware()}.\n"
    )
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/btcv-synapse8", help="the btcv-synapse8 nnU-Net folder")
    parser.add_argument("--runs", default="runs/synapse-table1", help="folder of the training runs")
    parser.add_argument("--report", default="docs/results/synapse-table1.md")
    parser.add_argument("--parallel", type=int, default=2, help="training runs side by side")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--only", nargs="+", metavar="ROW-SEED", help="train only these runs, e.g. backbone-1337")
    parser.add_argument("--report-only", action="store_true", help="evaluate and report what has finished")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    plan = PLAN
    if args.only:
        wanted = {tuple(x.rsplit("-", 1)) for x in args.only}
        plan = [(r, s) for r, s in PLAN if (r, str(s)) in wanted]
    jobs = make_jobs(Path(args.runs), plan)
    if not args.report_only:
        run_jobs(jobs, args.parallel, args.threads)
    report = Path(args.report)
    before = recorded(report.with_suffix(".json"))
    results = {**before, **collect(make_jobs(Path(args.runs)), args.data, before)}
    report.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    write_markdown(report, results, make_jobs(Path(args.runs)))
    print(f"wrote {report} and {report.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
