"""Resumable checkpoints. Written with ``torch.save`` but only ever read with ``weights_only=True``, which refuses
anything but tensors and plain containers (no code runs while loading)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelPackError
from ..fileutils import write_atomic


def save_checkpoint(path: str | Path, model, optimizer, **extra) -> None:
    """Model and optimizer state plus ``extra`` (plain data), written atomically (temp file + rename)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **extra}
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, model, optimizer=None, map_location="cpu") -> dict:
    """Restore ``model`` (and ``optimizer``) from ``path``; returns the whole checkpoint dictionary."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ModelPackError(f"{path}: not a readable MORSE checkpoint ({str(exc).splitlines()[0][:200]})") from None
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state
