"""Organ colours a reader can tell apart: the label set of training and the shipped model pack."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from morse.data.synapse8 import SYNAPSE8
from morse.modelpack import load_model_pack


def _closest_pair(labels) -> tuple[float, tuple[str, str]]:
    pairs = itertools.combinations(labels, 2)
    return min((float(np.linalg.norm(np.subtract(a.color, b.color))) * 255, (a.name, b.name)) for a, b in pairs)


@pytest.mark.parametrize("source", ["synapse8", "shipped pack"])
def test_every_pair_of_organs_differs_visibly(source):
    labels = SYNAPSE8 if source == "synapse8" else load_model_pack("default").labels
    distance, pair = _closest_pair(labels)
    assert distance >= 35, f"{pair} differ by only {distance:.0f}/255"  # GenericAnatomyColors' kidneys: 0
    colours = {lab.name: np.array(lab.color) * 255 for lab in labels}
    assert np.linalg.norm(colours["kidney_left"] - colours["kidney_right"]) > 100
    assert np.linalg.norm(colours["liver"] - colours["stomach"]) > 100  # 5/255 apart in GenericAnatomyColors


def test_the_shipped_pack_uses_the_label_set_colours():
    assert [lab.color for lab in load_model_pack("default").labels] == [lab.color for lab in SYNAPSE8]


def test_kidneys_carry_slicers_laterality_modifier_in_the_seg_nrrd_tag():
    from morse.inference.outputs import terminology_entry
    from morse.labels import labels_from_json, labels_to_json

    kidney = next(lab for lab in load_model_pack("default").labels if lab.name == "kidney_right")
    assert terminology_entry(kidney) == (
        "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
        "~SCT^64033007^Kidney~SCT^24028007^Right~Anatomic codes - DICOM master list~^^~^^"
    )
    assert labels_from_json(labels_to_json(SYNAPSE8)) == SYNAPSE8  # the modifier survives model.json
    assert "modifier" not in labels_to_json(SYNAPSE8[:1])[0]  # and is written only where there is one
