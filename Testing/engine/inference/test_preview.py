"""The preview PNG: what is painted is what the legend and the caption say, and each panel says where it is."""

from __future__ import annotations

import numpy as np
import pytest
from morse.geometry import AxisReorder, ijk_to_ras_from_lps
from morse.inference.preview import CHANGED_RGB, render_preview, write_preview
from morse.inference.result import LabelInfo, SegmentationResult
from PIL import Image

INFOS = [LabelInfo(1, "liver", (0.8, 0.4, 0.3)), LabelInfo(2, "spleen", (0.3, 0.5, 0.9)), LabelInfo(3, "pancreas",
         (0.2, 0.8, 0.2))]  # fmt: skip
SPACING_Z = 2.5


def _case(changed_voxels: bool = True):
    """A 12-slice CT (air around a soft-tissue body), a liver in slices 2..9, a spleen in 4..6, no pancreas; the
    coarse labels differ from the refined ones at a few known voxels."""
    shape = (12, 40, 48)
    _, y, x = np.indices(shape)
    ct = np.full(shape, -1000.0, np.float32)
    ct[((y - 20) / 18.0) ** 2 + ((x - 24) / 22.0) ** 2 <= 1] = 40.0
    labels = np.zeros(shape, np.uint8)
    labels[2:10, 10:20, 8:20] = 1
    labels[4:7, 12:18, 30:38] = 2
    coarse = labels.copy()
    if changed_voxels:
        coarse[2:10, 10:12, 8:20] = 0  # refinement added two rows of liver on every liver slice
        coarse[5, 12:14, 30:32] = 1  # and turned four coarse-liver voxels into spleen
    m = ijk_to_ras_from_lps((0.0, 0.0, -100.0), (1.0, 1.0, SPACING_Z), np.eye(3).ravel())
    result = SegmentationResult(labels=labels, coarse_labels=coarse, ijk_to_ras=m, labels_info=INFOS)
    return ct, result


def _yellow(picture: np.ndarray, box) -> np.ndarray:
    x, y, w, h = box
    tile = picture[y : y + h, x : x + w].astype(int)
    want = np.round(np.asarray(CHANGED_RGB, np.float32) * 255).astype(int)
    return np.all(np.abs(tile - want) <= 1, axis=-1)


def test_yellow_is_exactly_the_changed_voxels_and_the_caption_says_so(tmp_path):
    ct, result = _case()
    preview = write_preview(tmp_path / "p.png", ct, result)
    picture = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    assert np.array_equal(picture, preview.picture)
    changed = result.labels != result.coarse_labels
    total = 0
    for panel in preview.panels:
        k = panel.index  # stored in LPS: the input's k is the axial index
        assert np.array_equal(_yellow(picture, panel.box), changed[k])  # the same pixels, not only as many
        assert panel.changed_pixels == np.count_nonzero(changed[k])
        total += panel.changed_pixels
    assert total > 0 and preview.changed_pixels == total
    assert f"Yellow: the {total} pixels whose refined label differs from the coarse (backbone) label" in preview.caption
    assert preview.legend[-1] == (f"label changed by refinement ({total} pixels)", CHANGED_RGB)
    assert "CT window W400/L40 HU" in preview.caption


def test_legend_lists_the_organs_painted():
    ct, result = _case()
    preview = render_preview(ct, result)
    shown = {int(v) for p in preview.panels for v in np.unique(result.labels[p.index]) if v}
    organs = [name for name, _ in preview.legend if not name.startswith("label changed")]
    assert organs == [i.name for i in INFOS if i.value in shown]
    assert "liver" in organs and "pancreas" not in organs  # absent from the scan: no legend entry
    for panel in preview.panels:
        assert panel.organs == [i.name for i in INFOS if np.any(result.labels[panel.index] == i.value)]
    colours = dict(preview.legend)
    assert colours["liver"] == INFOS[0].color


def test_no_change_no_yellow():
    ct, result = _case(changed_voxels=False)
    preview = render_preview(ct, result)
    assert preview.changed_pixels == 0
    assert all(not name.startswith("label changed") for name, _ in preview.legend)
    assert "Refinement changed no label in these slices." in preview.caption and "Yellow" not in preview.caption
    assert not any(_yellow(preview.picture, p.box).any() for p in preview.panels)


def test_panels_give_the_inputs_slice_index_and_position_in_any_storage():
    """Stored with k running toward the feet, the panels still name the input's own k and the same S position."""
    ct, result = _case()
    preview = render_preview(ct, result)
    k = [p.index for p in preview.panels]
    assert k == [2, 4, 7, 9]  # evenly over the slices that hold an organ (2..9)
    assert [p.superior_mm for p in preview.panels] == pytest.approx([-100 + SPACING_Z * i for i in k])
    assert preview.panels[0].title == "k = 2 · S -95.0 mm"
    layout = AxisReorder(transpose=(0, 1, 2), flip=(True, False, False), shape=ct.shape)
    flipped = SegmentationResult(
        labels=np.ascontiguousarray(layout.apply(result.labels)),
        coarse_labels=np.ascontiguousarray(layout.apply(result.coarse_labels)),
        ijk_to_ras=layout.reoriented_ijk_to_ras(result.ijk_to_ras),
        labels_info=INFOS,
    )
    other = render_preview(np.ascontiguousarray(layout.apply(ct)), flipped)
    assert [p.index for p in other.panels] == [11 - i for i in k]
    assert [p.superior_mm for p in other.panels] == pytest.approx([p.superior_mm for p in preview.panels])
    for a, b in zip(other.panels, preview.panels):  # the same slices drawn: the picture is always in LPS
        (xa, ya, wa, ha), (xb, yb, wb, hb) = a.box, b.box
        assert np.array_equal(other.picture[ya : ya + ha, xa : xa + wa], preview.picture[yb : yb + hb, xb : xb + wb])


def test_not_a_ct_gets_a_percentile_window_and_says_so():
    ct, result = _case()
    mr = (ct + 1000.0) * 0.5 + 3.0  # no air in Hounsfield units: an MR-like range
    preview = render_preview(mr, result)
    assert "1st to 99th percentile" in preview.caption and "W400/L40" not in preview.caption
    empty = SegmentationResult(labels=np.zeros_like(result.labels), coarse_labels=np.zeros_like(result.labels),
                               ijk_to_ras=result.ijk_to_ras, labels_info=INFOS)  # fmt: skip
    none = render_preview(ct, empty)
    assert none.legend == [] and "No organ was found." in none.caption
