"""What anatomical post-processing changes: ``python -m morse.experiments.anatomy`` writes ``docs/results/anatomy.md``.

Two parts, both with the shipped default model (or ``--model``), every scan segmented once and scored without and
with :mod:`morse.inference.anatomy` applied to the same network output:

1. **BTCV test cases** (``--data``, split ``--split``, default the 12 test CTs): DSC and HD95 per organ of the
   refined and the coarse labels, before and after.
2. **Registry scans** (``morse fetch-data``; every sample case, MR, chest CTs and the CT angiogram included): the ml
   of organs in impossible places per scan, before and after: outside the body, and in pieces apart from the organ's
   largest piece (a second liver, a kidney in the heart). The domain notes of each scan are listed too.

Only aggregate numbers are written (the BTCV volumes are never copied). The post-processing settings are the model
pack's; nothing here is tuned on the test cases.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_DATA = "../shared/data/btcv-synapse8"
DEFAULT_OUT = "docs/results/anatomy.md"
VALIDATION_SPLIT = "btcv_0037,btcv_0039,btcv_0040"  # the training cases held out for choosing settings


def _nanmean(values) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _post(volume, ijk_to_ras, result, pack, min_confidence: float | None = None):
    """Copies of the result's refined/coarse labels after post-processing with the pack's settings (``min_confidence``
    replaced when given), and what it removed from the refined labels."""
    from ..inference.anatomy import is_hounsfield, postprocess_volume, settings_from_pack

    settings = settings_from_pack(pack)
    settings.enabled = True
    if min_confidence is not None:
        settings.min_confidence = float(min_confidence)
    refined, coarse = result.labels.copy(), result.coarse_labels.copy()
    post = postprocess_volume(
        volume,
        ijk_to_ras,
        [refined, coarse],
        pack.labels,
        settings,
        hounsfield=is_hounsfield(pack.preprocessing.intensity),
        uncertainty=result.uncertainty,
    )
    return refined, coarse, post


def _btcv_cases(pack, data: str, split: str):
    """``(cases, pairs, classes, names)``: the cases of ``split`` (comma-separated parts) and the model↔dataset
    label matching."""
    from ..data.convert import resolve_dataset
    from ..data.readers import read_dataset, select_split
    from ..evaluation.evaluate_command import _dataset_label_names, match_labels

    path = resolve_dataset(data)
    all_cases = read_dataset(path)
    cases = [c for part in split.split(",") for c in select_split(all_cases, part)]
    pairs = match_labels(pack.labels, _dataset_label_names(path, all_cases))
    return cases, pairs, {dv: name for name, _, dv in pairs}, [name for name, _, _ in pairs]


def _cache_folder(pack, device: str, cache: str | None, name: str) -> Path | None:
    digest = str(pack.meta.get("weights", {}).get("sha256", ""))[:16]  # other weights never read this cache
    if not cache or not digest:
        return None
    return Path(cache) / f"{pack.model_id}-{pack.version}-{digest}-{device}" / name


def _raw_result(image, m, pack, device: str, folder: Path | None):
    """The network's output without post-processing, the uncertainty map included (the confidence rule reads it);
    kept in ``folder`` (labels, coarse labels, uncertainty as uncompressed ``.npy``; None: not kept) and read back
    from there by the next run of the same weights. A result read back carries no messages."""
    from ..inference.pipeline import segment_volume
    from ..inference.result import SegmentationResult

    if folder is not None and (folder / "uncertainty.npy").is_file():
        arrays = {k: np.load(folder / f"{k}.npy") for k in ("labels", "coarse", "uncertainty")}
        saved = folder / "messages.json"
        messages = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
        return SegmentationResult(
            labels=arrays["labels"],
            coarse_labels=arrays["coarse"],
            ijk_to_ras=m,
            labels_info=list(pack.labels),
            uncertainty=arrays["uncertainty"],
            messages=messages.get("messages", []),
            domain={"findings": messages.get("findings", [])},
        )
    result = segment_volume(image, m, model=pack, device=device, gating=False, uncertainty=True, postprocess=False)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "labels.npy", result.labels)
        np.save(folder / "coarse.npy", result.coarse_labels)
        findings = list(result.domain.get("findings", []))
        text = json.dumps({"messages": list(result.messages), "findings": findings})
        (folder / "messages.json").write_text(text, encoding="utf-8")
        np.save(folder / "uncertainty.npy", result.uncertainty)  # last: its presence marks a complete case
    return result


def _segmented(cases, pack, device, cache: str | None = None):
    """``(case, image, reference, ijk_to_ras, result)`` per case with a reference (:func:`_raw_result`; ``cache``: the
    folder of kept network outputs, or None)."""
    from ..data.readers import load_case

    for n, case in enumerate(cases, 1):
        image, label, m = load_case(case)
        if label is None:
            continue
        image = image[0] if image.ndim == 4 else image
        log.info("[%d/%d] %s", n, len(cases), case.name)
        yield case, image, label, m, _raw_result(image, m, pack, device, _cache_folder(pack, device, cache, case.name))


def btcv_part(model: str, data: str, split: str, device: str, cache: str | None = None) -> dict:
    """Per-organ means of DSC and HD95 (mm) before/after post-processing, for the refined and coarse outputs."""
    from ..evaluation.evaluate_command import recode
    from ..inference.anatomy import settings_from_pack
    from ..metrics import compute_metrics, spacing_kji, summarize
    from ..modelpack import load_model_pack

    pack = load_model_pack(model)
    cases, pairs, classes, names = _btcv_cases(pack, data, split)
    scored = {f"{o}/{w}": [] for o in ("refined", "coarse") for w in ("before", "after")}
    removed: dict[str, float] = {n: 0.0 for n in names}
    t0 = time.perf_counter()
    for case, image, label, m, result in _segmented(cases, pack, device, cache):
        refined, coarse, post = _post(image, m, result, pack)
        spacing = spacing_kji(m)
        arrays = {
            "refined/before": result.labels,
            "coarse/before": result.coarse_labels,
            "refined/after": refined,
            "coarse/after": coarse,
        }
        for key, arr in arrays.items():
            scored[key].append(compute_metrics(recode(arr, pairs), label, classes, spacing=spacing, name=case.name))
        for organ, change in post.changes.items():
            removed[organ] = removed.get(organ, 0.0) + change.removed_ml
    summaries = {k: summarize(v, names) for k, v in scored.items()}
    return {
        "model": f"{pack.model_id} {pack.version}",
        "data": data,
        "split": split,
        "cases": [cm.name for cm in scored["refined/before"]],
        "organs": names,
        "summary": {k: _summary_numbers(s, scored[k], names) for k, s in summaries.items()},
        "removed_ml_mean": {k: v / max(1, len(scored["refined/before"])) for k, v in removed.items()},
        "settings": str(settings_from_pack(pack)),
        "wall_time_s": time.perf_counter() - t0,
    }


def confidence_part(
    model: str, data: str, split: str, device: str, thresholds: list[float], cache: str | None = None
) -> dict:
    """The refined labels' DSC/HD95 means with the pack's rules and each ``min_confidence`` of ``thresholds``, every
    case segmented once; and the mean confidence of each organ's largest piece before post-processing (what the
    threshold is compared with). For choosing the threshold on a validation split."""
    from ..evaluation.evaluate_command import recode
    from ..metrics import compute_metrics, spacing_kji, summarize
    from ..modelpack import load_model_pack

    pack = load_model_pack(model)
    cases, pairs, classes, names = _btcv_cases(pack, data, split)
    scored: dict[float | None, list] = {None: [], **{t: [] for t in thresholds}}  # None: no post-processing
    removed: dict[float | None, float] = dict.fromkeys(scored, 0.0)
    confidence: dict[str, list[float]] = {n: [] for n in names}
    done = []
    t0 = time.perf_counter()
    for case, image, label, m, result in _segmented(cases, pack, device, cache):
        done.append(case.name)
        for organ, value in result.confidence().items():
            confidence.setdefault(organ, []).append(value)
        spacing = spacing_kji(m)
        for t in scored:
            refined = result.labels
            if t is not None:
                refined, _, post = _post(image, m, result, pack, min_confidence=t)
                removed[t] += sum(c.low_confidence_ml for c in post.changes.values())
            scored[t].append(compute_metrics(recode(refined, pairs), label, classes, spacing=spacing, name=case.name))
    rows = []
    for t in scored:
        numbers = _summary_numbers(summarize(scored[t], names), scored[t], names)
        rows.append({"min_confidence": t, **numbers, "low_confidence_ml_per_case": removed[t] / max(1, len(done))})
    return {
        "model": f"{pack.model_id} {pack.version}",
        "split": split,
        "cases": done,
        "rows": rows,
        "organ_confidence": {k: v for k, v in confidence.items() if v},
        "wall_time_s": time.perf_counter() - t0,
    }


def _summary_numbers(summary: dict, cases, names) -> dict:
    """Per-organ DSC/HD95 (present-only, as ``morse evaluate``), their means, and the mean DSC over all organs that
    counts an organ predicted where the reference has none as DSC 0."""
    per = {n: {"dsc": summary["per_class"][n]["dsc"], "hd95": summary["per_class"][n]["hd95"]} for n in names}
    from ..evaluation.evaluate_command import dsc_all_organs

    return {
        "per_organ": per,
        "mean_dsc": summary["mean"]["dsc"],
        "mean_hd95": summary["mean"]["hd95"],
        "mean_dsc_all": dsc_all_organs(cases, names),
        "false_positives": summary["false_positives"],
    }


def impossible_ml(volume, ijk_to_ras, labels, labels_info, hounsfield: bool) -> dict[str, dict[str, float]]:
    """Per organ: ml outside the body and ml in pieces apart from the organ's largest piece (26-connected)."""
    from scipy import ndimage

    from ..geometry import AxisReorder, spacing_ijk
    from ..inference.anatomy import body_mask

    reorder = AxisReorder.to_orientation(ijk_to_ras, volume.shape, "LPS")
    sp = spacing_ijk(reorder.reoriented_ijk_to_ras(ijk_to_ras))
    spacing = (float(sp[2]), float(sp[1]), float(sp[0]))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    labels = reorder.apply(labels)
    body = body_mask(reorder.apply(volume), spacing) if hounsfield else None
    boxes = ndimage.find_objects(labels)
    out = {}
    for info in labels_info:
        v = int(info.value)
        if v > len(boxes) or boxes[v - 1] is None:
            continue
        bb = boxes[v - 1]
        organ = labels[bb] == v
        outside = organ & ~body.box(*bb) if body is not None else np.zeros_like(organ)
        comp, count = ndimage.label(organ, structure=np.ones((3, 3, 3), bool))
        detached = 0
        if count > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            detached_mask = (comp != int(np.argmax(sizes))) & organ & ~outside
            detached = int(np.count_nonzero(detached_mask))
        out[info.name] = {
            "outside_body_ml": float(np.count_nonzero(outside)) * voxel_ml,
            "detached_ml": detached * voxel_ml,
            "total_ml": float(np.count_nonzero(organ)) * voxel_ml,
        }
    return out


