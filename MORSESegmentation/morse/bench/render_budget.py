"""Choosing the adaptive rendering budget: the top-2 margin below which the rendering head re-predicts a cell.

For every case, each batch of slices goes through the default pack's backbone once; its rendering head then runs
with the fixed budget (``render_margin=None``: the ``test_points`` most uncertain cells of every slice, every round)
and with each candidate margin (inside the body, :func:`morse.inference.pipeline.render_region`), and each result is
taken back to the input grid as inference does. Per candidate: the share of voxels whose labels differ from the fixed
budget's, the change of the mean DSC against the reference labels, the cells rendered and the head's seconds (the
labels before anatomical post-processing, which acts on every budget's labels alike). The rule, applied to the
validation cases only: the smallest margin (fewest cells) whose labels differ on < 0.1 % of the voxels of every case
**or** whose mean DSC is within 0.1 DSC points (0.001) of the fixed budget's; the test cases are then run once with
that margin.

``python -m morse.bench.render_budget DATA --cases btcv_0037,btcv_0039,btcv_0040 --margins 0.5,1,2,3 --role
validation --out docs/results/render_budget.json`` stores the run (aggregate numbers only) under its role in that
file, where ``morse bench`` reads it. Cases can run side by side, one process each (``--out`` per case), and
``python -m morse.bench.render_budget merge ROLE OUT PART.json...`` joins them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

MAX_CHANGED_VOXELS = 1e-3  # share of voxels whose labels may differ from the fixed budget's
MAX_DSC_CHANGE = 1e-3  # 0.1 DSC points


def dice_per_organ(pred: np.ndarray, ref: np.ndarray, values: list[int]) -> dict[int, float]:
    """DSC of each label value present in ``pred`` or ``ref`` (same grid); values absent from both are left out."""
    out = {}
    for v in values:
        a, b = pred == v, ref == v
        total = int(a.sum()) + int(b.sum())
        if total:
            out[v] = 2.0 * int(np.logical_and(a, b).sum()) / total
    return out


def budget_labels(image, ijk_to_ras, pack, margins: list[float | None], batch: int = 8) -> dict:
    """Labels on the reoriented input grid ``(D, H, W)`` uint8 for each margin (None: the fixed budget), with the
    cells rendered and the head's seconds; and the prepared volume's axis reorder (to bring the reference along)."""
    from ..inference.label_resize import upsampled_labels
    from ..inference.pipeline import get_model, render_region
    from ..inference.preprocess import crop, pad_to_multiple, prepare, resize

    net = get_model(pack, torch.device("cpu")).eval()
    prep = prepare(image, ijk_to_ras, pack.preprocessing, 2)
    depth, height, width = prep.shape
    runs = {m: {"labels": np.zeros(prep.shape, np.uint8), "cells": 0, "refine_s": 0.0} for m in margins}
    backbone_s = 0.0
    with torch.inference_mode():
        for start in range(0, depth, batch):
            x = torch.from_numpy(prep.image[start : start + batch]).unsqueeze(1)
            x, size = pad_to_multiple(resize(x, prep.model_shape[1:]), net.size_multiple)
            x = x.contiguous(memory_format=torch.channels_last)
            t0 = time.perf_counter()
            out = net.backbone(x)
            backbone_s += time.perf_counter() - t0
            within = render_region(x, pack.preprocessing.intensity)
            for margin, run in runs.items():
                t0 = time.perf_counter()
                prepared = net.features.prepare(out.experts, net.cfg.point_head.test_points)
                refined, rectified = net._refine(out.logits, out.experts, prepared, margin, within)
                run["refine_s"] += time.perf_counter() - t0
                run["cells"] += int(rectified.sum())
                labels = upsampled_labels(crop(refined.float(), size), (height, width))
                run["labels"][start : start + batch] = labels
    return {"runs": runs, "reorder": prep.reorder, "backbone_s": backbone_s}


def compare_case(image, label, ijk_to_ras, pack, margins: list[float], pairs) -> dict:
    """One case: the fixed budget and each margin → their labels' differences, DSC, rendered cells and seconds."""
    from ..evaluation.evaluate_command import recode

    values = [data_value for _, _, data_value in pairs]
    done = budget_labels(image, ijk_to_ras, pack, [None, *margins])
    reference = done["reorder"].apply(np.asarray(label))
    fixed = done["runs"][None]["labels"]
    out = {}
    for margin, run in done["runs"].items():
        dsc = dice_per_organ(recode(run["labels"], pairs), reference, values)
        out["fixed" if margin is None else f"{margin:g}"] = {
            "changed_share": float(np.count_nonzero(run["labels"] != fixed)) / fixed.size,
            "mean_dsc": float(np.mean(list(dsc.values()))) if dsc else float("nan"),
            "rendered_cells": run["cells"],
            "refine_s": run["refine_s"],
            "backbone_s": done["backbone_s"],
        }
    return out


