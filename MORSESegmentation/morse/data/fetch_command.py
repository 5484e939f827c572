"""``morse fetch-data [NAME...] [--path CASE] [--list]``: fetch the registry sample data, print a case path, or list.

- no NAME: fetch every required source (totalsegmentator, slicerio, pyradiomics); NAME may be a source, a sample
  case (fetches its source), ``all`` (optional sources too).
- ``--path CASE``: print only the path of sample case CASE on stdout (fetching its source if needed), so that
  ``morse segment "$(morse fetch-data --path abdomen-ct-dicom)"`` works. Progress goes to stderr.
- ``--list``: the sources (fetched or not) and the sample cases.
"""

from __future__ import annotations

import argparse

from ..errors import DataError
from .cases import case_path, list_cases
from .fetch import data_root, fetch, is_fetched
from .sources import REQUIRED_SOURCES, SOURCES


def _source_names(names: list[str]) -> list[str]:
    if not names:
        return list(REQUIRED_SOURCES)
    cases = {c.name: c for c in list_cases()}
    chosen: list[str] = []
    for n in names:
        if n == "all":
            picked = list(SOURCES)
        elif n in SOURCES:
            picked = [n]
        elif n in cases:
            picked = [cases[n].source]
        else:
            raise DataError(
                f"unknown name {n!r}: give a source ({', '.join(SOURCES)}), a sample case ({', '.join(cases)}) or 'all'"
            )
        chosen += [p for p in picked if p not in chosen]
    return chosen


def print_listing() -> None:
    root = data_root()
    print(f"data folder: {root}  (set MORSE_DATA to change it)")
    print("\nsources:")
    for s in SOURCES.values():
        state = "fetched" if is_fetched(s, root) else "not fetched"
        need = "required" if s.required else "optional"
        print(f"  {s.name:<17} {s.requirement:<26} {need:<9} {state:<12} {s.size_mb:5.1f} MB  {s.description}")
    print("\nsample cases (morse fetch-data --path NAME):")
    for c in list_cases():
        ref = "Synapse-8 reference" if c.has_synapse8 else "no Synapse-8 reference"
        print(f"  {c.name:<19} {c.modality}  subject {c.subject:<18} {ref:<23} {c.description}")
    from .convert import REGISTRY_DATASETS

    print("\ndatasets (--data registry:NAME, built on first use):")
    for d in REGISTRY_DATASETS.values():
        print(f"  {d.name:<21} {d.description}")


def run(args: argparse.Namespace) -> int:
    names = list(getattr(args, "names", None) or [])
    if getattr(args, "list", False):
        print_listing()
        return 0
    if getattr(args, "path", None):
        if names:
            fetch(_source_names(names))
        print(case_path(args.path, fetch=True))
        return 0
    fetched = fetch(_source_names(names))
    for name, folder in fetched.items():
        print(f"{name}: {folder}")
    return 0
