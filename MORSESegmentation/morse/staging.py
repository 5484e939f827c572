"""Staging folders: outputs are written into a temporary sibling folder and renamed into place when complete, so a
failure or cancel never leaves half-written results."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_dir(target: Path, tag: str = "partial") -> Path:
    """A new empty folder next to ``target`` (same file system, so the final rename is atomic), with the permissions
    a plain ``mkdir`` would give (``mkdtemp`` makes it private, 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def publish_permissions(folder: Path) -> None:
    """Give the files of a staged folder the permissions of ordinary new files (some writers create them 0600)."""
    mode = 0o666 & ~_umask()
    for path in folder.iterdir():
        if path.is_file():
            os.chmod(path, mode)
