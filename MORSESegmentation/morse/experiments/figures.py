"""Figures for the results pages: coarse vs refined boundaries with the points the rendering head rectified."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import AxisReorder


def boundary_figure(
    image: np.ndarray,
    ijk_to_ras: np.ndarray,
    result,
    reference: np.ndarray | None,
    out: str | Path,
    num_slices: int = 3,
    title: str = "",
) -> Path:
    """Axial slices (radiological convention) with the reference (white), coarse (blue, dashed) and refined
    (orange) organ boundaries, and the rectified points (small yellow dots). Slices with the most voxels changed by
    the rendering head are shown, cropped to the organs. ``image``, ``result`` arrays and ``reference`` are KJI on
    the same grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reorder = AxisReorder.to_orientation(ijk_to_ras, image.shape, "LPS")
    img = reorder.apply(image)
    coarse, refined = reorder.apply(result.coarse_labels), reorder.apply(result.labels)
    rect = reorder.apply(result.rectified) if result.rectified is not None else np.zeros_like(refined)
    ref = reorder.apply(reference) if reference is not None else None
    changed = (coarse != refined).reshape(coarse.shape[0], -1).sum(1)
    order = np.argsort(-changed)[:num_slices]
    order = np.sort(order)
    fig, axes = plt.subplots(1, len(order), figsize=(5 * len(order), 5.4), dpi=110, squeeze=False)
    for ax, k in zip(axes[0], order):
        fg = np.argwhere((refined[k] > 0) | (coarse[k] > 0) | ((ref[k] > 0) if ref is not None else False))
        if fg.size:
            (y0, x0), (y1, x1) = fg.min(0) - 12, fg.max(0) + 12
            y0, x0 = max(y0, 0), max(x0, 0)
        else:
            y0, x0, y1, x1 = 0, 0, img.shape[1], img.shape[2]
        crop = (slice(y0, y1), slice(x0, x1))
        ax.imshow(np.clip((img[k][crop] + 160) / 400, 0, 1), cmap="gray", interpolation="nearest")
        values = sorted(set(np.unique(refined[k])) | set(np.unique(coarse[k])) - {0})
        for v in values:
            if ref is not None and (ref[k][crop] == v).any():
                ax.contour(ref[k][crop] == v, levels=[0.5], colors="white", linewidths=1.0)
            if (coarse[k][crop] == v).any():
                ax.contour(coarse[k][crop] == v, levels=[0.5], colors="#3b82f6", linewidths=1.2, linestyles="--")
            if (refined[k][crop] == v).any():
                ax.contour(refined[k][crop] == v, levels=[0.5], colors="#f97316", linewidths=1.2)
        pts = np.argwhere(rect[k][crop] > 0)
        if len(pts) > 4000:  # keep the plot readable: a uniform subset of the rectified points
            pts = pts[np.linspace(0, len(pts) - 1, 4000).astype(int)]
        ax.scatter(pts[:, 1], pts[:, 0], s=0.6, c="#facc15", alpha=0.6, linewidths=0)
        ax.set_title(f"slice {k}: {int(changed[k])} voxels changed", fontsize=9)
        ax.axis("off")
    handles = [
        plt.Line2D([], [], color="white", label="reference (TotalSegmentator)"),
        plt.Line2D([], [], color="#3b82f6", linestyle="--", label="coarse (backbone head)"),
        plt.Line2D([], [], color="#f97316", label="refined (MORSE)"),
        plt.Line2D([], [], color="#facc15", marker=".", linestyle="", label="rectified points"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.patch.set_facecolor("black")
    if title:
        fig.suptitle(title, color="white", fontsize=10)
    for ax in axes[0]:
        ax.title.set_color("white")
    for text in fig.legends[0].get_texts():
        text.set_color("white")
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor="black")
    plt.close(fig)
    return out
