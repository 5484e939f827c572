"""``morse evaluate --model M --data DATASET [--split test] [--units mm|voxel] [--convention default|paper]``.

For every case of the split: load image + reference label (:func:`morse.data.readers.load_case`), segment with
:func:`morse.inference.pipeline.segment_volume` (refinement on, no gating/uncertainty maps), and compute per-organ
DSC, Jaccard, HD95 and ASD (:mod:`morse.metrics`) of the coarse output (the backbone's own head) and of the refined
output (after the rendering head). Prints the Table-1-style summary and, with ``-o DIR``, writes
``evaluation.md``, ``evaluation.csv`` and ``evaluation.json`` (every number: per case, per output, per organ).

Model classes are matched to dataset classes by name (``kidney_left`` = ``left kidney`` = ``Kidney Left``); the
prediction is recoded to the dataset's label values before scoring. Datasets without label names (plain file lists)
are assumed to use the model's values.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError, OutputError
from ..metrics import CaseMetrics, compute_metrics, spacing_kji, summarize
from .tables import render_case_markdown, render_csv, render_markdown

log = logging.getLogger(__name__)

OUTPUTS = ("coarse", "refined")
_SIDE = {"l": "left", "r": "right", "lt": "left", "rt": "right"}


def normalize_name(name: str) -> str:
    """Order- and separator-insensitive class name: ``"Kidney (L)"``, ``"left kidney"`` → ``"kidney_left"``."""
    tokens = [t for t in re.split(r"[\s_\-(),./]+", name.lower()) if t]
    return "_".join(sorted(_SIDE.get(t, t) for t in tokens))


def match_labels(model_labels, dataset_labels: dict[str, int] | None) -> list[tuple[str, int, int]]:
    """``[(name, model value, dataset value)]`` for the classes both sides know (model order).

    ``model_labels``: the model's ``LabelInfo`` list (background excluded). ``dataset_labels``: name → value from the
    dataset (background ignored), or None to take the model's values as the dataset's.
    """
    if dataset_labels is None:
        return [(info.name, int(info.value), int(info.value)) for info in model_labels]
    by_norm = {normalize_name(n): (n, int(v)) for n, v in dataset_labels.items() if int(v) != 0}
    matched = []
    for info in model_labels:
        hit = by_norm.get(normalize_name(info.name))
        if hit is not None:
            matched.append((info.name, int(info.value), hit[1]))
    if not matched:
        raise DataError(
            f"none of the model's classes ({', '.join(i.name for i in model_labels)}) match the dataset's labels "
            f"({', '.join(n for n, v in dataset_labels.items() if v != 0)}); evaluate a model trained for these labels"
        )
    return matched


def recode(labels: np.ndarray, pairs: list[tuple[str, int, int]]) -> np.ndarray:
    """Model label values → dataset values (uint8); classes the dataset does not have become 0."""
    lut = np.zeros(256, dtype=np.uint8)
    for _, model_value, data_value in pairs:
        lut[model_value] = data_value
    return lut[np.asarray(labels, dtype=np.uint8)]


def dsc_all_organs(cases, class_names) -> float:
    """Mean DSC over every organ, each averaged over the cases where the reference or the prediction has it: an
    organ predicted where the reference has none counts as DSC 0 (the "present only" means leave those cases out)."""
    means = []
    for name in class_names:
        values = []
        for cm in cases:
            status = cm.status.get(name)
            if status in ("present", "missed"):
                values.append(cm.per_class[name]["dsc"])
            elif status == "false_positive":
                values.append(0.0)
        values = [v for v in values if not math.isnan(v)]
        if values:
            means.append(float(np.mean(values)))
    return float(np.mean(means)) if means else float("nan")


def _load_pack(model: str):
    """The model pack, loaded once for all cases."""
    from ..modelpack import load_model_pack

    return load_model_pack(model)


def _dataset_label_names(data_path: Path, cases) -> dict[str, int] | None:
    from ..data import synapse8
    from ..data.readers import dataset_format, dataset_labels

    kind = dataset_format(data_path)
    if kind == "nnunet":
        return dataset_labels(data_path)
    if kind == "synapse":
        return synapse8.nnunet_labels()  # the TransUNet layout is Synapse-8 by definition
    return None


def evaluate(
    model: str,
    data: str,
    split: str = "test",
    units: str = "mm",
    convention: str = "default",
    device: str = "auto",
    variants: tuple[tuple[str, str], ...] = (),
    postprocess: bool | None = None,
) -> dict:
    """Run the evaluation and return a JSON-ready report (see :func:`write_report` for the files).

    variants: further ``(units, convention)`` pairs scored on the same predictions, so one inference pass gives
    e.g. our mm/default table and the paper's voxel/paper one; their summaries go under ``report["variants"]``
    keyed ``"units/convention"``.
    postprocess: the anatomical post-processing of both outputs (None: as the model pack says).
    """
    from ..data.convert import resolve_dataset
    from ..data.readers import load_case, read_dataset
    from ..inference.pipeline import segment_volume

    data_path = resolve_dataset(data)
    all_cases = read_dataset(data_path)
    cases = _split_cases(data, all_cases, split)
    pack = _load_pack(model)
    model_labels = list(getattr(pack, "labels", None) or [])
    dataset_names = _dataset_label_names(data_path, all_cases)
    meta = _dataset_meta(data_path)

    per_case: list[dict] = []
    metrics: dict[str, list[CaseMetrics]] = {o: [] for o in OUTPUTS}
    extra = {f"{u}/{c}": {o: [] for o in OUTPUTS} for u, c in variants if (u, c) != (units, convention)}
    pairs = match_labels(model_labels, dataset_names) if model_labels else None
    model_id = model_version = device_used = ""
    postprocessed = False
    if units == "mm" and any(c.format.startswith("synapse") for c in cases):
        log.warning("the Synapse npz/h5 files carry no voxel size: 'mm' distances on them are in voxels")
    t0 = time.perf_counter()
    for n, case in enumerate(cases, 1):
        image, label, ijk_to_ras = load_case(case)
        if label is None:
            log.warning("case %s has no reference label; skipped", case.name)
            continue
        image = _single_channel(image, case.name)
        log.info("[%d/%d] %s %s", n, len(cases), case.name, "×".join(map(str, image.shape)))
        result = segment_volume(
            image,
            ijk_to_ras,
            model=pack,
            device=device,
            refine=True,
            gating=False,
            uncertainty=False,
            postprocess=postprocess,
        )
        model_id, model_version, device_used = result.model_id, result.model_version, result.device
        postprocessed = bool(getattr(result, "postprocess", {}).get("enabled"))
        if pairs is None:
            pairs = match_labels(result.labels_info, dataset_names)
        spacing = spacing_kji(ijk_to_ras)
        entry = {
            "case": case.name,
            "subject": case.subject,
            "shape_kji": list(image.shape),
            "spacing_kji_mm": list(spacing),
            "timings_s": result.timings,
            "messages": result.messages,
        }
        scored = _score_outputs(result, label, pairs, spacing, [(units, convention), *extra], case.name)
        for output in OUTPUTS:
            metrics[output].append(scored[(units, convention)][output])
            entry[output] = scored[(units, convention)][output].to_dict()
            for key, variant in extra.items():
                variant[output].append(scored[key][output])
        entry["changed_voxels"] = int(np.count_nonzero(result.labels != result.coarse_labels))
        per_case.append(entry)
    if not per_case:
        raise DataError(f"{data}: no case of split {split!r} has a reference label; nothing to evaluate")

    class_names = [name for name, _, _ in pairs]
    summaries = _summaries(metrics, class_names)
    return {
        "model": {"spec": model, "id": model_id, "version": model_version},
        "data": {
            "spec": data,
            "path": str(data_path),
            "split": split,
            "cases": [c["case"] for c in per_case],
            "subjects": sorted({c["subject"] for c in per_case}),
            "provenance": meta.get("provenance"),
        },
        "units": units,
        "convention": convention,
        "device": device,
        "device_used": device_used,
        "postprocess": postprocessed,
        "classes": [{"name": n, "model_value": mv, "dataset_value": dv} for n, mv, dv in pairs],
        "summary": summaries,
        "variants": {key: _summaries(scored, class_names) for key, scored in extra.items()},
        "per_case": per_case,
        "wall_time_s": time.perf_counter() - t0,
        "_case_metrics": metrics,
    }


def _split_cases(data: str, all_cases: list, split: str) -> list:
    """The cases of ``split``; a split without cases is an error that names the splits there are."""
    from ..data.readers import select_split

    cases = select_split(all_cases, split)
    if not cases:
        splits = sorted({c.split or "unspecified" for c in all_cases})
        raise DataError(f"{data}: split {split!r} has no cases (the dataset has: {', '.join(splits)}); use --split")
    return cases


def _single_channel(image: np.ndarray, case: str) -> np.ndarray:
    """``(K, J, I)`` from a case image that may carry a leading channel axis of one."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise InputError(f"case {case} has {image.shape[0]} channels; MORSE models take one")
        image = image[0]
    return image


