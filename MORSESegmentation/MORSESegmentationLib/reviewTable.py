"""The review table of a run: the engine's review list (``morse-review/1``) as a ``vtkMRMLTableNode``, with a status.

One row per organ (``entry = organ``: volume, confidence, flags), then one per region to check (``entry = region``,
in rank order: kind, organ, volume, mean uncertainty, score, centroid). The ``status`` column holds
``to review`` (as created), ``reviewed`` or ``corrected``; it is an ordinary table column, so Slicer saves it with
the scene (``.tsv`` and its ``.schema.tsv``) and reads it back. Numbers that do not apply to a row (the rank of an
organ, the centroid of an organ, the confidence of a region) are stored as 0 (rank) or NaN and read back as None.

The list itself is built by the engine (:func:`morse.uncertainty.review.build_review`, in the worker or in
:meth:`SegmentationLogic.runEngine`); this file only copies its values into the table and reads them back.
"""

from __future__ import annotations

import json
import math

import slicer
import vtk

from .outputNodes import INPUT_REFERENCE_ROLE, OUTPUT_ATTRIBUTE

ROLE = "review"  # the node's ``MORSE.Output`` attribute (outputNodes.markOutput)
SCHEMA_ATTRIBUTE = "MORSE.ReviewSchema"
SETTINGS_ATTRIBUTE = "MORSE.ReviewSettings"
TO_REVIEW, REVIEWED, CORRECTED = "to review", "reviewed", "corrected"
STATUSES = (TO_REVIEW, REVIEWED, CORRECTED)
FLAG_SEPARATOR = ";"  # as in review.csv

