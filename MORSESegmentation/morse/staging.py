"""Staging folders: outputs are written into a temporary sibling folder and moved into place when complete.

The rules that keep user data safe live here:

- a case folder is never the same as, or a parent of, an input (:func:`refuse_overlap`);
- one process at a time writes a case folder (:class:`CaseLock`, an advisory lock file beside it);
- publishing leaves either the old or the new folder under the case name (:func:`publish`: an atomic exchange where
  the OS offers one, two renames otherwise), and what a killed run left behind is put back or removed by the next run
  that holds the lock (:func:`recover_leftovers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import OutputError

_PARTIAL = "partial"
_OLD = "old"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_dir(target: Path, tag: str = _PARTIAL) -> Path:
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


# ----------------------------------------------------------------------------------------------------------------------
# inputs vs outputs


def refuse_overlap(case_dir: Path, protected: list[tuple[str, Path]]) -> None:
    """Refuse a case folder that equals or contains one of ``protected`` ((what, path) pairs: inputs, the model pack),
    since replacing the folder would delete them."""
    target = Path(os.path.abspath(case_dir))
    real_target = Path(os.path.realpath(case_dir))
    for what, path in protected:
        for candidate in {Path(os.path.abspath(path)), Path(os.path.realpath(path))}:
            for folder in (target, real_target):
                if candidate == folder or folder in candidate.parents:
                    raise OutputError(
                        f"the output folder {case_dir} would contain the {what} {path}; writing the results there "
                        f"would replace it. Choose an -o folder outside the {what}'s folder"
                    )


# ----------------------------------------------------------------------------------------------------------------------
# one writer per case folder


class CaseLock:
    """An exclusive, non-blocking lock on a case folder, held from before the computation until the results are
    published. The lock is a file ``.<name>.lock`` beside the folder, removed on release; the OS releases the lock when
    the process dies, so a killed run never blocks the next one (its file stays and is reused)."""

    def __init__(self, case_dir: Path):
        self.case_dir = Path(case_dir)
        self.path = self.case_dir.with_name(f".{self.case_dir.name}.lock")
        self._fd: int | None = None

    def __enter__(self) -> CaseLock:
        self.case_dir.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            if not _try_lock(fd):
                os.close(fd)
                raise OutputError(
                    f"another MORSE run is writing {self.case_dir} right now; wait for it to finish or choose "
                    f"another -o folder"
                )
            if _same_file(fd, self.path):
                self._fd = fd
                return self
            os.close(fd)  # the holder removed the file between our open and lock: ours is a stale copy; again
        raise OutputError(f"could not lock {self.path}; another MORSE run keeps replacing it")

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            # Removed while still held, so a run that opened it meanwhile sees a different file and retries.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


# ----------------------------------------------------------------------------------------------------------------------
# publishing and recovery


def _leftovers(case_dir: Path, tag: str) -> list[Path]:
    prefix = f".{case_dir.name}.{tag}-"
    if not case_dir.parent.is_dir():
        return []
    return sorted(p for p in case_dir.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())


def recover_leftovers(case_dir: Path) -> list[str]:
    """Put back or remove what an interrupted earlier run left beside ``case_dir``; the caller holds its
    :class:`CaseLock`, so no live run owns these folders. Returns one note per action."""
    notes = []
    olds = _leftovers(case_dir, _OLD)
    if olds and not case_dir.exists():
        # killed between the two renames of a publish: the previous results are the newest old folder
        keep = max(olds, key=lambda p: p.stat().st_mtime)
        keep.rename(case_dir)
        olds.remove(keep)
        notes.append(f"an interrupted earlier run had hidden the results in {case_dir}; they were put back")
    for folder in olds + _leftovers(case_dir, _PARTIAL):
        shutil.rmtree(folder, ignore_errors=True)
        notes.append(f"removed {folder.name}, left behind by an interrupted earlier run")
    return notes


def publish(staged: Path, case_dir: Path, on_step=None) -> None:
    """Move the complete folder ``staged`` to ``case_dir``, replacing an existing one. At every instant one of the two
    is visible under the case name: an atomic exchange on Linux, else rename-away and rename-in (a kill between them
    is repaired by :func:`recover_leftovers`). ``on_step(name)`` is called after ``"exchanged"`` (or
    ``"moved-aside"`` and ``"moved-in"`` on the two-rename path, or ``"renamed"`` when there was no old folder) and
    after ``"old-removed"``."""
    step = on_step or (lambda _name: None)
    if not case_dir.exists():
        staged.rename(case_dir)
        step("renamed")
        return
    if _exchange(staged, case_dir):
        step("exchanged")
        shutil.rmtree(staged, ignore_errors=True)  # now holds the previous results
        step("old-removed")
        return
    old = case_dir.with_name(f".{case_dir.name}.{_OLD}-{os.getpid()}")
    case_dir.rename(old)
    step("moved-aside")
    try:
        staged.rename(case_dir)
    except BaseException:
        if not case_dir.exists():
            old.rename(case_dir)
        raise
    step("moved-in")
    shutil.rmtree(old, ignore_errors=True)
    step("old-removed")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where the OS or file system lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
