"""Choosing the compute device, with a visible message whenever the request cannot be honoured.

:data:`CHOICES` are the device names a user may give (command line, Slicer module); torch is imported only when a
device is resolved, so the command line and the Slicer module can offer the choices without loading it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CHOICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class DeviceChoice:
    device: torch.device
    requested: str
    message: str | None = None  # set when the request fell back to another device

    @property
    def name(self) -> str:
        if self.device.type == "cuda":
            import torch

            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return self.device.type


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(requested: str = "auto", spatial_dims: int = 2) -> DeviceChoice:
    """``auto``: CUDA if present, else Apple MPS for 2D models, else CPU. An unavailable request falls back to CPU
    with a message (logged and returned) instead of failing. MPS is not used for 3D models (3D convolutions are not
    fully supported there)."""
    import torch

    requested = (requested or "auto").strip().lower()
    index_text = requested[5:] if requested.startswith("cuda:") else "0"
    if (requested not in CHOICES and not requested.startswith("cuda:")) or not index_text.isdigit():
        raise ConfigError(f"unknown device {requested!r}; choose one of {', '.join(CHOICES)} (or cuda:N)")
    message = None
    if requested == "auto":
        if torch.cuda.is_available():
            return DeviceChoice(torch.device("cuda"), requested)
        if spatial_dims == 2 and _mps_available():
            return DeviceChoice(torch.device("mps"), requested)
        return DeviceChoice(torch.device("cpu"), requested)
    if requested.startswith("cuda"):
        if torch.cuda.is_available():
            index = int(index_text)
            if index < torch.cuda.device_count():
                return DeviceChoice(torch.device("cuda", index), requested)
            message = f"CUDA device {index} does not exist ({torch.cuda.device_count()} present); using the CPU instead"
        else:
            message = "CUDA was requested but no CUDA GPU is available to PyTorch; using the CPU instead"
    elif requested == "mps":
        if _mps_available() and spatial_dims == 2:
            return DeviceChoice(torch.device("mps"), requested)
        message = (
            "Apple MPS is not available; using the CPU instead"
            if not _mps_available()
            else "3D models do not run on Apple MPS; using the CPU instead"
        )
    else:
        return DeviceChoice(torch.device("cpu"), requested)
    log.warning(message)
    return DeviceChoice(torch.device("cpu"), requested, message)
