"""Markdown and the reliability figure of :mod:`morse.experiments.uncertainty`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..uncertainty import maps
from ..uncertainty.measures import NEAR_MM

COMMAND = "python -m morse.experiments.uncertainty"

_WHAT = {
    "margin": "1 − top-2 margin, coarse head (the map before this work)",
    "refined-margin": "1 − top-2 margin, refined logits",
    "refined-entropy": "entropy of the refined softmax / log C",
    "disagreement": "½·Σ|p_coarse − p_refined| (coarse vs rendering head)",
    "entropy+disagreement": "max(refined entropy, head disagreement)",
    "mc-entropy": "entropy of the mean over expert-routing samples",
    "mc-mutual": "refined entropy + mutual information (routing)",
    "flip-entropy": "entropy of the mean of plain and mirrored pass",
    "flip-disagreement": "max(refined entropy, ½·Σ|p − p_mirrored|)",
}


def _f(v, d=3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def reliability_figure(part, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), dpi=110)
    for ax, region in zip(axes, ("near", "all")):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        for key, colour in (("T=1", "tab:red"), ("T", "tab:blue")):
            rel = part.reliability[f"{key}/{region}"]
            conf, acc, count = rel.curve()
            ok = count > 0
            label = ("uncalibrated" if key == "T=1" else "temperature-scaled") + f", ECE {rel.ece():.4f}"
            ax.plot(conf[ok], acc[ok], "o-", color=colour, label=label, ms=4)
        ax.set_xlabel("confidence (probability of the final label)")
        ax.set_ylabel("accuracy")
        ax.set_title("voxels near organs" if region == "near" else "all voxels")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Reliability on the 12 BTCV test cases (refined head, default pack)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _option_table(part, cost) -> list[str]:
    lines = [
        "| option | what | AUROC all | AUROC near organs | error in top 5 % (near) | error in top 5 % (scan) "
        "| cost × refined |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for o in maps.OPTIONS:
        s = part.scores[o].summary()
        lines.append(
            f"| `{o}` | {_WHAT[o]} | {_f(s['auroc_all'])} | {_f(s['auroc_near'])} | {_f(100 * s['top5_near'], 1)} % "
            f"| {_f(100 * s['top5_scan'], 1)} % | {_f(cost[o], 2)} |"
        )
    return lines


def render(calibration, chosen, val, test, registry, figure) -> str:
    from .uncertainty_cache import REGISTRY, SAMPLES, STRIDES, TEST_STRIDE, VAL_STRIDE, VALIDATION
    from .uncertainty_report import (
        DETECTED_COVER,
        INVENTED_OVERLAP,
        MIN_REGION_ML,
        MISSED_FRACTION,
        OPENING_MM,
        component_auroc,
        costs,
    )

    best = chosen["option"]
    ts = test.scores[best].summary()
    old = test.scores["margin"].summary()
    test_cost = costs(test)
    lines = [
        "# Uncertainty that finds errors",
        "",
        f"Regenerate: `{COMMAND}` (needs the BTCV folder `../shared/data/btcv-synapse8` and `morse fetch-data`; the "
        "network's per-case outputs are cached under `runs/uncertainty-cache/`). Model: the shipped default pack "
        "`abdomen-ct-morse2d` (2D UNet + SMoE + rendering head), weights unchanged.",
        "",
        "## What is measured",
        "",
        "- **Grid.** Every number is on the pack's model grid (2 mm in-plane, the scan's own slices), where the "
        "network's outputs live; references are resampled to it by nearest neighbour.",
        f"- **Slices.** BTCV: every {TEST_STRIDE}th axial slice of each test case, every {VAL_STRIDE}th of each "
        "validation case ("
        + ", ".join(f"{k}: every {v}th" for k, v in STRIDES.items())
        + ") (a 2D model sees each slice alone, so these slices get exactly the values of a full run; the "
        "CPU time for all passes on every slice was not available on the shared machine). "
        "On these stacks the anatomical post-processing is off (its one-piece rule cannot be judged on every "
        "n-th slice), so the labels are the refined head's argmax. Registry scans: "
        + ", ".join(f"`{k}` every {'' if v == 1 else f'{v}th '}slice" for k, v in REGISTRY.items())
        + " (post-processed as `morse segment` does when every slice is there).",
        "- **Mislabelled**: final label ≠ reference. **Near organs**: voxels within "
        f"{NEAR_MM:g} mm, in their own axial slice, of a voxel that the reference or the prediction labels as an "
        "organ. Every mislabelled voxel lies there, so the near-organ AUROC compares errors with the correct "
        "voxels around and inside the organs, without the easy air and far-away tissue.",
        "- **Top 5 %**: the share of the error volume among the 5 % most uncertain voxels, of the near-organ region "
        "(strict) and of the whole scan.",
        f"- **Settings chosen on the validation cases only** ({VALIDATION}, held out of training): the temperature, "
        f"the default option (best near-organ AUROC among options costing ≤ {1.3:g}× the refined run), the review "
        "threshold and the organ low-confidence threshold. The test cases were scored once with them.",
        f"- **Cost**: seconds of the network (backbone + rendering head) plus the option's extra passes and its map, "
        "over the network seconds of the refined run, summed over the cases (single process, 2 shared cores). "
        "Reading, resampling and writing, which every option shares, are left out, so whole-run ratios are lower. "
        f"Monte-Carlo: {SAMPLES} routing samples at the rendered cells (the head and the SMoE's gating/fusion only; "
        "the backbone and the experts' point features are reused).",
        "",
        "## Calibration (validation cases)",
        "",
        f"Temperature T = {calibration['temperature']:.3f} (negative log-likelihood of the reference on "
        f"{calibration['voxels']} near-organ validation voxels: {calibration['nll_before']:.4f} at T = 1, "
        f"{calibration['nll_after']:.4f} at T). Stored in the pack's `model.json` → `calibration` with the "
        "settings below. Monte-Carlo options use T = 1 (their samples were drawn uncalibrated).",
        "",
        f"Chosen: option **`{best}`**, review threshold {chosen['review_threshold']:.3f} (the top-5 % cut of the "
        f"validation near-organ voxels), organ low-confidence flag below {chosen['low_confidence']:.2f}.",
        "",
        "Validation (for the choice, not a result):",
        "",
        *_option_table(val, costs(val)),
        "",
        "## BTCV test cases (12), scored once",
        "",
        *_option_table(test, test_cost),
        "",
        f"Targets: AUROC near organs ≥ 0.80 — **{_f(ts['auroc_near'])}** with `{best}` "
        f"({'met' if ts['auroc_near'] >= 0.8 else 'missed'}); today's map (`margin`, re-measured on this model): "
        f"{_f(old['auroc_near'])}. ≥ 70 % of the error volume in the flagged 5 %: "
        f"**{_f(100 * ts['top5_near'], 1)} %** of the near-organ region "
        f"({'met' if ts['top5_near'] >= 0.7 else 'missed'}), {_f(100 * ts['top5_scan'], 1)} % of the scan "
        f"({'met' if ts['top5_scan'] >= 0.7 else 'missed'}). Default within {1.3:g}×: "
        f"`{best}` at {_f(test_cost[best], 2)}× on the test cases.",
        "",
        "Per-case means (near organs): "
        + ", ".join(f"`{o}` AUROC {_f(test.scores[o].summary()['mean_case_auroc_near'])}" for o in ("margin", best))
        + ".",
        "",
        "### Reliability",
        "",
        f"![reliability]({Path(figure).relative_to('docs').as_posix() if figure.startswith('docs') else figure})",
        "",
        "| voxels | ECE at T = 1 | ECE at T |",
        "| --- | ---: | ---: |",
        f"| near organs | {_f(test.reliability['T=1/near'].ece(), 4)} | {_f(test.reliability['T/near'].ece(), 4)} |",
        f"| all | {_f(test.reliability['T=1/all'].ece(), 4)} | {_f(test.reliability['T/all'].ece(), 4)} |",
        "",
    ]
    lines += _component_section(test, best, chosen, INVENTED_OVERLAP, MISSED_FRACTION, DETECTED_COVER, component_auroc)
    lines += [
        f"Review regions (`{best}` ≥ {chosen['review_threshold']:.3f}, in-plane opening {OPENING_MM:g} mm, at least "
        f"{MIN_REGION_ML:g} ml): " + _region_summary(test.regions),
        "",
        "## Registry scans (reference: TotalSegmentator output, a silver standard)",
        "",
        "| scan | option | AUROC all | AUROC near organs | error in top 5 % (near) | (scan) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, part in registry.items():
        for o in ("margin", best):
            s = part.scores[o].summary()
            lines.append(
                f"| {name} | `{o}` | {_f(s['auroc_all'])} | {_f(s['auroc_near'])} | {_f(100 * s['top5_near'], 1)} % "
                f"| {_f(100 * s['top5_scan'], 1)} % |"
            )
    lines += [""]
    for name, part in registry.items():
        lines.append(f"- **{name}** review regions: " + _region_summary(part.regions))
    lines.append("")
    return "\n".join(lines)


def _region_summary(regions: list[dict]) -> str:
    if not regions:
        return "none."
    ranked = sorted(regions, key=lambda r: -r["score"])
    total = sum(r["ml"] for r in regions)
    err = sum(r["ml"] * r["error_fraction"] for r in regions)
    by_case: dict[str, list[dict]] = {}
    for r in ranked:
        by_case.setdefault(r["case"], []).append(r)
    top = [r for rs in by_case.values() for r in rs[:5]]
    top_err = np.mean([r["error_fraction"] for r in top]) if top else float("nan")
    real = sum(r["error_fraction"] >= 0.5 for r in top)
    return (
        f"{len(regions)} regions, {total:.1f} ml, {100 * err / max(total, 1e-9):.0f} % of it mislabelled; the first "
        f"five per case: mean {100 * top_err:.0f} % mislabelled, {real} of {len(top)} mostly (≥ 50 %) mislabelled."
    )


def _component_section(part, best, chosen, overlap, missed_fraction, cover, component_auroc) -> list[str]:
    comps = part.components
    invented = [c for c in comps if c["invented"]]
    flagged = [c for c in comps if c["confidence"] < chosen["low_confidence"]]
    hits = [c for c in flagged if c["invented"]]
    lines = [
        "### Components",
        "",
        f"Predicted components (26-connected pieces of each organ label): {len(comps)}, of which {len(invented)} "
        f"invented (less than {100 * overlap:.0f} % of the piece is that organ in the reference). Separating "
        f"invented from real pieces: AUROC {_f(component_auroc(comps, 'confidence'))} by 1 − mean `{best}`, "
        f"{_f(component_auroc(comps, 'max_probability'))} by mean max-probability. The organ flag *low confidence* "
        f"(< {chosen['low_confidence']:.2f}) marks {len(flagged)} pieces, {len(hits)} of them invented "
        f"({len(hits)}/{len(invented)} of the invented pieces; invented volume flagged "
        f"{sum(c['ml'] for c in hits):.1f} of {sum(c['ml'] for c in invented):.1f} ml).",
        "",
    ]
    missed = part.missed
    lines += [
        f"Missed structures (reference organs of at least 1 ml with ≥ {100 * missed_fraction:.0f} % of their volume "
        f"not labelled as themselves): {len(missed)}. Found by the review regions (they cover ≥ {100 * cover:.0f} % "
        f"of the missed part): {sum(m['found_by_regions'] for m in missed)}; flagged *absent* in the organ table: "
        f"{sum(m['absent_flag'] for m in missed)}; found by either: "
        f"{sum(m['found_by_regions'] or m['absent_flag'] for m in missed)}.",
        "",
    ]
    if missed:
        lines += [
            "| case | organ | reference ml | missed share | predicted ml | covered by regions |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for m in missed:
            lines.append(
                f"| {m['case']} | {m['organ']} | {m['ml']:.1f} | {100 * m['missed_share']:.0f} % | "
                f"{m['predicted_ml']:.1f} | {100 * m['region_cover']:.0f} % |"
            )
        lines.append("")
    return lines
