"""Train, evaluate and install the default model pack from the BTCV (Synapse-8) abdomen CTs.

``python -m morse.experiments.btcv_model --data ../shared/data/btcv-synapse8`` trains
``configs/btcv/unet2d-morse.yaml`` (15 of the 18 Synapse training cases; resumable), evaluates it on the 3 held-out
training cases (model selection) and then once on the 12 Synapse test cases, evaluates it on the registry sample CT
(the numbers the Slicer self-test checks against), and writes the pack to
``MORSESegmentation/Resources/Models/abdomen-ct-morse2d/``. The data folder itself is never copied anywhere.
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
CONFIG = REPO / "configs" / "btcv" / "unet2d-morse.yaml"
VALIDATION = "btcv_0037,btcv_0039,btcv_0040"
SAMPLE_DATA = "registry:abdomen-ct-synapse8"
SAMPLE_REFERENCE = "TotalSegmentator predictions (silver standard), one held-out subject"
VERSION = "2.0.0"
INTENDED_USE = (
    "Research use only; not a medical device. Segments 8 abdominal organs (aorta, gallbladder, kidneys, liver, "
    "pancreas, spleen, stomach) on adult abdominal CT in the portal-venous phase, as in its BTCV training data "
    "(30 scans of one centre; 15 used for training). Other modalities, phases, body regions and children are outside "
    "what it has seen: check every result."
)


def metrics_block(report: dict, data: str, reference: str, split: str = "test") -> dict:
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
    """Publish the trained pack of ``job`` at ``target`` as model ``abdomen-ct-morse2d``: its weights (checksum
    verified) and its ``model.json`` updated with ``fields``, written in a staging folder and swapped in whole."""
    meta = json.loads((job.pack / "model.json").read_text(encoding="utf-8"))
    weights = job.pack / meta["weights"]["file"]
    if sha256_file(weights) != meta["weights"]["sha256"]:
        raise RuntimeError(f"{weights}: checksum differs from its model.json")
    training = {**meta["training"], **fields.pop("training", {})}
    meta.update(model_id=DEFAULT_MODEL_ID, name="MORSE abdominal CT (2D UNet)", **fields, training=training)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(target)
    shutil.copyfile(weights, tmp / "model.safetensors")
    (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    publish_permissions(tmp)
    replace_folder(tmp, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/btcv-synapse8", help="the btcv-synapse8 nnU-Net folder")
    parser.add_argument("--runs", default="runs/btcv-morse-s1337", help="training run folder")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", default=str(models_dir() / DEFAULT_MODEL_ID))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    job = Job("btcv-morse", CONFIG, args.seed, Path(args.runs))
    run_jobs([job], parallel=1, threads=args.threads)
    val = evaluate_job(job, args.data, job.out / "evaluation-val.json", split=VALIDATION)
    test = evaluate_job(job, args.data, job.out / "evaluation-test.json")
    sample = evaluate_job(job, SAMPLE_DATA, job.out / "evaluation-sample.json")
    manual = "manual labels"
    target = install(
        job,
        Path(args.target),
        version=VERSION,
        description=(
            "MORSE 2D UNet (point-wise SMoE + implicit rendering head) for 8 abdominal organs on CT, trained on 15 "
            "BTCV/Synapse abdomen CTs with manual labels."
        ),
        intended_use=INTENDED_USE,
        metrics=metrics_block(test, "BTCV abdomen CT (Synapse-8 labels), TransUNet's 12 test cases", manual),
        validation=metrics_block(val, "BTCV: 3 held-out training cases (model selection)", manual, "validation"),
        self_test=metrics_block(sample, SAMPLE_DATA, SAMPLE_REFERENCE),
        training={
            "command": f"python -m morse.experiments.btcv_model --data {args.data}",
            "hardware_description": hardware(),
            "data_licence": "BTCV (Synapse) terms: research use; the images are not redistributed with the model",
        },
    )
    for name, report in (("validation", val), ("test", test), ("registry sample", sample)):
        s = report["summary"]
        print(f"{name}: coarse {s['coarse']['mean']['dsc']:.4f} refined {s['refined']['mean']['dsc']:.4f} mean DSC")
    print(f"installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
