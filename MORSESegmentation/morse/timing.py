"""Wall-clock timing of pipeline stages (synchronising CUDA so GPU work is attributed to its stage)."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def stage(timings: dict[str, float] | None, name: str, device: torch.device | None = None):
    """Add the duration of the ``with`` block to ``timings[name]`` (seconds); no-op when ``timings`` is None."""
    if timings is None:
        yield
        return
    _sync(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        _sync(device)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