# (name, type, unit, description): the table's columns, in order.
COLUMNS = (
    ("entry", "string", "", "organ, or region (a place to check)"),
    ("rank", "int", "", "order in which to check the regions (1 first); 0 for organs"),
    ("organ", "string", "", "the organ (for a region: the predicted label of most of its voxels)"),
    ("kind", "string", "", "region: uncertain (uncertainty above the threshold) or head disagreement"),
    ("flags", "string", "", "organ: absent, truncated, fragmented, low confidence, implausible region (';')"),
    ("volume_ml", "double", "ml", "volume"),
    ("confidence", "double", "", "organ: mean of 1 - uncertainty over its voxels (0..1)"),
    ("mean_uncertainty", "double", "", "region: mean uncertainty over its voxels (0..1)"),
    ("score", "double", "ml", "region: volume x mean uncertainty (the ranking)"),
    ("centroid_i", "double", "", "region centre: voxel index i of the input"),
    ("centroid_j", "double", "", "region centre: voxel index j of the input"),
    ("centroid_k", "double", "", "region centre: voxel index k of the input"),
    ("centroid_r", "double", "mm", "region centre: R (the input's RAS, before any parent transform)"),
    ("centroid_a", "double", "mm", "region centre: A"),
    ("centroid_s", "double", "mm", "region centre: S"),
    ("status", "string", "", "to review, reviewed or corrected"),
)
COLUMN_NAMES = tuple(c[0] for c in COLUMNS)
_ARRAYS = {"string": vtk.vtkStringArray, "int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray}


def isReviewTable(node) -> bool:
    """True for a table node made by :func:`createReviewTable` (and marked by the run)."""
    return node is not None and node.IsA("vtkMRMLTableNode") and node.GetAttribute(OUTPUT_ATTRIBUTE) == ROLE


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _rows(review: dict) -> list[dict]:
    """The table's rows (column name → value) of a ``morse-review/1`` dict."""
    rows = []
    for organ in review.get("organs", []):
        rows.append(
            {
                "entry": "organ",
                "rank": 0,
                "organ": organ["name"],
                "kind": "",
                "flags": FLAG_SEPARATOR.join(organ.get("flags", [])),
                "volume_ml": _number(organ.get("volume_ml")),
                "confidence": _number(organ.get("confidence")),
            }
        )
    for region in review.get("regions", []):
        row = {
            "entry": "region",
            "rank": int(region["rank"]),
            "organ": region["organ"],
            "kind": region["kind"],
            "flags": "",
            "volume_ml": _number(region.get("volume_ml")),
            "mean_uncertainty": _number(region.get("mean_uncertainty")),
            "score": _number(region.get("score")),
        }
        row.update({f"centroid_{a}": _number(v) for a, v in zip("ijk", region["centroid_ijk"])})
        row.update({f"centroid_{a}": _number(v) for a, v in zip("ras", region["centroid_ras"])})
        rows.append(row)
    for row in rows:
        row["status"] = TO_REVIEW
    return rows


def createReviewTable(name: str, review: dict, scene=None):
    """A new table node ``name`` in the scene holding ``review`` (the engine's dict), every status ``to review``."""
    scene = scene or slicer.mrmlScene
    rows = _rows(review)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    wasModifying = node.StartModify()
    for columnName, kind, unit, description in COLUMNS:
        array = _ARRAYS[kind]()
        array.SetName(columnName)
        default = "" if kind == "string" else (0 if kind == "int" else math.nan)
        for row in rows:
            array.InsertNextValue(row.get(columnName, default))
        node.AddColumn(array)
        if unit:
            node.SetColumnUnitLabel(columnName, unit)
        node.SetColumnDescription(columnName, description)
    node.SetUseColumnTitleAsColumnHeader(True)
    node.SetAttribute(SCHEMA_ATTRIBUTE, str(review.get("schema", "")))
    node.SetAttribute(SETTINGS_ATTRIBUTE, json.dumps(review.get("settings", {}), sort_keys=True))
    node.EndModify(wasModifying)
    return node


def _columns(tableNode) -> dict:
    """Column name → vtk array; raises ValueError when the node is not a review table."""
    if tableNode is None or not tableNode.IsA("vtkMRMLTableNode"):
        raise ValueError(f"{tableNode!r} is not a MORSE review table (a vtkMRMLTableNode)")
    table = tableNode.GetTable()
    columns = {name: table.GetColumnByName(name) for name in COLUMN_NAMES}
    missing = [name for name, column in columns.items() if column is None]
    if missing:
        raise ValueError(f"'{tableNode.GetName()}' is not a MORSE review table: no column {', '.join(missing)}")
    return columns


def _value(column, row: int):
    if column.IsA("vtkStringArray"):
        return str(column.GetValue(row))
    value = column.GetValue(row)
    if column.IsA("vtkIntArray") or column.GetDataType() in (vtk.VTK_INT, vtk.VTK_LONG, vtk.VTK_LONG_LONG):
        return int(value)
    value = float(value)
    return None if math.isnan(value) else value


def rows(tableNode) -> list[dict]:
    """The review of ``tableNode``: one dict per row, organs first, then the regions in rank order.

    Keys: ``entry`` (``organ`` | ``region``), ``rank`` (None for organs), ``organ``, ``kind`` (None for organs),
    ``flags`` (list), ``volume_ml``, ``confidence``, ``mean_uncertainty``, ``score``, ``centroid_ijk`` and
    ``centroid_ras`` ([x, y, z] or None), ``status``. Values that do not apply are None.
    """
    columns = _columns(tableNode)
    found = []
    for row in range(tableNode.GetTable().GetNumberOfRows()):
        raw = {name: _value(column, row) for name, column in columns.items()}
        region = raw["entry"] == "region"
        ijk = [raw[f"centroid_{a}"] for a in "ijk"]
        ras = [raw[f"centroid_{a}"] for a in "ras"]
        found.append(
            {
                "entry": raw["entry"],
                "rank": raw["rank"] if region else None,
                "organ": raw["organ"],
                "kind": raw["kind"] or None,
                "flags": [f for f in raw["flags"].split(FLAG_SEPARATOR) if f],
                "volume_ml": raw["volume_ml"],
                "confidence": raw["confidence"],
                "mean_uncertainty": raw["mean_uncertainty"],
                "score": raw["score"],
                "centroid_ijk": ijk if None not in ijk else None,
                "centroid_ras": ras if None not in ras else None,
                "status": raw["status"],
            }
        )
    return found


def _rowOf(tableNode, key) -> int:
    """The table row of region ``key`` (its rank, an int) or of organ ``key`` (its name, a str)."""
    columns = _columns(tableNode)
    count = tableNode.GetTable().GetNumberOfRows()
    entries = [columns["entry"].GetValue(row) for row in range(count)]
    if isinstance(key, str):
        for row in range(count):
            if entries[row] == "organ" and columns["organ"].GetValue(row) == key:
                return row
        organs = [columns["organ"].GetValue(row) for row in range(count) if entries[row] == "organ"]
        raise ValueError(f"no organ {key!r} in '{tableNode.GetName()}' (organs: {', '.join(organs)})")
    if isinstance(key, bool) or not isinstance(key, int):
        raise ValueError(f"give a region's rank (an int) or an organ's name, not {key!r}")
    ranks = []
    for row in range(count):
        if entries[row] == "region":
            rank = int(columns["rank"].GetValue(row))
            if rank == key:
                return row
            ranks.append(rank)
    span = f"ranks {min(ranks)} to {max(ranks)}" if ranks else "no regions"
    raise ValueError(f"no region ranked {key} in '{tableNode.GetName()}' ({span})")


def setStatus(tableNode, key, status: str) -> None:
    """Set the status of region ``key`` (rank) or organ ``key`` (name) to one of :data:`STATUSES`."""
    if status not in STATUSES:
        raise ValueError(f"unknown review status {status!r}; use one of: {', '.join(repr(s) for s in STATUSES)}")
    row = _rowOf(tableNode, key)
    tableNode.SetCellText(row, COLUMN_NAMES.index("status"), status)


def regionCentroid(tableNode, rank: int) -> tuple[float, float, float]:
    """The RAS centre (mm) of region ``rank``, in the world: the input volume's parent transform applied."""
    row = _rowOf(tableNode, rank)
    columns = _columns(tableNode)
    point = [float(columns[f"centroid_{a}"].GetValue(row)) for a in "ras"]
    volume = tableNode.GetNodeReference(INPUT_REFERENCE_ROLE)
    transformNode = volume.GetParentTransformNode() if volume is not None else None
    if transformNode is not None:
        toWorld = vtk.vtkGeneralTransform()
        transformNode.GetTransformToWorld(toWorld)
        point = list(toWorld.TransformPoint(point))
    return point[0], point[1], point[2]
