"""The 3D experiment on MR: CHAOS T2-SPIR, the 3D UNet alone against MORSE on the same UNet.

``python -m morse.experiments.chaos_model --data ../shared/data/chaos-mr-t2`` trains ``configs/chaos/
unet3d-backbone.yaml`` and ``unet3d-morse.yaml`` side by side (one CPU thread each; resumable), evaluates both packs
(coarse and refined outputs) on the 3 validation cases and on the 5 test cases, and writes the numbers of
``docs/results/chaos.md`` to ``docs/results/chaos.json``. With ``--install`` the MORSE pack is published as the
bundled model ``abdomen-mr-morse3d`` when its refined liver DSC on the test cases reaches :data:`SHIP_LIVER_DSC`.
The data folder itself is never copied anywhere; only aggregate numbers are written.

Split: the 20 case names sorted, shuffled by ``random.Random(SPLIT_SEED)``; the first 5 are the test cases, the
next 3 the validation cases (model selection), the other 12 the training cases (``data.train_cases`` of both
configs; a test checks that they agree).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
from dataclasses import replace
from pathlib import Path

from ..modelpack import models_dir
from .btcv_model import metrics_block
from .publish import publish_pack
from .runs import Job, evaluate_job, hardware, run_jobs

REPO = Path(__file__).resolve().parents[3]
CONFIGS = {
    "backbone": REPO / "configs" / "chaos" / "unet3d-backbone.yaml",
    "morse": REPO / "configs" / "chaos" / "unet3d-morse.yaml",
}
# The 20 CHAOS MR cases of ../shared/data/chaos-mr-t2 (the T2-SPIR scans with labels, by CHAOS patient number).
CASES = tuple(f"chaos_{i:02d}" for i in (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36, 37, 38, 39))
SPLIT_SEED = 2026
N_TEST, N_VALIDATION = 5, 3
ORGANS = ("liver", "kidney_right", "kidney_left", "spleen")
MODEL_ID = "abdomen-mr-morse3d"
SHIP_LIVER_DSC = 0.90  # the refined liver DSC on the 5 test cases a bundled MR pack must reach
VERSION = "1.0.0"
DOMAIN = {
    "modality": "MR",
    "mr_sequence": "T2-SPIR",
    "body_region": "abdomen",
    "craniocaudal_extent_mm": [239, 354],  # 31–46 slices of 7.7 mm, the CHAOS T2-SPIR scans
}
INTENDED_USE = (
    "Research use only; not a medical device. Segments the liver, both kidneys and the spleen on adult abdominal MR, "
    "T2-weighted SPIR (fat-suppressed) sequence at about 1.5 T, as in its CHAOS training data (12 scans of one centre; "
    "CHAOS challenge, Kavur et al. 2021, CC BY-SA 4.0). Other sequences (T1, in/opposed phase, DWI), CT, other body "
    "regions and children are outside what it has seen: check every result."
)


def split_cases(names=CASES, seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """``{"test", "validation", "train"}`` case names (each sorted) of the seeded shuffle of the sorted ``names``."""
    order = sorted(names)
    random.Random(seed).shuffle(order)
    return {
        "test": sorted(order[:N_TEST]),
        "validation": sorted(order[N_TEST : N_TEST + N_VALIDATION]),
        "train": sorted(order[N_TEST + N_VALIDATION :]),
    }


SPLIT = split_cases()
TEST = ",".join(SPLIT["test"])
VALIDATION = ",".join(SPLIT["validation"])


def jobs_for(seed: int, runs: Path) -> list[Job]:
    return [Job(f"chaos-{kind}", config, seed, runs / f"{kind}-s{seed}") for kind, config in CONFIGS.items()]


def evaluate_all(job: Job, data: str) -> dict[str, dict]:
    """The job's reports: validation and test as users run the pack (post-processing on), test without it."""
    return {
        "validation": evaluate_job(job, data, job.out / "evaluation-val.json", split=VALIDATION),
        "test": evaluate_job(job, data, job.out / "evaluation-test.json", split=TEST),
        "test_network": evaluate_job(
            job, data, job.out / "evaluation-test-network.json", split=TEST, postprocess=False
        ),
    }


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)


def summary(report: dict) -> dict:
    """Aggregate numbers of one report (per output: mean and per-organ DSC and HD95 mm, per-case DSC per organ)."""
    out = {"cases": report["data"]["cases"], "postprocess": report.get("postprocess")}
    for output in ("coarse", "refined"):
        s = report["summary"][output]
        out[output] = {
            "mean_dsc": _number(s["mean"]["dsc"]),
            "mean_hd95_mm": _number(s["mean"]["hd95"]),
            "per_organ": {
                o: {"dsc": _number(s["per_class"][o]["dsc"]), "hd95_mm": _number(s["per_class"][o]["hd95"])}
                for o in ORGANS
            },
            "per_case_dsc": {
                c["case"]: {o: _number(c[output]["per_class"][o]["dsc"]) for o in ORGANS} for c in report["per_case"]
            },
        }
    return out


def wall_time(job: Job) -> float | None:
    meta = json.loads((job.pack / "model.json").read_text(encoding="utf-8"))
    return meta.get("training", {}).get("wall_time_s")


