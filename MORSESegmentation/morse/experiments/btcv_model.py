"""Train, evaluate and install the default model pack from the BTCV (Synapse-8) abdomen CTs.

``python -m morse.experiments.btcv_model --data ../shared/data/btcv-synapse8`` trains
``configs/btcv/unet2d-morse-6k.yaml`` (MORSE ``fast``, 6 000 iterations, seed 2024; 15 of the 18 Synapse training
cases; resumable), evaluates it on the 3 held-out
training cases (model selection) and then once on the 12 Synapse test cases, evaluates it on the registry sample CT
(the numbers the Slicer self-test checks against), and writes the pack to
``MORSESegmentation/Resources/Models/abdomen-ct-morse2d/``. The data folder itself is never copied anywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..modelpack import DEFAULT_MODEL_ID, models_dir
from .publish import publish_pack
from .runs import Job, evaluate_job, hardware, run_jobs

REPO = Path(__file__).resolve().parents[3]
# Chosen on the 3 validation cases among the Table 1 runs (synapse.md): validation refined mean DSC 81.3 against 71.1
# for the 3 000-iteration run that 2.1.0 shipped.
CONFIG = REPO / "configs" / "btcv" / "unet2d-morse-6k.yaml"
VALIDATION = "btcv_0037,btcv_0039,btcv_0040"
SAMPLE_DATA = "registry:abdomen-ct-synapse8"
SAMPLE_REFERENCE = "TotalSegmentator predictions (silver standard), one held-out subject"
VERSION = "2.2.0"
# What the pack says besides its weights. The domain is that of the BTCV training scans (morse.inference.domain).
DOMAIN = {
    "modality": "CT",
    "body_region": "abdomen",
    "contrast_phases": ["portal-venous"],
    "intensity_hu": [-1024, 3071],
    "craniocaudal_extent_mm": [282, 660],
}
# Post-processing: a detached piece is kept only above a tenth of the organ's smallest volume in the 18 BTCV
# training labels. Rendering: only cells whose top-2 margin is below 1 logit, the smallest margin whose labels differ
# from the fixed budget's on < 0.1 % of the voxels of every validation case (docs/results/render_budget.json).
INFERENCE = {
    "postprocess": {
        "min_ml": {
            "aorta": 3.0,
            "gallbladder": 0.2,
            "kidney_left": 7.0,
            "kidney_right": 7.0,
            "liver": 100.0,
            "pancreas": 4.0,
            "spleen": 6.0,
            "stomach": 15.0,
        }
    },
    "render_margin": 1.0,
}
INTENDED_USE = (
    "Research use only; not a medical device. Segments 8 abdominal organs (aorta, gallbladder, kidneys, liver, "
    "pancreas, spleen, stomach) on adult abdominal CT in the portal-venous phase, as in its BTCV training data "
    "(30 scans of one centre; 15 used for training). Other modalities, phases, body regions and children are outside "
    "what it has seen: check every result."
)


def metrics_block(report: dict, data: str, reference: str, split: str = "test", settings: dict | None = None) -> dict:
    """The evaluation numbers stored in ``model.json``: per output (coarse/refined), mean and per-organ DSC and
    HD95 (mm) of the organs the reference holds; ``data`` and ``reference`` say what was scored against what."""
    block = {
        "data": data,
        "split": split,
        "cases": report["data"]["cases"],
        "subjects": report["data"]["subjects"],
        "units": report["units"],
        "convention": report["convention"],
        "reference": reference,
    }
    if settings is not None:
        block["inference"] = settings
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


def install(job: Job, target: Path, **fields) -> Path:
    """Publish the trained pack of ``job`` at ``target`` as model ``abdomen-ct-morse2d`` (:func:`publish_pack`)."""
    return publish_pack(job.pack, target, model_id=DEFAULT_MODEL_ID, name="MORSE abdominal CT (2D UNet)", **fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/btcv-synapse8", help="the btcv-synapse8 nnU-Net folder")
    parser.add_argument("--runs", default="runs/btcv-morse-6k-s2024", help="training run folder")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", default=str(models_dir() / DEFAULT_MODEL_ID))
    parser.add_argument(
        "--keep-weights",
        action="store_true",
        help="do not train: give the installed weights the settings of this script, evaluate and record them",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    job = Job("btcv-morse", CONFIG, args.seed, Path(args.runs))
    target = Path(args.target)
    settings = dict(
        version=VERSION,
        description=(
            "MORSE 2D UNet (point-wise SMoE + implicit rendering head) for 8 abdominal organs on CT, trained on 15 "
            "BTCV/Synapse abdomen CTs with manual labels (6 000 iterations of batch 4)."
        ),
        intended_use=INTENDED_USE,
        domain=DOMAIN,
        inference=INFERENCE,
    )
    if args.keep_weights:  # the installed weights (and their calibration) with this file's settings
        install(Job("installed", CONFIG, args.seed, job.out, pack_dir=target), target, **settings)
    else:
        run_jobs([job], parallel=1, threads=args.threads)
        install(job, target, **settings, training={
            "command": f"python -m morse.experiments.btcv_model --data {args.data}",
            "hardware_description": hardware(),
            "data_licence": "BTCV (Synapse) terms: research use; the images are not redistributed with the model",
        })  # fmt: skip
        print("new weights: fit the uncertainty calibration again (python -m morse.experiments.uncertainty --install)")
    record_metrics(target, args.data, job.out)
    print(f"installed {target}")
    return 0


def record_metrics(target: Path, data: str, out: Path) -> None:
    """Evaluate the installed pack as users run it (its own inference settings: post-processing on, the adaptive
    rendering budget) on the validation, test and registry sample cases, the test cases also without
    post-processing (the network's own output, as in the paper), and write the numbers into its ``model.json``."""
    installed = Job("installed", CONFIG, 0, out, pack_dir=target)
    meta = json.loads((target / "model.json").read_text(encoding="utf-8"))
    settings = meta.get("inference", {})
    val = evaluate_job(installed, data, out / "evaluation-val.json", split=VALIDATION)
    test = evaluate_job(installed, data, out / "evaluation-test.json")
    raw = evaluate_job(installed, data, out / "evaluation-test-network.json", postprocess=False)
    sample = evaluate_job(installed, SAMPLE_DATA, out / "evaluation-sample.json")
    manual = "manual labels"
    cases = "BTCV abdomen CT (Synapse-8 labels), TransUNet's 12 test cases"
    install(
        installed,
        target,
        metrics=metrics_block(test, cases, manual, settings=settings),
        metrics_without_postprocess=metrics_block(raw, cases, manual, settings={**settings, "postprocess": False}),
        validation=metrics_block(
            val, "BTCV: 3 held-out training cases (model selection)", manual, "validation", settings
        ),
        self_test=metrics_block(sample, SAMPLE_DATA, SAMPLE_REFERENCE, settings=settings),
    )
    for name, report in (("validation", val), ("test", test), ("test, no post-processing", raw), ("sample", sample)):
        s = report["summary"]
        print(f"{name}: coarse {s['coarse']['mean']['dsc']:.4f} refined {s['refined']['mean']['dsc']:.4f} mean DSC")


if __name__ == "__main__":
    sys.exit(main())
