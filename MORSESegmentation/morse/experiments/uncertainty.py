"""Uncertainty that finds errors: ``python -m morse.experiments.uncertainty`` writes ``docs/results/uncertainty.md``.

See :mod:`morse.uncertainty.measures` for the measures; this module lists the cases, caches the network's
outputs per case (:mod:`morse.experiments.uncertainty_cache`, under ``runs/uncertainty-cache/``), fits the
calibration and chooses the settings on the validation cases of the training split, then scores the test cases and
the registry scans once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..uncertainty.maps import DEFAULT_OPTION
from .uncertainty_cache import VALIDATION, btcv_loaders, cached, registry_loaders, stride_of

log = logging.getLogger(__name__)

DEFAULT_DATA = "../shared/data/btcv-synapse8"
DEFAULT_OUT = "docs/results/uncertainty.md"
DEFAULT_CACHE = "runs/uncertainty-cache"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m morse.experiments.uncertainty", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"BTCV folder (default {DEFAULT_DATA})")
    p.add_argument("--cache", default=DEFAULT_CACHE, help=f"per-case arrays (default {DEFAULT_CACHE})")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--json", help="also write every number here")
    p.add_argument(
        "--install", action="store_true", help="write the calibration chosen on the validation cases into the pack"
    )
    p.add_argument(
        "--cache-only",
        metavar="PART",
        help="only compute the cached arrays of PART: validation, test, registry, or case names (parallel workers)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from ..modelpack import load_model_pack

    pack = load_model_pack(args.model)
    folder = Path(args.cache)
    if args.cache_only:
        part = args.cache_only
        registry = [r for r in registry_loaders() if part in ("registry", r[0])]
        if registry:
            for name, load, stride in registry:
                cached(folder, name, load, pack, stride)
            return 0
        split = {"validation": VALIDATION}.get(part, part)
        for name, load in btcv_loaders(args.data, split):
            cached(folder, name, load, pack, stride_of(name))
        return 0
    report = run_all(args, pack, folder)
    if args.install:
        install_calibration(pack, report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    return 0


OBJECTIVE = (
    "temperature: NLL of the reference on near-organ voxels; option: best near-organ AUROC within 1.3x the refined "
    "run; review_threshold: top-5 % cut of near-organ voxels; low_confidence: best invented-vs-real component "
    "separation"
)


def install_calibration(pack, report: dict) -> None:
    """``model.json`` → ``calibration`` of ``pack`` from what :func:`run_all` chose on the validation cases; the
    review list's region settings (opening, smallest region) stay as the pack had them."""
    from ..uncertainty.review import ReviewSettings
    from .publish import publish_pack

    before = pack.meta.get("calibration") or {}
    cal, chosen = report["calibration"], report["chosen"]
    block = {
        "uncertainty": chosen["option"],
        "temperature": round(cal["temperature"], 4),
        "review_threshold": round(chosen["review_threshold"], 4),
        "low_confidence": chosen["low_confidence"],
        "opening_mm": before.get("opening_mm", ReviewSettings.opening_mm),
        "min_region_ml": before.get("min_region_ml", ReviewSettings.min_region_ml),
        "fitted_on": VALIDATION.split(","),
        "objective": OBJECTIVE,
        "nll_before": round(cal["nll_before"], 5),
        "nll_after": round(cal["nll_after"], 5),
        "voxels": cal["voxels"],
    }
    publish_pack(pack.path, pack.path, calibration=block)
    print(f"calibration written into {pack.path / 'model.json'}")


def run_all(args, pack, folder) -> dict:
    from .uncertainty_report import choose, fit_calibration, low_confidence_threshold, prepare_case, score_part

    def load(loaders):
        out = []
        for item in loaders:
            name, loader = item[0], item[1]
            s = item[2] if len(item) > 2 else stride_of(name)
            out.append(prepare_case(name, cached(folder, name, loader, pack, s), pack))
        return out

    val_cases = load(btcv_loaders(args.data, VALIDATION))
    calibration = fit_calibration(val_cases)
    t = calibration["temperature"]
    val0 = score_part(val_cases, pack, t, DEFAULT_OPTION, None)
    chosen = choose(val0)
    val = score_part(val_cases, pack, t, chosen["option"], chosen["review_threshold"])
    chosen["low_confidence"] = low_confidence_threshold(val.components)
    log.info("chosen on validation: T=%.3f %s", t, chosen)
    del val_cases
    test_cases = load(btcv_loaders(args.data, "test"))
    test = score_part(test_cases, pack, t, chosen["option"], chosen["review_threshold"])
    del test_cases
    registry_cases = load(registry_loaders())
    registry = {c.name: score_part([c], pack, t, chosen["option"], chosen["review_threshold"]) for c in registry_cases}
    del registry_cases
    from .uncertainty_render import reliability_figure, render
    from .uncertainty_report import costs

    figure = reliability_figure(test, "docs/images/reliability.png")
    text = render(calibration, chosen, val, test, registry, figure)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return {
        "calibration": calibration,
        "chosen": chosen,
        "test": {o: s.summary() for o, s in test.scores.items()},
        "test_cost": costs(test),
    }


if __name__ == "__main__":
    sys.exit(main())