def markdown_table(results: dict, split: str) -> str:
    """Rows backbone / MORSE coarse / MORSE refined (one set per seed), columns DSC then HD95 per organ and mean."""
    head = " | ".join(["DSC " + o for o in (*ORGANS, "mean")] + ["HD95 " + o for o in (*ORGANS, "mean")])
    lines = [f"| run | output | {head} |", "|---|---|" + "---:|" * (2 * len(ORGANS) + 2)]
    for seed, jobs in sorted(results["runs"].items()):
        for kind, outputs in (("backbone", ("coarse",)), ("morse", ("coarse", "refined"))):
            s = jobs[kind][split]
            for output in outputs:
                o = s[output]
                dsc = [o["per_organ"][n]["dsc"] for n in ORGANS] + [o["mean_dsc"]]
                hd = [o["per_organ"][n]["hd95_mm"] for n in ORGANS] + [o["mean_hd95_mm"]]
                cells = [f"{v:.3f}" if v is not None else "–" for v in dsc] + [
                    f"{v:.1f}" if v is not None else "–" for v in hd
                ]
                name = "3D UNet" if kind == "backbone" else "MORSE"
                lines.append(f"| {name} s{seed} | {output} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def label_terms(labels: list[dict]) -> list[dict]:
    """The pack's classes with the Slicer colours and SNOMED-CT codes of the same organs in Synapse-8."""
    from ..data.synapse8 import SYNAPSE8
    from ..labels import labels_from_json, labels_to_json

    known = {info.name: info for info in SYNAPSE8}
    return labels_to_json(
        [replace(known[lab.name], value=lab.value) if lab.name in known else lab for lab in labels_from_json(labels)]
    )


def install(job: Job, target: Path, **fields) -> Path:
    """Publish the trained pack of ``job`` at ``target`` as model :data:`MODEL_ID` (:func:`publish_pack`), its labels
    with their SNOMED-CT terms."""
    labels = json.loads((job.pack / "model.json").read_text(encoding="utf-8"))["labels"]
    name = "MORSE abdominal MR T2 (3D UNet)"
    return publish_pack(job.pack, target, model_id=MODEL_ID, name=name, labels=label_terms(labels), **fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/chaos-mr-t2", help="the chaos-mr-t2 nnU-Net folder")
    parser.add_argument("--runs", default="runs/chaos", help="folder of the training runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per training job")
    parser.add_argument("--parallel", type=int, default=2, help="training jobs side by side")
    parser.add_argument("--results", default=str(REPO / "docs" / "results" / "chaos.json"))
    parser.add_argument("--install", action="store_true", help=f"publish the MORSE pack as {MODEL_ID} if it qualifies")
    parser.add_argument("--target", default=str(models_dir() / MODEL_ID))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    runs = Path(args.runs)
    jobs = {seed: jobs_for(seed, runs) for seed in args.seeds}
    run_jobs([j for seed in args.seeds for j in jobs[seed]], parallel=args.parallel, threads=args.threads)
    results: dict = {"split": {**SPLIT, "seed": SPLIT_SEED}, "hardware": hardware(), "runs": {}}
    reports: dict = {}
    for seed in args.seeds:
        results["runs"][seed] = {}
        for job in jobs[seed]:
            kind = job.name.removeprefix("chaos-")
            reports[(seed, kind)] = evaluate_all(job, args.data)
            results["runs"][seed][kind] = {
                "wall_time_s": wall_time(job),
                **{split: summary(r) for split, r in reports[(seed, kind)].items()},
            }
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    for split in ("validation", "test", "test_network"):
        print(f"\n{split}\n\n{markdown_table(results, split)}")
    if args.install:
        seed = args.seeds[0]
        job = next(j for j in jobs[seed] if j.name == "chaos-morse")
        liver = results["runs"][seed]["morse"]["test"]["refined"]["per_organ"]["liver"]["dsc"]
        if liver is None or liver < SHIP_LIVER_DSC:
            print(f"not installed: refined liver DSC {liver} on the test cases is below {SHIP_LIVER_DSC}")
            return 0
        test, raw, val = (reports[(seed, "morse")][k] for k in ("test", "test_network", "validation"))
        settings = json.loads((job.pack / "model.json").read_text(encoding="utf-8")).get("inference", {})
        cases, manual = "CHAOS abdominal MR T2-SPIR, 5 test cases (seeded split)", "manual labels"
        install(
            job,
            Path(args.target),
            version=VERSION,
            description=(
                "MORSE 3D UNet (point-wise SMoE + implicit rendering head) for liver, kidneys and spleen on abdominal "
                "T2-SPIR MR, trained on 12 CHAOS MR scans with manual labels."
            ),
            intended_use=INTENDED_USE,
            domain=DOMAIN,
            metrics=metrics_block(test, cases, manual, settings=settings),
            metrics_without_postprocess=metrics_block(raw, cases, manual, settings={**settings, "postprocess": False}),
            validation=metrics_block(
                val, "CHAOS: 3 held-out training cases (model selection)", manual, "validation", settings
            ),
            training={
                "command": f"python -m morse.experiments.chaos_model --data {args.data} --install",
                "hardware_description": hardware(),
                "data_licence": "CHAOS challenge data (Kavur et al. 2021), CC BY-SA 4.0; images not redistributed",
            },
        )
        print(f"installed {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
