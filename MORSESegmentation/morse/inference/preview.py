"""The preview PNG of one result: axial slices through the organs, each with its position, a legend and a caption.

What the picture shows is decided once (:func:`render_preview`) and both the painting and the text are derived from
that decision, so the caption cannot claim a colour the panels do not carry:

- panels: up to ``num_slices`` axial slices evenly spread over the slices that hold an organ, reoriented to LPS and
  shown in radiological convention (the patient's right on the left of the picture, anterior up); above each, the
  slice's index in the input (``k = 57`` when the input is stored axially; the index letter of whichever input axis
  runs head–foot otherwise) and its superior coordinate in mm (RAS/LPS ``S``, the axial position Slicer shows);
- grey values: the CT soft-tissue window W400/L40 when the volume holds air at Hounsfield values (its 1st percentile
  at or below −500), else the volume's 1st–99th percentiles (an MR, a CT stored clipped), and the caption says which;
- organs filled at 35 % opacity with solid outlines in the model's colours; the legend lists exactly the organs
  painted in at least one panel;
- yellow: the voxels whose refined label differs from the coarse (backbone) label, i.e. where refinement changed
  the answer (``SegmentationResult.changed``), painted over everything else; the legend and the caption mention it,
  with its pixel count, only when a panel shows some.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry import AxisReorder
from .result import SegmentationResult

CHANGED_RGB = (1.0, 0.9, 0.1)  # yellow
FILL_OPACITY = 0.35
HU_WINDOW = (40.0, 400.0)  # level, width (HU): abdominal soft tissue
AIR_HU = -500.0  # a volume whose 1st percentile is at or below this is taken to be in Hounsfield units


@dataclass
class Panel:
    """One axial slice of the preview. ``index``: the slice's index along the input axis ``axis`` ("i"/"j"/"k");
    ``superior_mm``: its S coordinate (mm); ``box``: where it lies in the picture, ``(x, y, width, height)`` pixels;
    ``organs``: names of the organs painted in it; ``changed_pixels``: pixels painted yellow."""

    index: int
    axis: str
    superior_mm: float
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    organs: list[str] = field(default_factory=list)
    changed_pixels: int = 0

    @property
    def title(self) -> str:
        return f"{self.axis} = {self.index} · S {self.superior_mm:.1f} mm"


@dataclass
class Preview:
    """What :func:`render_preview` drew: the RGB picture ``(H, W, 3)`` uint8, its panels, the legend entries
    ``(text, rgb 0..1)`` in label order (the yellow entry last, when shown), and the caption."""

    picture: np.ndarray
    panels: list[Panel]
    legend: list[tuple[str, tuple[float, float, float]]]
    caption: str
    window: str

    @property
    def changed_pixels(self) -> int:
        return sum(p.changed_pixels for p in self.panels)

    def to_dict(self) -> dict:
        """What ``summary.json`` records of the preview: the slices shown, the legend and the caption."""
        return {
            "slices": [{"axis": p.axis, "index": p.index, "superior_mm": round(p.superior_mm, 1)} for p in self.panels],
            "legend": [text for text, _ in self.legend],
            "caption": self.caption,
        }


def _window(image: np.ndarray) -> tuple[float, float, str]:
    """``(low, high, description)`` of the grey-value window for ``image``."""
    sample = image[::2, ::4, ::4].astype(np.float32, copy=False)
    p1, p99 = (float(v) for v in np.percentile(sample, [1, 99]))
    if p1 <= AIR_HU:
        level, width = HU_WINDOW
        return level - width / 2, level + width / 2, f"CT window W{width:g}/L{level:g} HU"
    if p99 <= p1:
        p99 = p1 + 1.0
    return p1, p99, f"grey values from the volume's 1st to 99th percentile ({p1:.0f}..{p99:.0f}; not a CT window)"


def _picks(labels: np.ndarray, num_slices: int) -> np.ndarray:
    """Reoriented axial indices: evenly spread over the slices that hold an organ (over all slices when none)."""
    counts = (labels > 0).reshape(labels.shape[0], -1).sum(1)
    candidates = np.nonzero(counts)[0]
    if candidates.size == 0:
        candidates = np.arange(labels.shape[0])
    count = min(num_slices, candidates.size)
    return np.unique(np.linspace(candidates[0], candidates[-1], num=count).round()).astype(int)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def render_preview(image: np.ndarray, result: SegmentationResult, num_slices: int = 4) -> Preview:
    """The preview of ``result`` over ``image`` (both KJI on the input's grid); see the module docstring."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    reorder = AxisReorder.to_orientation(result.ijk_to_ras, image.shape, "LPS")
    m = reorder.reoriented_ijk_to_ras(result.ijk_to_ras)
    vol = reorder.apply(image)
    labels = reorder.apply(result.labels)
    coarse = reorder.apply(result.coarse_labels)
    low, high, window = _window(vol)
    source = reorder.transpose[0]  # the input's numpy axis that became the head–foot one
    depth = vol.shape[0]
    lut = np.zeros((256, 3), np.float32)
    names = {}
    for info in result.labels_info:
        lut[info.value] = info.color
        names[info.value] = info.name
    centre = ((vol.shape[2] - 1) / 2.0, (vol.shape[1] - 1) / 2.0)
    tiles, panels, painted = [], [], set()
    for k in _picks(labels, num_slices):
        grey = np.clip((vol[k].astype(np.float32) - low) / (high - low), 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        lab = labels[k]
        mask = lab > 0
        rgb[mask] = (1 - FILL_OPACITY) * rgb[mask] + FILL_OPACITY * lut[lab[mask]]
        edge = (lab != ndimage.grey_erosion(lab, size=3)) & mask
        rgb[edge] = lut[lab[edge]]
        changed = lab != coarse[k]
        rgb[changed] = CHANGED_RGB
        present = set(np.unique(lab[mask]).tolist())
        painted |= present
        superior = float((m @ np.array([centre[0], centre[1], float(k), 1.0]))[2])
        panels.append(
            Panel(
                index=int(depth - 1 - k if reorder.flip[0] else k),
                axis="kji"[source],
                superior_mm=superior,
                organs=[names[v] for v in sorted(present) if v in names],
                changed_pixels=int(np.count_nonzero(changed)),
            )
        )
        tiles.append(rgb)
    legend = [(info.name, tuple(info.color)) for info in result.labels_info if info.value in painted]
    changed_total = sum(p.changed_pixels for p in panels)
    if changed_total:
        legend.append((f"label changed by refinement ({changed_total} pixels)", CHANGED_RGB))
    caption = (
        "Axial slices (index in the input, superior position in mm), radiological convention: the patient's right "
        f"on the left, anterior up; {window}. Organs filled at {FILL_OPACITY:.0%} opacity with solid outlines. "
        + (
            f"Yellow: the {changed_total} pixels whose refined label differs from the coarse (backbone) label."
            if changed_total
            else "Refinement changed no label in these slices."
        )
    )
    if not legend:
        caption += " No organ was found."

    gap = 4
    tile_h = max(t.shape[0] for t in tiles)
    total_w = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    size = int(np.clip(total_w // 60, 10, 16))
    font = _font(size)
    line_h = size + 4
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption_lines = _wrap(probe, caption, font, max(total_w - 8, 50))
    swatch = size
    rows, x, row = [[]], 4, 0
    for text, _ in legend:  # legend entries flow left to right, wrapping at the picture's width
        w = swatch + 6 + int(probe.textlength(text, font=font)) + 16
        if x + w > total_w and rows[row]:
            rows.append([])
            row, x = row + 1, 4
        rows[row].append(x)
        x += w
    legend_h = line_h * len(rows) if legend else 0
    # a title wider than its panel (a small scan) goes on two lines: index, then position
    fits = all(probe.textlength(p.title, font=font) <= t.shape[1] - 4 for p, t in zip(panels, tiles))
    titles = [[p.title] if fits else [f"{p.axis} = {p.index}", f"S {p.superior_mm:.1f} mm"] for p in panels]
    head_h = line_h * (1 if fits else 2)
    height = head_h + tile_h + 6 + legend_h + line_h * len(caption_lines) + 4
    canvas = Image.new("RGB", (total_w, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for tile, panel, title in zip(tiles, panels, titles):
        canvas.paste(Image.fromarray((tile * 255).round().astype(np.uint8)), (x, head_h))
        panel.box = (x, head_h, tile.shape[1], tile.shape[0])
        for n, line in enumerate(title):
            draw.text((x + 2, 2 + n * line_h), line, fill=(255, 255, 255), font=font)
        x += tile.shape[1] + gap
    y = head_h + tile_h + 6
    entries = iter(legend)
    for xs in rows if legend else []:
        for x0 in xs:
            text, colour = next(entries)
            fill = tuple(round(c * 255) for c in colour)
            draw.rectangle((x0, y + 2, x0 + swatch - 1, y + 1 + swatch), fill=fill)
            draw.text((x0 + swatch + 6, y), text, fill=(255, 255, 255), font=font)
        y += line_h
    for line in caption_lines:
        draw.text((4, y), line, fill=(210, 210, 210), font=font)
        y += line_h
    return Preview(picture=np.asarray(canvas), panels=panels, legend=legend, caption=caption, window=window)


def write_preview(path: str | Path, image: np.ndarray, result: SegmentationResult, num_slices: int = 4) -> Preview:
    """Render the preview (:func:`render_preview`) and save it as a PNG at ``path``."""
    from PIL import Image

    preview = render_preview(image, result, num_slices)
    Image.fromarray(preview.picture).save(path)
    return preview
