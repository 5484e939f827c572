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
import sys
from pathlib import Path

from ..modelpack import DEFAULT_MODEL_ID, models_dir
from .default_model import install, metrics_block
from .runs import Job, evaluate_job, hardware, run_jobs

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "configs" / "btcv" / "unet2d-morse.yaml"
VALIDATION = "btcv_0037,btcv_0039,btcv_0040"
SAMPLE_DATA = "registry:abdomen-ct-synapse8"
VERSION = "2.0.0"
INTENDED_USE = (
    "Research use only; not a medical device. Segments 8 abdominal organs (aorta, gallbladder, kidneys, liver, "
    "pancreas, spleen, stomach) on adult abdominal CT in the portal-venous phase, as in its BTCV training data "
    "(30 scans of one centre; 15 used for training). Other modalities, phases, body regions and children are outside "
    "what it has seen: check every result."
)


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
    metrics = metrics_block(test)
    metrics.update(data="BTCV abdomen CT (Synapse-8 labels), TransUNet's 12 test cases", reference="manual labels")
    validation = metrics_block(val)
    validation.update(data="BTCV: 3 held-out training cases (model selection)", reference="manual labels")
    self_test = metrics_block(sample)
    target = install(job, test, Path(args.target))
    meta = json.loads((target / "model.json").read_text(encoding="utf-8"))
    meta.update(
        version=VERSION,
        description=(
            "MORSE 2D UNet (point-wise SMoE + implicit rendering head) for 8 abdominal organs on CT, trained on 15 "
            "BTCV/Synapse abdomen CTs with manual labels."
        ),
        intended_use=INTENDED_USE,
        metrics=metrics,
        validation=validation,
        self_test=self_test,
    )
    meta["training"].update(
        command=f"python -m morse.experiments.btcv_model --data {args.data}",
        hardware_description=hardware(),
        data_licence="BTCV (Synapse) terms: research use; the images are not redistributed with the model",
    )
    (target / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for name, report in (("validation", val), ("test", test), ("registry sample", sample)):
        s = report["summary"]
        print(f"{name}: coarse {s['coarse']['mean']['dsc']:.4f} refined {s['refined']['mean']['dsc']:.4f} mean DSC")
    print(f"installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