def summarize(per_case: dict[str, dict], margins: list[float]) -> dict:
    """Per candidate margin across cases: worst and mean changed share, mean DSC change, cells and seconds."""
    out = {}
    fixed_dsc = np.mean([c["fixed"]["mean_dsc"] for c in per_case.values()])
    fixed_cells = sum(c["fixed"]["rendered_cells"] for c in per_case.values())
    fixed_refine = sum(c["fixed"]["refine_s"] for c in per_case.values())
    for key in ["fixed", *(f"{m:g}" for m in margins)]:
        rows = [c[key] for c in per_case.values()]
        cells = sum(r["rendered_cells"] for r in rows)
        refine = sum(r["refine_s"] for r in rows)
        out[key] = {
            "max_changed_share": max(r["changed_share"] for r in rows),
            "mean_changed_share": float(np.mean([r["changed_share"] for r in rows])),
            "mean_dsc": float(np.mean([r["mean_dsc"] for r in rows])),
            "dsc_change": float(np.mean([r["mean_dsc"] for r in rows]) - fixed_dsc),
            "cells_share_of_fixed": cells / max(1, fixed_cells),
            "refine_share_of_fixed": refine / fixed_refine if fixed_refine > 0 else float("nan"),
        }
    return out


def acceptable(row: dict) -> bool:
    """The budget's criterion: labels differ on < 0.1 % of voxels (every case) or the mean DSC within 0.1 points."""
    return row["max_changed_share"] < MAX_CHANGED_VOXELS or abs(row["dsc_change"]) <= MAX_DSC_CHANGE


def choose_margin(summary: dict, margins: list[float]) -> float | None:
    """The smallest acceptable margin (fewest rendered cells), None when none is acceptable."""
    for m in sorted(margins):
        if acceptable(summary[f"{m:g}"]):
            return m
    return None


def merge(parts: list[dict]) -> dict:
    """One report from runs of the same role over disjoint cases (run side by side, one process per case)."""
    per_case = {name: runs for part in parts for name, runs in part["per_case"].items()}
    margins = parts[0]["margins"]
    if any(part["margins"] != margins or part["model"] != parts[0]["model"] for part in parts):
        raise ValueError("the runs to merge used different margins or models")
    summary = summarize(per_case, margins)
    return {
        "model": parts[0]["model"],
        "cases": list(per_case),
        "margins": margins,
        "summary": summary,
        "chosen": choose_margin(summary, margins),
        "per_case": per_case,
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["merge"]:  # merge ROLE OUT PART.json...: per-case runs into one stored report
        role, out, files = argv[1], Path(argv[2]), argv[3:]
        parts = [json.loads(Path(f).read_text(encoding="utf-8"))[role] for f in files]
        stored = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
        stored[role] = merge(parts)
        stored["test_points"] = json.loads(Path(files[0]).read_text(encoding="utf-8")).get("test_points")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(stored, indent=1), encoding="utf-8")
        print(json.dumps({"summary": stored[role]["summary"], "chosen": stored[role]["chosen"]}, indent=1))
        return 0
    from ..data.convert import resolve_dataset
    from ..data.readers import load_case, read_dataset
    from ..evaluation.evaluate_command import match_labels
    from ..modelpack import load_model_pack

    parser = argparse.ArgumentParser(prog="python -m morse.bench.render_budget", description=__doc__.split("\n")[0])
    parser.add_argument("data", help="dataset folder (nnU-Net layout)")
    parser.add_argument("--cases", required=True, help="comma-separated case names")
    parser.add_argument("--margins", required=True, help="comma-separated candidate margins (logits)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", required=True, type=Path, help="JSON file; the run is stored under --role")
    parser.add_argument("--role", choices=("validation", "test"), required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    margins = [float(m) for m in args.margins.split(",")]
    wanted = args.cases.split(",")
    data_path = resolve_dataset(args.data)
    cases = {c.name: c for c in read_dataset(data_path)}
    missing = [n for n in wanted if n not in cases]
    if missing:
        print(f"error: {data_path} has no case {', '.join(missing)}", file=sys.stderr)
        return 2
    pack = load_model_pack(args.model)
    from ..data.readers import dataset_labels

    pairs = match_labels(list(pack.labels), dataset_labels(data_path))
    per_case = {}
    for name in wanted:
        image, label, ijk_to_ras = load_case(cases[name])
        per_case[name] = compare_case(image, label, ijk_to_ras, pack, margins, pairs)
        log.info("%s %s", name, json.dumps(per_case[name]))
    summary = summarize(per_case, margins)
    report = {
        "model": f"{pack.model_id} {pack.version}",
        "cases": wanted,
        "margins": margins,
        "summary": summary,
        "chosen": choose_margin(summary, margins),
        "per_case": per_case,
    }
    stored = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    stored[args.role] = report
    stored["test_points"] = int(pack.config.point_head.test_points)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stored, indent=1), encoding="utf-8")
    print(json.dumps({"summary": summary, "chosen": report["chosen"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
