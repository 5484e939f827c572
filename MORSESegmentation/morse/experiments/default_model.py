"""Train, evaluate and install the default model pack shipped with the extension.

``python -m morse.experiments.default_model`` (``make default-model``): trains ``configs/abdomen-ct-morse2d.yaml``
(resumable), evaluates it on the held-out subject of the registry CT (coarse and refined, per organ), and writes the
pack to ``MORSESegmentation/Resources/Models/abdomen-ct-morse2d/`` with those numbers in ``model.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from ..fileutils import replace_folder, sha256_file
from ..modelpack import DEFAULT_MODEL_ID, models_dir
from ..staging import publish_permissions, staging_dir
from .runs import Job, evaluate_job, hardware, run_jobs

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "configs" / "abdomen-ct-morse2d.yaml"
DATA = "registry:abdomen-ct-synapse8"
VERSION = "1.0.0"


def metrics_block(report: dict) -> dict:
    """The evaluation numbers stored in ``model.json``: per output (coarse/refined), mean and per-organ values."""
    block = {
        "data": DATA,
        "split": "test",
        "cases": report["data"]["cases"],
        "subjects": report["data"]["subjects"],
        "units": report["units"],
        "convention": report["convention"],
        "reference": "TotalSegmentator predictions (silver standard), one held-out subject",
    }
    for output in ("coarse", "refined"):
        summary = report["summary"][output]
        present = [o for o, c in summary["counts"].items() if c.get("dsc", 0) > 0]
        block[output] = {
            "mean_dsc": summary["mean"]["dsc"],
            "mean_hd95_mm": summary["mean"]["hd95"],
            "organs_evaluated": present,
            "per_organ": {
                o: {"dsc": summary["per_class"][o]["dsc"], "hd95_mm": summary["per_class"][o]["hd95"]} for o in present
            },
        }
    return block


def install(job: Job, report: dict, target: Path) -> Path:
    """Copy the trained pack to ``target`` as model id ``abdomen-ct-morse2d`` version 1.0.0, with its metrics."""
    meta = json.loads((job.pack / "model.json").read_text(encoding="utf-8"))
    weights = job.pack / meta["weights"]["file"]
    if sha256_file(weights) != meta["weights"]["sha256"]:
        raise RuntimeError(f"{weights}: checksum differs from its model.json")
    meta.update(
        model_id=DEFAULT_MODEL_ID,
        version=VERSION,
        name="MORSE abdominal CT (2D UNet)",
        metrics=metrics_block(report),
    )
    meta["training"]["hardware_description"] = hardware()
    meta["training"]["command"] = "make default-model"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(target)
    shutil.copyfile(weights, tmp / "model.safetensors")
    (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    publish_permissions(tmp)
    replace_folder(tmp, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/default-model", help="training run folder")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", default=str(models_dir() / DEFAULT_MODEL_ID))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    job = Job("default-model", CONFIG, args.seed, Path(args.runs))
    run_jobs([job], parallel=1, threads=args.threads)
    report = evaluate_job(job, DATA, job.out / "evaluation.json")
    target = install(job, report, Path(args.target))
    refined = report["summary"]["refined"]
    print(f"installed {target} (refined mean DSC {refined['mean']['dsc']:.3f} on {', '.join(report['data']['cases'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
