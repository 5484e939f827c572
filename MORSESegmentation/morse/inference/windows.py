"""How many sliding windows MONAI's :func:`monai.inferers.sliding_window_inference` visits (for progress counts)."""

from __future__ import annotations

from collections.abc import Sequence

from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval


def window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Windows over a ``shape`` image (voxels, spatial axes only) with an ``roi`` window and ``overlap`` in [0, 1).

    Asks MONAI for its own scan intervals and patch grid, on the image padded up to the window as
    ``sliding_window_inference`` pads it, so that the count follows the library if its rule changes."""
    image = [max(int(s), int(r)) for s, r in zip(shape, roi)]
    interval = _get_scan_interval(image, list(roi), len(image), [float(overlap)] * len(image))
    return len(dense_patch_slices(image, list(roi), interval))
