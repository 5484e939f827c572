"""Random training patches with foreground oversampling (2D slices or 3D crops)."""

from __future__ import annotations

import numpy as np
import torch

from .volumes import TrainingVolume


class PatchSampler:
    """Draws batches of patches ``(B, 1, *patch)`` and labels ``(B, *patch)`` from training volumes.

    2D (``len(patch) == 2``): a random slice, then a crop; 3D: a crop. With probability ``foreground_fraction``
    the crop is centred on a random foreground voxel (classes are picked uniformly first, so small organs are seen as
    often as large ones); otherwise it is placed uniformly. Volumes smaller than the patch are padded (image with its
    minimum, label with 0). All draws come from ``generator``.
    """

    def __init__(self, volumes: list[TrainingVolume], patch: list[int], foreground_fraction: float,
                 generator: torch.Generator):  # fmt: skip
        if not volumes:
            raise ValueError("no training volumes")
        self.volumes = volumes
        self.patch = tuple(int(p) for p in patch)
        self.fg = foreground_fraction
        self.g = generator
        self.dims = len(self.patch)
        # foreground voxel coordinates per volume and class (for centred crops)
        self.fg_index = []
        for vol in volumes:
            per_class = {}
            for c in np.unique(vol.label):
                if c == 0:
                    continue
                per_class[int(c)] = np.argwhere(vol.label == c)
            self.fg_index.append(per_class)

    def _rand(self, high: int) -> int:
        return int(torch.randint(0, max(1, high), (1,), generator=self.g))

    def _centre(self, v: int) -> tuple[int, ...] | None:
        classes = sorted(self.fg_index[v])
        if not classes or float(torch.rand(1, generator=self.g)) >= self.fg:
            return None
        coords = self.fg_index[v][classes[self._rand(len(classes))]]
        return tuple(int(c) for c in coords[self._rand(len(coords))])

    def _crop(self, array: np.ndarray, start: tuple[int, ...], fill: float) -> np.ndarray:
        """Patch of ``array`` at ``start`` (may run outside: padded with ``fill``)."""
        out = np.full(self.patch, fill, dtype=array.dtype)
        src, dst = [], []
        for s, p, n in zip(start, self.patch, array.shape[-len(self.patch) :]):
            a, b = max(s, 0), min(s + p, n)
            src.append(slice(a, b))
            dst.append(slice(a - s, b - s))
        out[tuple(dst)] = array[tuple(src)]
        return out

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for _ in range(batch):
            v = self._rand(len(self.volumes))
            vol = self.volumes[v]
            centre = self._centre(v)
            image, label = vol.image, vol.label
            if self.dims == 2:
                z = centre[0] if centre is not None else self._rand(image.shape[0])
                image, label = image[z], label[z]
                centre = centre[1:] if centre is not None else None
            shape = image.shape
            if centre is None:
                start = tuple(
                    self._rand(n - p + 1) if n > p else -self._rand(p - n + 1) for n, p in zip(shape, self.patch)
                )
            else:  # centre with a random offset inside the patch, so organs are not always in the middle
                start = tuple(c - self._rand(p) for c, p in zip(centre, self.patch))
            images.append(self._crop(image, start, float(image.min())))
            labels.append(self._crop(label, start, 0))
        x = torch.from_numpy(np.stack(images)).unsqueeze(1)
        y = torch.from_numpy(np.stack(labels).astype(np.int64))
        return x, y