def _score_outputs(result, label: np.ndarray, pairs, spacing, scorings, case: str) -> dict:
    """``{(units, convention): {output: CaseMetrics}}`` of the coarse and refined labels of one case.

    ``pairs``: ``(name, model value, dataset value)`` per class; the predictions are recoded to the dataset's values.
    ``scorings``: ``(units, convention)`` pairs, or ``"units/convention"`` keys.
    """
    classes = {data_value: name for name, _, data_value in pairs}
    out: dict = {}
    for output in OUTPUTS:
        pred = recode(result.labels if output == "refined" else result.coarse_labels, pairs)
        for scoring in scorings:
            units, convention = scoring.split("/") if isinstance(scoring, str) else scoring
            out.setdefault(scoring, {})[output] = compute_metrics(
                pred, label, classes, spacing=spacing, units=units, convention=convention, name=case
            )
    return out


def _summaries(scored: dict[str, list[CaseMetrics]], class_names: list[str]) -> dict[str, dict]:
    """:func:`morse.metrics.summarize` of each output, with the literature's mean DSC over all organs."""
    out = {o: summarize(scored[o], class_names) for o in OUTPUTS}
    for o in OUTPUTS:
        out[o]["mean_dsc_all_organs"] = dsc_all_organs(scored[o], class_names)
    return out


