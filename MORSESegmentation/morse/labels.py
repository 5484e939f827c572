"""The classes a model segments: :class:`LabelInfo` and its JSON form (``model.json`` ``labels``, ``result.json``).

This module imports nothing from MORSE, so every layer (model packs, data, inference, training) may use it.

JSON form of one class::

    {"value": 1, "name": "liver", "color": [r, g, b] (0..1),
     "category": [scheme, code value, code meaning] | null, "type": [...] | null, "modifier": [...] (optional)}
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LabelInfo:
    """One output class: label value, name, display colour (RGB 0..1) and SNOMED-CT terminology codes.

    ``category``/``type``/``modifier`` are (coding scheme, code value, code meaning) triplets, e.g.
    ``("SCT", "10200004", "Liver")``; ``modifier`` qualifies the type as Slicer's anatomy list does (the kidney is
    type "Kidney" with modifier "Left" or "Right").
    """

    value: int
    name: str
    color: tuple[float, float, float]
    category: tuple[str, str, str] | None = None
    type: tuple[str, str, str] | None = None
    modifier: tuple[str, str, str] | None = None


def labels_to_json(labels: list[LabelInfo]) -> list[dict]:
    """The JSON form of ``labels`` (a list of plain mappings, in the given order)."""
    return [
        {
            "value": lab.value,
            "name": lab.name,
            "color": list(lab.color),
            "category": list(lab.category) if lab.category else None,
            "type": list(lab.type) if lab.type else None,
            **({"modifier": list(lab.modifier)} if lab.modifier else {}),
        }
        for lab in labels
    ]


def labels_from_json(items: list[dict]) -> list[LabelInfo]:
    """The classes of a JSON list written by :func:`labels_to_json`; raises ``ValueError`` naming the first invalid
    entry and what is wrong with it."""
    labels = []
    for item in items:
        try:
            if not isinstance(item, dict):
                raise TypeError("not an object")
            value = item["value"]
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"value {value!r} is not an integer")
            color = tuple(float(c) for c in item["color"])
            if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
                raise ValueError("color must be three numbers in 0..1 (red, green, blue)")
            labels.append(
                LabelInfo(
                    value=value,
                    name=str(item["name"]),
                    color=color,
                    category=_code(item.get("category"), "category"),
                    type=_code(item.get("type"), "type"),
                    modifier=_code(item.get("modifier"), "modifier"),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"label entry {item!r:.200} is invalid ({exc})") from None
    return labels


def _code(value, what: str) -> tuple[str, str, str] | None:
    """A terminology code ``[scheme, value, meaning]`` (three strings), or None when absent."""
    if not value:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be [coding scheme, code value, code meaning], three strings")
    return tuple(value)
