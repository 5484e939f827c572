"""Datasets by the name a user gives: a dataset folder, a file list, or ``registry:<name>``.

This is the layer above the readers: :func:`read_dataset` resolves a registry name (building the dataset on first
use, :mod:`morse.data.convert`) and hands the folder to :func:`morse.data.readers.read_dataset`, which reads paths
only and knows nothing of the registry.
"""

from __future__ import annotations

from pathlib import Path

from . import readers
from .convert import resolve_dataset
from .readers import Case

__all__ = ["read_dataset", "resolve_dataset"]


def read_dataset(spec: Path | str) -> list[Case]:
    """Cases of any supported dataset: a folder, a file list, or ``registry:<name>`` (built on first use)."""
    return readers.read_dataset(resolve_dataset(str(spec)))