def registry_part(model: str, device: str, cache: str | None = None) -> list[dict]:
    """Per registry sample case: ml of organs in impossible places before/after, and the notes on the input, checked
    on the post-processed labels as ``morse segment`` does."""
    from ..data.cases import case_path, list_cases
    from ..imageio import read_image
    from ..inference.anatomy import is_hounsfield
    from ..inference.domain import check_domain, domain_of
    from ..modelpack import load_model_pack

    pack = load_model_pack(model)
    hu = is_hounsfield(pack.preprocessing.intensity)
    rows = []
    for case in list_cases():
        image = read_image(case_path(case.name))
        log.info("%s %s", case.name, "×".join(map(str, image.array.shape)))
        folder = _cache_folder(pack, device, cache, f"registry-{case.name}")
        result = _raw_result(image.array, image.ijk_to_ras, pack, device, folder)
        refined, _, post = _post(image.array, image.ijk_to_ras, result, pack)
        raw_findings = set(result.domain.get("findings", []))
        domain = check_domain(
            image.array, image.ijk_to_ras, refined, pack.labels, domain_of(pack), body=post.body, hounsfield=hu
        )
        before = impossible_ml(image.array, image.ijk_to_ras, result.labels, pack.labels, hu)
        after = impossible_ml(image.array, image.ijk_to_ras, refined, pack.labels, hu)
        rows.append(
            {
                "case": case.name,
                "modality": case.modality,
                "description": case.description,
                "before": before,
                "after": after,
                "removed": {k: c.to_dict() for k, c in post.changes.items()},
                "notes": [m for m in result.messages if m not in raw_findings] + domain.messages,
            }
        )
    return rows


