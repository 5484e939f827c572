"""Host memory of this machine, from the standard library alone.

3D Slicer's bundled Python has no psutil and MORSE must not need a compiled package just to ask how much memory is
free, so each platform is asked in its own way: ``/proc/meminfo`` and the cgroup v2 limit on Linux, ``vm_stat`` on
macOS, ``GlobalMemoryStatusEx`` on Windows. This module imports nothing from MORSE, so any layer may use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Only used when the platform cannot be asked: low enough not to promise memory that may be missing, high enough
# that an ordinary CT still passes the memory checks.
FALLBACK_AVAILABLE = 4 << 30
CGROUP_ROOT = Path("/sys/fs/cgroup")


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
