"""Fetch mechanics on small local archives (no network): sha256 rejection, member filtering, idempotence, layouts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import pytest
from morse.data import fetch as fetch_mod
from morse.data.fetch import MARKER, FetchUnavailableError, data_root, fetch_source, is_fetched, verify_sha256
from morse.data.sources import REQUIRED_SOURCES, SOURCES, Source
from morse.errors import DataError


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_sdist(path: Path) -> Path:
    """A fake sdist: pkg-1.0/data/{a,b}.txt (wanted), pkg-1.0/setup.py (not wanted), a symlink and a ../ escape."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in [
            ("pkg-1.0/data/a.txt", b"alpha"),
            ("pkg-1.0/data/sub/b.txt", b"beta"),
            ("pkg-1.0/setup.py", b"print('never run')"),
            ("pkg-1.0/LICENSE", b"MIT"),
            ("../escape.txt", b"outside"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
        link = tarfile.TarInfo("pkg-1.0/data/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    return path


def _source(sha256: str, **kw) -> Source:
    base = dict(
        name="fake",
        kind="pypi",
        requirement="pkg==1.0",
        filename="pkg-1.0.tar.gz",
        sha256=sha256,
        members=("pkg-1.0/data/", "pkg-1.0/LICENSE"),
        target="pkg-1.0",
        strip_prefix=True,
        description="test",
    )
    base.update(kw)
    return Source(**base)


def test_tampered_archive_is_rejected_and_deleted(tmp_path):
    root = tmp_path / "root"
    (root / "downloads").mkdir(parents=True)
    archive = _make_sdist(root / "downloads" / "pkg-1.0.tar.gz")
    real = _sha(archive)
    wrong = "0" * 64
    with pytest.raises(DataError, match=r"sha256 mismatch .*expected 0{64}, got " + real):
        fetch_source(_source(wrong), root=root)
    assert not archive.exists(), "a file that failed verification must be deleted"
    assert not (root / "pkg-1.0").exists(), "nothing may be extracted from an unverified file"
    assert not is_fetched(_source(wrong), root)


def test_one_flipped_byte_is_detected(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10_000)
    good = _sha(path)
    verify_sha256(path, good)  # passes, file kept
    assert path.exists()
    data = bytearray(path.read_bytes())
    data[5000] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256 mismatch"):
        verify_sha256(path, good)
    assert not path.exists()


def test_extracts_only_the_data_members_and_is_idempotent(tmp_path, monkeypatch):
    root = tmp_path / "root"
    archive = _make_sdist(tmp_path / "pkg-1.0.tar.gz")
    src = _source(_sha(archive))
    folder = fetch_source(src, root=root, archive=archive)
    assert folder == root / "pkg-1.0"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [MARKER, "LICENSE", "data/a.txt", "data/sub/b.txt"]  # no setup.py, no symlink
    assert (folder / "data" / "a.txt").read_text() == "alpha"
    assert not (tmp_path / "escape.txt").exists() and not (root / "escape.txt").exists()
    marker = json.loads((folder / MARKER).read_text())
    assert marker["sha256"] == src.sha256 and marker["files"] == 3
    assert is_fetched(src, root)
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir()), "temporary folders must be cleaned up"

    # Second fetch: nothing is obtained, nothing is rewritten.
    stamp = (folder / MARKER).stat().st_mtime_ns, (folder / "data" / "a.txt").stat().st_mtime_ns

    def no_download(*_a, **_k):
        raise AssertionError("a fetched source must not be downloaded again")

    monkeypatch.setattr(fetch_mod, "_obtain", no_download)
    assert fetch_source(src, root=root) == folder
    assert ((folder / MARKER).stat().st_mtime_ns, (folder / "data" / "a.txt").stat().st_mtime_ns) == stamp


def test_incomplete_folder_is_replaced(tmp_path):
    root = tmp_path / "root"
    archive = _make_sdist(tmp_path / "pkg-1.0.tar.gz")
    src = _source(_sha(archive))
    stale = root / "pkg-1.0"
    stale.mkdir(parents=True)
    (stale / "half-written.txt").write_text("interrupted")  # no marker: not fetched
    assert not is_fetched(src, root)
    fetch_source(src, root=root, archive=archive)
    assert not (stale / "half-written.txt").exists()
    assert (stale / "data" / "a.txt").exists()
    assert not any(p.name.startswith(".trash-") for p in root.iterdir())


def test_wheel_members_go_below_the_target(tmp_path):
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/data/x.nrrd", b"NRRD0004")
        zf.writestr("pkg/code.py", b"pass")
        zf.writestr("pkg-1.0.dist-info/licenses/LICENSE", b"MIT")
    src = _source(
        _sha(whl),
        filename=whl.name,
        members=("pkg/data/", "pkg-1.0.dist-info/licenses/LICENSE"),
        strip_prefix=False,
    )
    folder = fetch_source(src, root=tmp_path / "root", archive=whl)
    assert (folder / "pkg" / "data" / "x.nrrd").read_bytes() == b"NRRD0004"
    assert (folder / "pkg-1.0.dist-info" / "licenses" / "LICENSE").exists()
    assert not (folder / "pkg" / "code.py").exists()


def _ar_member(name: str, payload: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(payload):<10}`\n".encode()
    assert len(header) == 60
    return header + payload + (b"\n" if len(payload) % 2 else b"")


def test_debian_package_data_is_read_without_dpkg(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, text in [("./usr/share/x/templates/ch2.txt", b"T1"), ("./usr/bin/tool", b"#!")]:
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    deb = tmp_path / "x_1.0_all.deb"
    deb.write_bytes(
        b"!<arch>\n"
        + _ar_member("debian-binary", b"2.0\n")
        + _ar_member("control.tar.xz", b"c")  # odd size: checks the ar padding
        + _ar_member("data.tar.xz", buf.getvalue())
    )
    src = _source(
        _sha(deb),
        kind="apt",
        filename=deb.name,
        members=("usr/share/x/templates/",),
        target="x",
        strip_prefix=False,
    )
    folder = fetch_source(src, root=tmp_path / "root", archive=deb)
    assert (folder / "usr/share/x/templates/ch2.txt").read_text() == "T1"
    assert not (folder / "usr/bin/tool").exists()


def test_archive_without_the_expected_members_is_an_error(tmp_path):
    archive = _make_sdist(tmp_path / "pkg-1.0.tar.gz")
    src = _source(_sha(archive), members=("pkg-1.0/not-there/",))
    with pytest.raises(DataError, match="holds none of the expected data files"):
        fetch_source(src, root=tmp_path / "root", archive=archive)


def test_unreachable_registry_is_a_clear_fetch_unavailable_error(tmp_path, monkeypatch):
    """pip with no index at all behaves like an offline machine: the error names the fix."""
    empty = tmp_path / "no-index"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    root = tmp_path / "root"
    with pytest.raises(FetchUnavailableError) as info:
        fetch_source(_source("0" * 64, requirement="morse-no-such-package==1.0"), root=root)
    message = str(info.value)
    assert "pip download of morse-no-such-package==1.0 failed" in message
    assert "MORSE_DATA" in message and str(root / "downloads") in message
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())


def test_data_root_follows_morse_data_then_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("MORSE_DATA", str(tmp_path / "here"))
    assert data_root() == tmp_path / "here"
    monkeypatch.delenv("MORSE_DATA")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert data_root() == tmp_path / "xdg" / "morse"
        monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # XDG: relative paths are invalid
        assert data_root() == Path.home() / ".cache" / "morse"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert data_root() == Path.home() / ".cache" / "morse"


def test_source_table_is_pinned():
    assert REQUIRED_SOURCES == ("totalsegmentator", "slicerio", "pyradiomics")
    assert SOURCES["mricron-data"].required is False
    for src in SOURCES.values():
        assert len(src.sha256) == 64 and int(src.sha256, 16) >= 0
        assert "==" in src.requirement or src.kind == "apt"
    assert SOURCES["totalsegmentator"].pip_args == ("--no-binary", "totalsegmentator")
    forms = SOURCES["pyradiomics"].download_forms()
    # The direct reference pins the very file by hash; the pinned name with the legacy resolver is the fallback.
    assert forms[0][0].startswith("pyradiomics @ https://") and forms[0][0].endswith(
        "/pyradiomics-3.1.0.tar.gz#sha256=" + SOURCES["pyradiomics"].sha256
    )
    assert forms[1] == ("pyradiomics==3.1.0", ("--use-deprecated=legacy-resolver",))
    assert SOURCES["slicerio"].download_forms() == (("slicerio==1.4.0", ()),)


def test_a_failing_pip_form_falls_back_to_the_next(tmp_path, monkeypatch):
    """The first form fails (as the legacy resolver does on newer pip), its partial file is removed, the next works."""
    archive = _make_sdist(tmp_path / "pkg-1.0.tar.gz")
    payload = archive.read_bytes()
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd[cmd.index("-d") + 2 :])
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "pkg-1.0.tar.gz").write_bytes(payload if len(calls) == 2 else b"partial")
        if len(calls) == 1:
            return types.SimpleNamespace(returncode=2, stderr="AssertionError", stdout="")
        return types.SimpleNamespace(returncode=0, stderr="", stdout="")

    monkeypatch.setattr(fetch_mod, "_python_executable", lambda: sys.executable)
    monkeypatch.setattr(fetch_mod.subprocess, "run", fake_run)
    forms = (("pkg==1.0", ("--use-deprecated=legacy-resolver",)), ("pkg @ https://example.invalid/pkg-1.0.tar.gz", ()))
    target = fetch_source(_source(_sha(archive), pip_forms=forms), root=tmp_path / "root")
    assert calls == [["--use-deprecated=legacy-resolver", "pkg==1.0"], ["pkg @ https://example.invalid/pkg-1.0.tar.gz"]]
    assert (target / "data" / "a.txt").read_text() == "alpha"


def test_when_every_pip_form_fails_the_error_is_the_last_ones(tmp_path, monkeypatch):
    tails = iter(["first reason", "second reason"])
    monkeypatch.setattr(fetch_mod, "_python_executable", lambda: sys.executable)
    monkeypatch.setattr(
        fetch_mod.subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=1, stderr=next(tails), stdout="")
    )
    forms = (("pkg==1.0", ()), ("pkg @ https://example.invalid/pkg-1.0.tar.gz", ()))
    with pytest.raises(FetchUnavailableError, match="second reason") as info:
        fetch_source(_source("0" * 64, pip_forms=forms), root=tmp_path / "root")
    assert "first reason" not in str(info.value)


def test_unknown_source_name():
    with pytest.raises(DataError, match="unknown data source 'nope'; known sources: totalsegmentator"):
        fetch_mod.fetch(["nope"])


def test_marker_with_another_checksum_is_not_fetched(tmp_path):
    src = _source("a" * 64)
    folder = tmp_path / src.target
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps({"source": "fake", "sha256": "b" * 64}))
    assert not is_fetched(src, tmp_path)
    (folder / MARKER).write_text(json.dumps({"source": "fake", "sha256": "a" * 64}))
    assert is_fetched(src, tmp_path)
    os.remove(folder / MARKER)
    assert not is_fetched(src, tmp_path)


def test_cases_without_fetch_say_how_to_get_the_data(tmp_path, monkeypatch):
    from morse.data import cases

    monkeypatch.setenv("MORSE_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"sample data 'totalsegmentator' is not in .*empty; run 'morse fetch-data "):
        cases.case_path("abdomen-ct", fetch=False)
    with pytest.raises(DataError, match="run 'morse fetch-data totalsegmentator'"):
        cases.case_label_path("abdomen-ct", fetch=False)
    with pytest.raises(DataError, match="run 'morse fetch-data slicerio'"):
        cases.case_path("chest-ct", fetch=False)
    assert cases.case_label_path("lung-ct", fetch=False) is None  # no Synapse-8 reference: nothing to fetch
    assert not (tmp_path / "empty").exists()  # nothing was created


def test_concurrent_fetches_extract_once(tmp_path, monkeypatch):
    import threading

    root = tmp_path / "root"
    archive = _make_sdist(tmp_path / "pkg-1.0.tar.gz")
    src = _source(_sha(archive))
    calls = []
    real_extract = fetch_mod._extract

    def counting_extract(*args):
        calls.append(1)
        return real_extract(*args)

    monkeypatch.setattr(fetch_mod, "_extract", counting_extract)
    results, errors = [], []

    def worker():
        try:
            results.append(fetch_source(src, root=root, archive=archive))
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [root / "pkg-1.0"] * 4
    assert len(calls) == 1, "the per-source lock must make later fetches wait and then find the data in place"
    assert (root / "pkg-1.0" / "data" / "sub" / "b.txt").read_text() == "beta"


def test_missing_pip_is_not_reported_as_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_mod, "_python_executable", lambda: sys.executable)
    monkeypatch.setattr(
        fetch_mod.subprocess,
        "run",
        lambda *a, **k: types.SimpleNamespace(returncode=1, stderr="/usr/bin/python3: No module named pip", stdout=""),
    )
    with pytest.raises(DataError, match="has no pip") as info:
        fetch_source(_source("0" * 64), root=tmp_path / "root")
    assert not isinstance(info.value, FetchUnavailableError)


def test_derived_files_fall_back_to_the_user_cache(tmp_path, monkeypatch):
    from morse.data.fetch import writable_dir

    blocker = tmp_path / "shared"
    blocker.write_text("a file where MORSE_DATA/generated would have to be a folder")
    monkeypatch.setenv("MORSE_DATA", str(blocker))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = writable_dir("generated/synapse8")
    if sys.platform.startswith("linux"):
        assert folder == tmp_path / "xdg" / "morse" / "generated" / "synapse8"
    assert folder.is_dir() and not list(folder.iterdir())
    monkeypatch.setenv("MORSE_DATA", str(tmp_path / "ok"))
    assert writable_dir("datasets") == tmp_path / "ok" / "datasets"