def _dataset_meta(data_path: Path) -> dict:
    try:
        return json.loads((data_path / "dataset.json").read_text(encoding="utf-8")).get("morse") or {}
    except (OSError, ValueError):
        return {}


def _row_names(report: dict) -> dict[str, str]:
    model = report["model"]["id"] or Path(str(report["model"]["spec"])).name
    return {"coarse": f"{model} coarse (backbone head)", "refined": f"{model} refined (MORSE)"}


def render_report(report: dict) -> tuple[str, str]:
    """``(markdown, csv)`` of an :func:`evaluate` report."""
    units, conv = report["units"], report["convention"]
    names = _row_names(report)
    rows = [(names[o], report["summary"][o]) for o in OUTPUTS]
    classes = [c["name"] for c in report["classes"]]
    n_cases = len(report["per_case"])
    lines = [
        f"# Evaluation of {report['model']['id'] or report['model']['spec']} {report['model']['version']}".rstrip(),
        "",
        f"- data: `{report['data']['spec']}`, split `{report['data']['split']}`: {n_cases} case(s) "
        f"({', '.join(report['data']['cases'])}); subjects {', '.join(report['data']['subjects'])}",
        f"- metrics: DSC, Jaccard, HD95, ASD per organ in **{units}**, convention **{conv}** "
        + (
            "(MONAI definitions; undefined values excluded from means)"
            if conv == "default"
            else "(TransUNet/MORSE scripts: medpy HD95/ASD, empty-mask rules 1/1/0/0 and 0/0/0/0)"
        ),
        "- means: per organ over the cases where it is defined, then over organs; organs absent from every "
        "reference show as –",
        "- anatomical post-processing (one piece per organ, inside the body, plausible size): "
        + ("on" if report.get("postprocess") else "off"),
    ]
    for output in OUTPUTS:
        fps = {c: n for c, n in report["summary"][output].get("false_positives", {}).items() if n}
        if fps and conv == "default":
            listed = ", ".join(f"{c} ({n} case{'s' if n > 1 else ''})" for c, n in fps.items())
            lines.append(
                f"- {output}: organs predicted where the reference has none (not in the DSC columns): {listed}"
            )
    if report["data"].get("provenance"):
        lines.append(
            "- **references are TotalSegmentator predictions** (silver standard): these numbers measure agreement "
            f"with TotalSegmentator on {n_cases} case(s), not accuracy, and are not comparable with Synapse results"
        )
    if conv == "default":
        summary = report["summary"]
        means = ", ".join(
            f"{o} {summary[o]['mean']['dsc']:.3f} (all organs {summary[o]['mean_dsc_all_organs']:.3f})"
            for o in OUTPUTS
            if "mean_dsc_all_organs" in summary[o]
        )
        lines.append(
            "- mean DSC over the organs present in each reference, and (all organs) counting every organ predicted "
            f"where the reference has none as DSC 0: {means}"
        )
    lines += ["", render_markdown(rows, classes, units=units)]
    per_case = [(c, o, cm) for o in OUTPUTS for c, cm in zip(report["data"]["cases"], report["_case_metrics"][o])]
    lines += [
        "## Per case (mean over the organs present in the reference)",
        "",
        render_case_markdown(per_case, units=units),
    ]
    device = report.get("device_used") or report["device"]
    lines += [f"Wall time {report['wall_time_s']:.1f} s on device `{device}`.", ""]
    return "\n".join(lines), render_csv(rows, classes, units=units)


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write ``evaluation.md``, ``evaluation.csv``, ``evaluation.json`` into ``out_dir``; return their paths."""
    md, csv_text = render_report(report)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "md": out_dir / "evaluation.md",
            "csv": out_dir / "evaluation.csv",
            "json": out_dir / "evaluation.json",
        }
        paths["md"].write_text(md, encoding="utf-8")
        paths["csv"].write_text(csv_text, encoding="utf-8")
        public = {k: v for k, v in report.items() if not k.startswith("_")}
        paths["json"].write_text(json.dumps(_clean(public), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the evaluation into {out_dir}: {exc}") from exc
    return paths


def _clean(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def run(args: argparse.Namespace) -> int:
    report = evaluate(
        model=args.model,
        data=args.data,
        split=args.split,
        units=args.units,
        convention=args.convention,
        device=args.device,
        postprocess=getattr(args, "postprocess", None),
    )
    md, _ = render_report(report)
    print(md)
    if args.out:
        paths = write_report(report, Path(args.out))
        print(f"wrote {paths['md']}, {paths['csv']}, {paths['json']}")
    return 0