def _f(value, digits=3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _totals(organs: dict) -> tuple[float, float]:
    return (
        sum(o["outside_body_ml"] for o in organs.values()),
        sum(o["detached_ml"] for o in organs.values()),
    )


def render(btcv: dict | None, registry: list[dict] | None, command: str, sweep: dict | None = None) -> str:
    lines = [
        "# Anatomical post-processing: before and after",
        "",
        "Post-processing (`morse.inference.anatomy`, on by default; `morse segment --no-postprocess`, "
        '`segment_volume(..., postprocess=False)`, or `"postprocess": false` in the model pack\'s `inference` block '
        "turn it off) keeps each organ inside the body, drops the pieces whose mean confidence is below the pack's "
        "`min_confidence` (0: the rule is off), keeps the largest 26-connected piece left (the left and right "
        "kidneys are separate labels), and removes an organ whose piece is below its minimum size. It is applied to "
        "the refined "
        "and to the coarse labels alike. Every scan below was segmented once and scored on the same network output "
        "without and with it. The settings are the model pack's; none was chosen on the test cases. The shipped "
        "pack sets per-organ minimum sizes and leaves `min_confidence` at 0 (the confidence rule off); the sweep on "
        "the validation cases below says why (`--confidence-sweep`).",
        "",
        f"Regenerate: `{command}` (the BTCV test cases and the registry scans; `--split "
        f"{VALIDATION_SPLIT}` scores the three validation cases of the training split instead, `--confidence-sweep "
        "0,0.5,...` scores `min_confidence` thresholds on those validation cases, `--cache DIR` keeps the network's "
        "outputs for another run, `--json` keeps every number and `--load` renders saved parts).",
        "",
    ]
    if btcv:
        s = btcv["summary"]
        n = len(btcv["cases"])
        lines += [
            f"## BTCV {'test' if btcv['split'] == 'test' else 'validation'} cases ({btcv['model']}, {n} cases, "
            f"split `{btcv['split']}`)",
            "",
            *([f"Post-processing settings: {btcv['settings']}", ""] if btcv.get("settings") else []),
            "DSC and HD95 (mm) per organ, averaged over the cases whose reference has the organ (as "
            "`morse evaluate`). *Mean DSC, all organs* also counts an organ predicted where the reference has none "
            "as DSC 0.",
            "",
            "| organ | DSC before | DSC after | HD95 before | HD95 after | ml removed per case |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for organ in btcv["organs"]:
            b, a = s["refined/before"]["per_organ"][organ], s["refined/after"]["per_organ"][organ]
            lines.append(
                f"| {organ} | {_f(b['dsc'])} | {_f(a['dsc'])} | {_f(b['hd95'], 1)} | {_f(a['hd95'], 1)} | "
                f"{btcv['removed_ml_mean'].get(organ, 0.0):.1f} |"
            )
        lines += [
            "",
            "| output | mean DSC before | after | mean HD95 before | after | mean DSC, all organs: before | after |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for out in ("refined", "coarse"):
            b, a = s[f"{out}/before"], s[f"{out}/after"]
            lines.append(
                f"| {out} | {_f(b['mean_dsc'])} | {_f(a['mean_dsc'])} | {_f(b['mean_hd95'], 1)} | "
                f"{_f(a['mean_hd95'], 1)} | {_f(b['mean_dsc_all'])} | {_f(a['mean_dsc_all'])} |"
            )
        fp_b = sum(s["refined/before"]["false_positives"].values())
        fp_a = sum(s["refined/after"]["false_positives"].values())
        lines += [
            "",
            f"Organs predicted where the reference has none (refined, organ × case): {fp_b} before, {fp_a} after. "
            f"Cases: {', '.join(btcv['cases'])}. Wall time {btcv['wall_time_s']:.0f} s.",
            "",
        ]
    if sweep:
        lines += render_confidence(sweep)
    if registry:
        lines += [
            "## Registry scans: organs in impossible places",
            "",
            "ml of predicted organ voxels (refined labels) **outside the body** (the body: the largest connected "
            "region above −500 HU, holes of every axial slice filled) and in **detached pieces** (apart from the "
            "organ's largest piece: a second liver, a kidney in the heart). The MR has no body mask (its values are "
            "not HU), so only detached pieces are counted there.",
            "",
            "| scan | modality | outside body: before | after | detached: before | after | organs (ml) after |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in registry:
            ob, db = _totals(row["before"])
            oa, da = _totals(row["after"])
            organs = ", ".join(f"{k} {v['total_ml']:.1f}" for k, v in row["after"].items() if v["total_ml"] > 0)
            lines.append(
                f"| {row['case']} | {row['modality']} | {ob:.1f} | {oa:.1f} | {db:.1f} | {da:.1f} | {organs or '–'} |"
            )
        outside = sum(_totals(r["before"])[0] for r in registry)
        lines += [
            "",
            "Detached pieces are what the largest-piece rule removes, so they fall to 0 by construction; "
            + (
                "no scan had organ voxels outside the body, so the body rule changed nothing here. "
                if outside == 0
                else f"{outside:.1f} ml lay outside the body before. "
            )
            + "Organs that are one piece inside the body but in the wrong scan (a liver on a chest CT, any organ on "
            "the MR) are not removed: the notes below flag those scans.",
        ]
        lines += ["", "### Notes on each scan (`morse segment` prints them as `note:`)", ""]
        for row in registry:
            notes = row["notes"] or ["(none)"]
            lines.append(f"- **{row['case']}**: " + " / ".join(notes))
        lines.append("")
    return "\n".join(lines)


def render_confidence(sweep: dict) -> list[str]:
    """The ``min_confidence`` sweep as markdown lines."""
    lines = [
        f"## Choosing `min_confidence` on the validation cases ({sweep['model']}, split `{sweep['split']}`)",
        "",
        "The confidence rule drops every 26-connected piece of an organ whose mean confidence (p_max − p_second of "
        "the coarse softmax, 1 − uncertainty) is below `min_confidence`, before the largest piece is kept. Each row "
        "is the refined labels of the same network outputs with the pack's other rules and that threshold; *off* is "
        "no post-processing at all.",
        "",
        "| min_confidence | mean DSC | mean DSC, all organs | mean HD95 | organs predicted where the reference has "
        "none | ml dropped as unsure per case |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in sweep["rows"]:
        t = row["min_confidence"]
        lines.append(
            f"| {'off' if t is None else f'{t:g}'} | {_f(row['mean_dsc'])} | {_f(row['mean_dsc_all'])} | "
            f"{_f(row['mean_hd95'], 1)} | {sum(row['false_positives'].values())} | "
            f"{row['low_confidence_ml_per_case']:.1f} |"
        )
    conf = sweep.get("organ_confidence", {})
    if conf:
        lines += [
            "",
            "Mean confidence of each organ as predicted (before post-processing), lowest and highest over the cases: "
            + ", ".join(f"{k} {min(v):.2f}–{max(v):.2f}" for k, v in conf.items())
            + f". Cases: {', '.join(sweep['cases'])}. Wall time {sweep['wall_time_s']:.0f} s.",
        ]
    if sweep.get("chosen") is not None:
        lines += ["", sweep["chosen"]]
    else:
        lines += ["", confidence_verdict(sweep["rows"])]
    return [*lines, ""]


def confidence_verdict(rows: list[dict]) -> str:
    """The threshold the validation rows support: the highest mean DSC over all organs (ties: the lower one)."""
    scored = [r for r in rows if r["min_confidence"] is not None]
    best = max(scored, key=lambda r: (r["mean_dsc_all"], -r["min_confidence"]))
    t = best["min_confidence"]
    if t == 0:
        level = [
            r["min_confidence"] for r in scored if r["min_confidence"] > 0 and r["mean_dsc_all"] == best["mean_dsc_all"]
        ]
        what = (
            f"Thresholds up to {max(level):g} leave the mean DSC on these cases as it is and higher ones lower it"
            if level
            else "Every threshold above 0 lowers the mean DSC on these cases"
        )
        return (
            f"{what} (what they drop is mostly real organ tissue: the last column), so the pack keeps "
            "`min_confidence` at 0: the confidence rule stays off."
        )
    return f"Best on these cases: `min_confidence` {t:g} (mean DSC, all organs, {_f(best['mean_dsc_all'])})."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m morse.experiments.anatomy", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"BTCV folder (default {DEFAULT_DATA})")
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"markdown report (default {DEFAULT_OUT})")
    p.add_argument("--json", help="also write every number as JSON here")
    p.add_argument("--skip-btcv", action="store_true")
    p.add_argument("--skip-registry", action="store_true")
    p.add_argument("--load", nargs="+", metavar="JSON", help="render from --json files of earlier runs (no inference)")
    p.add_argument(
        "--confidence-sweep",
        metavar="T,T,...",
        help=f"score these min_confidence thresholds on the validation split {VALIDATION_SPLIT} (never the test cases)",
    )
    p.add_argument("--cache", help="keep each BTCV case's network output here and reuse it (same weights)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    btcv = registry = sweep = None
    for path in args.load or []:  # parts of earlier runs, e.g. the BTCV and the registry part run separately
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        btcv, registry = saved.get("btcv") or btcv, saved.get("registry") or registry
        sweep = saved.get("confidence") or sweep
    if not args.load:
        if args.confidence_sweep:
            try:
                thresholds = [float(t) for t in args.confidence_sweep.split(",")]
            except ValueError:
                p.error(f"--confidence-sweep {args.confidence_sweep!r}: give numbers from 0 to 1, e.g. 0,0.5,0.7")
            sweep = confidence_part(args.model, args.data, VALIDATION_SPLIT, args.device, thresholds, args.cache)
        else:
            btcv = None if args.skip_btcv else btcv_part(args.model, args.data, args.split, args.device, args.cache)
            registry = None if args.skip_registry else registry_part(args.model, args.device, args.cache)
    command = "python -m morse.experiments.anatomy" + ("" if args.split == "test" else f" --split {args.split}")
    text = render(btcv, registry, command, sweep)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if args.json:
        saved = {"btcv": btcv, "registry": registry, "confidence": sweep}
        Path(args.json).write_text(json.dumps(saved, indent=2, default=float) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
