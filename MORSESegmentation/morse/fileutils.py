"""File utilities for every layer: hashing, sizes as text, atomic file and folder writes, and host memory.

Host memory comes from the standard library alone: 3D Slicer's bundled Python has no psutil and MORSE must not need a
compiled package just to ask how much memory is free, so each platform is asked in its own way: ``/proc/meminfo`` and
the cgroup v2 limit on Linux, ``vm_stat`` on macOS, ``GlobalMemoryStatusEx`` on Windows. This module imports nothing
from MORSE, so any layer may use it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

# Only used when the platform cannot be asked: low enough not to promise memory that may be missing, high enough
# that an ordinary CT still passes the memory checks.
FALLBACK_AVAILABLE = 4 << 30
CGROUP_ROOT = Path("/sys/fs/cgroup")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def size_text(n: float) -> str:
    """Bytes as text in decimal units: ``"5.4 TB"``, ``"1.2 GB"``, ``"340 MB"``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9)):
        if n >= 0.1 * scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e6:.3g} MB"


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write a file by calling ``write(temporary_path)`` and renaming the result to ``path``, so that readers see the
    old file or the complete new one, never a partial one. The temporary file is a sibling (same file system, so the
    rename is atomic) that keeps the file's name at its end (``.tmp-1a2b3c4d-label.nii.gz``: writers that choose the
    format by the ending still see it); it is removed when ``write`` fails."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` for UTF-8 text."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def replace_folder(staged: str | Path, target: str | Path) -> Path:
    """Move the complete folder ``staged`` to ``target`` (a sibling), replacing what was there: an old ``target`` is
    first renamed aside and then deleted, so the final rename is atomic."""
    staged, target = Path(staged), Path(target)
    if target.exists():
        trash = target.with_name(f".trash-{target.name}-{uuid.uuid4().hex[:8]}")
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staged, target)
    return target


def available_memory() -> int:
    """Bytes of memory this process can allocate now without swapping: free plus reclaimable caches, and no more
    than what its cgroup (container, systemd slice) still allows."""
    try:
        if sys.platform.startswith("linux"):
            known = [n for n in (_linux_meminfo("MemAvailable"), _cgroup_room()) if n is not None]
            if known:
                return min(known)
        elif sys.platform == "darwin":
            free = _macos_available()
            if free is not None:
                return free
        elif sys.platform == "win32":
            return int(_windows_status().ullAvailPhys)
    except (OSError, ValueError, subprocess.SubprocessError):
        pass  # an unreadable source: fall through to the estimate below rather than fail the run
    total = total_memory()
    return min(FALLBACK_AVAILABLE, total // 2) if total else FALLBACK_AVAILABLE


def total_memory() -> int | None:
    """Bytes of physical memory of this machine, or None when the platform does not say."""
    try:
        if sys.platform == "win32":
            return int(_windows_status().ullTotalPhys)
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_size > 0:
            return int(pages) * int(page_size)
    except (OSError, ValueError, AttributeError):
        pass  # os.sysconf is missing or does not know the name on this platform
    return None


def _linux_meminfo(key: str) -> int | None:
    for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) * 1024  # the kernel writes kB and means KiB
    return None


def _cgroup_room() -> int | None:
    """Bytes left under the cgroup v2 memory limit of this process, or None when it has no limit.

    The process's own cgroup is asked first (a systemd slice on a desktop); inside a container the namespace makes it
    ``/``, which is the mount root itself.
    """
    for folder in _cgroup_folders():
        try:
            limit = (folder / "memory.max").read_text(encoding="ascii").strip()
            used = int((folder / "memory.current").read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue
        if limit == "max":
            continue  # this level does not limit; a parent might, but walking up rarely finds one on desktops
        return max(0, int(limit) - used)
    return None


def _cgroup_folders() -> list[Path]:
    folders = []
    try:
        for line in Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines():
            if line.startswith("0::"):
                own = CGROUP_ROOT / line[3:].strip().lstrip("/")
                if own != CGROUP_ROOT:
                    folders.append(own)
    except OSError:
        pass
    folders.append(CGROUP_ROOT)
    return folders


def _macos_available() -> int | None:
    # Free, inactive and speculative pages are what macOS hands out without swapping (as psutil counts them).
    out = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=5, check=True).stdout
    page_size, pages = None, 0
    for line in out.splitlines():
        if "page size of" in line:
            page_size = int(line.split("page size of")[1].split()[0])
            continue
        name, _, value = line.partition(":")
        if name.strip() in ("Pages free", "Pages inactive", "Pages speculative"):
            pages += int(value.strip().rstrip("."))
    if page_size is None or pages == 0:
        return None
    return pages * page_size


def _windows_status():
    import ctypes

    class MemoryStatusEx(ctypes.Structure):
        _fields_ = [  # the Win32 MEMORYSTATUSEX layout, field by field
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatusEx()
    status.dwLength = ctypes.sizeof(MemoryStatusEx)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        raise OSError("GlobalMemoryStatusEx failed")
    return status
