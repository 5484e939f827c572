"""Data: registry sample data (sha256-verified, cached), dataset readers, the Synapse-8 label set, converters.

Public API (imported lazily, so ``import morse.data`` does not pull in SimpleITK):

- :func:`data_root`, :func:`fetch` — the cache folder and the registry fetch (:mod:`morse.data.fetch`).
- :func:`case_path`, :func:`case_label_path`, :func:`list_cases`, :class:`SampleCase` — named sample cases
  (:mod:`morse.data.cases`).
- :class:`Case`, :func:`read_nnunet`, :func:`read_synapse`, :func:`read_filelist`, :func:`load_case` — dataset
  readers of paths (:mod:`morse.data.readers`).
- :func:`read_dataset`, :func:`resolve_dataset` — any dataset by folder, file list or ``registry:<name>``
  (:mod:`morse.data.datasets`); :func:`build_registry_dataset` builds a registry dataset (:mod:`morse.data.convert`).
- :data:`SYNAPSE8` — the 8 abdominal organs with values, colours and SNOMED-CT codes (:mod:`morse.data.synapse8`).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "data_root": "fetch",
    "fetch": "fetch",
    "FetchUnavailableError": "fetch",
    "case_path": "cases",
    "case_label_path": "cases",
    "list_cases": "cases",
    "get_case": "cases",
    "SampleCase": "cases",
    "Case": "readers",
    "read_nnunet": "readers",
    "read_synapse": "readers",
    "read_filelist": "readers",
    "read_dataset": "datasets",
    "load_case": "readers",
    "resolve_dataset": "datasets",
    "build_registry_dataset": "convert",
    "SYNAPSE8": "synapse8",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'morse.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
