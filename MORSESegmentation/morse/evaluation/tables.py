"""Results tables in the layout of the paper's Table 1: one row per method or output, mean DSC, mean HD95, then the
DSC of each organ. DSC is shown in percent (2 decimals), HD95 in the units the metrics were computed in.

Input rows are ``(row name, summary)`` pairs where ``summary`` is what :func:`morse.metrics.summarize` returns
(``{"per_class": {organ: {metric: value}}, "mean": {metric: value}, "cases": n}``). Undefined values (NaN: e.g. an
organ absent from every reference) print as "–" in markdown and as an empty field in CSV.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from ..data import synapse8
from ..metrics import CaseMetrics

Row = tuple[str, dict]


def _organ_header(organ: str) -> str:
    return synapse8.DISPLAY_NAMES.get(organ, organ.replace("_", " ").capitalize())


def _organs_of(rows: Sequence[Row], organs: Sequence[str] | None) -> list[str]:
    if organs is not None:
        return list(organs)
    seen: dict[str, None] = {}
    for _, summary in rows:
        seen.update(dict.fromkeys(summary.get("per_class", {})))
    # Synapse-8 organs in Table 1 order first, anything else after, in first-seen order.
    known = [o for o in synapse8.ORGANS if o in seen]
    return known + [o for o in seen if o not in known]


def table_rows(rows: Sequence[Row], organs: Sequence[str] | None = None) -> tuple[list[str], list[list[float]]]:
    """``(organs, values)``: per row ``[mean DSC %, mean HD95, organ DSC % ...]`` (NaN where undefined)."""
    organs = _organs_of(rows, organs)
    values = []
    for _, summary in rows:
        mean = summary.get("mean", {})
        per_class = summary.get("per_class", {})
        line = [100.0 * mean.get("dsc", math.nan), mean.get("hd95", math.nan)]
        line += [100.0 * per_class.get(o, {}).get("dsc", math.nan) for o in organs]
        values.append(line)
    return organs, values


def _fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def render_markdown(
    rows: Sequence[Row],
    organs: Sequence[str] | None = None,
    units: str = "mm",
    first_header: str = "Method",
    caption: str | None = None,
) -> str:
    """A GitHub markdown table: ``| Method | DSC (%) ↑ | HD95 (mm) ↓ | Aorta | ... |`` (organ columns: DSC %)."""
    organs, values = table_rows(rows, organs)
    header = [first_header, "DSC (%) ↑", f"HD95 ({units}) ↓", *(_organ_header(o) for o in organs)]
    lines = []
    if caption:
        lines += [caption, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    for (name, _), vals in zip(rows, values):
        lines.append("| " + " | ".join([name, *(_fmt(v) for v in vals)]) + " |")
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[Row], organs: Sequence[str] | None = None, units: str = "mm") -> str:
    """The same table as CSV with explicit column names (``mean_dsc_pct``, ``mean_hd95_mm``, ``liver_dsc_pct``...)."""
    organs, values = table_rows(rows, organs)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "cases", "mean_dsc_pct", f"mean_hd95_{units}", *(f"{o}_dsc_pct" for o in organs)])
    for (name, summary), vals in zip(rows, values):
        writer.writerow([name, summary.get("cases", ""), *("" if math.isnan(v) else f"{v:.6g}" for v in vals)])
    return out.getvalue()


def render_case_markdown(cases: Sequence[tuple[str, str, CaseMetrics]], units: str = "mm") -> str:
    """Per-case table from ``(case, output, CaseMetrics)`` triples: means over the organs present in the reference.

    ``| Case | Output | DSC (%) | Jaccard (%) | HD95 | ASD | Organs |`` where Organs = how many entered the DSC mean.
    """
    header = ["Case", "Output", "DSC (%)", "Jaccard (%)", f"HD95 ({units})", f"ASD ({units})", "Organs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", ":---"] + ["---:"] * 5) + "|"]
    for case, output, cm in cases:
        m = cm.mean
        cells = [
            case,
            output,
            _fmt(100.0 * m["dsc"]),
            _fmt(100.0 * m["jaccard"]),
            _fmt(m["hd95"]),
            _fmt(m["asd"]),
            str(cm.counts["dsc"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
