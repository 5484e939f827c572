"""Cancel and failure leave nothing half-written: a case folder appears complete or not at all, and an existing
folder is replaced only with ``--overwrite`` and only by a complete new one — whatever interrupts the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from morse import staging
from morse.cli import main
from morse.errors import CancelledError, OutputError
from morse.geometry import ijk_to_ras_from_lps
from morse.imageio import write_image
from morse.inference import outputs as outputs_module
from morse.inference.outputs import OUTPUT_FILES, write_case
from morse.inference.result import SegmentationResult
from morse.labels import LabelInfo
from morse.uncertainty.review import REVIEW_FILES
from synthetic import ring_slices


def _result(shape=(3, 16, 16)) -> SegmentationResult:
    labels = np.zeros(shape, np.uint8)
    labels[1, 4:9, 4:9] = 1
    return SegmentationResult(
        labels=labels,
        coarse_labels=labels.copy(),
        ijk_to_ras=np.diag([-1.0, -1.0, 2.0, 1.0]),
        labels_info=[LabelInfo(1, "disc", (0.9, 0.2, 0.2))],
        gating=np.full((2, *shape), 0.5, np.float32),
        uncertainty=np.zeros(shape, np.float32),
        rectified=np.zeros(shape, np.uint8),
    )


def _existing_case(root: Path) -> Path:
    case = root / "case"
    case.mkdir(parents=True)
    (case / "segmentation.nii.gz").write_bytes(b"the previous result")
    (case / "my-notes.txt").write_text("keep me", encoding="utf-8")
    return case


def _fail_on_third_file(monkeypatch, exc: BaseException):
    """The third NIfTI file (the gate maps) fails while the .seg.nrrd is being written on its own thread."""
    real = outputs_module.write_nifti
    calls = {"n": 0}

    def write_nifti(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise exc
        return real(path, *args, **kwargs)

    monkeypatch.setattr(outputs_module, "write_nifti", write_nifti)


def _raised(exc: BaseException) -> type:
    """A writer's error (an OSError) becomes an OutputError; interrupts pass unchanged."""
    return OutputError if isinstance(exc, OSError) else type(exc)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt(), CancelledError()])
def test_interrupted_write_leaves_no_case_folder(tmp_path, monkeypatch, exc):
    _fail_on_third_file(monkeypatch, exc)
    with pytest.raises(_raised(exc)):
        write_case(tmp_path / "out" / "case", _result(), np.zeros((3, 16, 16), np.float32), "ct.nii.gz")
    assert _listing(tmp_path / "out") == []  # neither the case nor a hidden temporary folder


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt(), CancelledError()])
def test_interrupted_overwrite_keeps_the_existing_folder_intact(tmp_path, monkeypatch, exc):
    case = _existing_case(tmp_path / "out")
    before = _listing(tmp_path / "out")
    _fail_on_third_file(monkeypatch, exc)
    with pytest.raises(_raised(exc)):
        write_case(case, _result(), np.zeros((3, 16, 16), np.float32), "ct.nii.gz", overwrite=True)
    assert _listing(tmp_path / "out") == before
    assert (case / "my-notes.txt").read_text(encoding="utf-8") == "keep me"


def test_interrupt_between_the_two_renames_puts_the_old_folder_back(tmp_path, monkeypatch):
    """The swap is two renames (old aside, new in); an interrupt between them must not lose the user's folder."""
    case = _existing_case(tmp_path / "out")
    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)  # the two-rename path of systems without exchange
    real_rename = Path.rename

    def rename(self, target):
        if ".partial-" in self.name and Path(target) == case:
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        write_case(case, _result(), np.zeros((3, 16, 16), np.float32), "ct.nii.gz", overwrite=True)
    assert _listing(tmp_path / "out") == ["case", "case/my-notes.txt", "case/segmentation.nii.gz"]
    assert (case / "segmentation.nii.gz").read_bytes() == b"the previous result"


def test_existing_folder_needs_overwrite(tmp_path):
    case = _existing_case(tmp_path / "out")
    with pytest.raises(OutputError) as err:
        write_case(case, _result(), np.zeros((3, 16, 16), np.float32), "ct.nii.gz")
    assert str(err.value) == f"{case} already exists; pass --overwrite to replace it, or choose another -o folder"
    written = write_case(case, _result(), np.zeros((3, 16, 16), np.float32), "ct.nii.gz", overwrite=True)
    assert sorted(p.name for p in written.iterdir()) == sorted(OUTPUT_FILES)


@pytest.fixture
def two_inputs(tmp_path):
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3).ravel())
    good = write_image(tmp_path / "good.nii.gz", ring_slices(3, seed=2)[0], m)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    return good, bad


def test_cli_interrupted_while_writing_leaves_nothing(trained_rings, two_inputs, tmp_path, monkeypatch, capsys):
    good, _ = two_inputs

    def interrupted_preview(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs_module, "write_preview", interrupted_preview)
    out = tmp_path / "o"
    assert main(["segment", str(good), "-o", str(out), "--model", str(trained_rings[1]), "--device", "cpu"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert _listing(out) == []


def test_cli_review_list_failing_keeps_the_previous_results(trained_rings, two_inputs, tmp_path, monkeypatch, capsys):
    """The review files are part of the case: a full disk while writing them publishes nothing of the new run."""
    from morse.uncertainty import review as review_module

    good, _ = two_inputs
    out = tmp_path / "o"
    _existing_case(out).rename(out / "good")
    before = _listing(out)
    real = review_module.write_review

    def full_disk(folder, review):
        real(folder, review)  # written into the staging folder, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(review_module, "write_review", full_disk)
    model = ["--model", str(trained_rings[1]), "--device", "cpu"]
    assert main(["segment", str(good), "-o", str(out), "--overwrite", *model]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert _listing(out) == before
    assert (out / "good" / "segmentation.nii.gz").read_bytes() == b"the previous result"


def test_cli_existing_output_and_several_inputs(trained_rings, two_inputs, tmp_path, capsys):
    good, bad = two_inputs
    out = tmp_path / "o"
    model = ["--model", str(trained_rings[1]), "--device", "cpu"]
    _existing_case(out).rename(out / "good")
    # refused before any computation, for every case: nothing is touched
    assert main(["segment", str(bad), str(good), "-o", str(out), *model]) == 2
    assert capsys.readouterr().err == (
        f"error: {out / 'good'} already exists; pass --overwrite to replace it, or choose another -o folder\n"
    )
    assert (out / "good" / "my-notes.txt").exists() and not (out / "bad").exists()
    # with --overwrite: the unreadable case is reported, the good one written, exit status 1 (some failed)
    assert main(["segment", str(bad), str(good), "-o", str(out), "--overwrite", *model]) == 1
    assert sorted(p.name for p in (out / "good").iterdir()) == sorted(OUTPUT_FILES + REVIEW_FILES)
    assert _listing(out) == sorted(["good", *(f"good/{n}" for n in OUTPUT_FILES + REVIEW_FILES)])


_WRITE_UNDER_A_SIZE_LIMIT = """
import resource, sys
import numpy as np
sys.path[:0] = [sys.argv[2], str(__import__("pathlib").Path(sys.argv[2]).parent)]  # this folder and synthetic.py's
from test_atomic_outputs import _result
from morse.errors import OutputError
from morse.inference.outputs import write_case
result = _result((8, 96, 96))
result.gating = np.random.default_rng(0).random((2, 8, 96, 96)).astype(np.float32)  # incompressible
resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))  # Python ignores SIGXFSZ: writes past it fail with EFBIG
try:
    write_case(sys.argv[1], result, np.zeros((8, 96, 96), np.float32), "ct.nii.gz", overwrite=True)
except OutputError as exc:
    print("error:", exc)
    sys.exit(2)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="resource limits are POSIX")
def test_a_write_cut_short_by_a_file_size_limit_is_an_error_and_keeps_the_old_results(tmp_path):
    """A file-size limit cuts the gating map short: the writer's error (or, for ITK's writer, which reports nothing,
    the read-back) names the file, and the old results stay."""
    import subprocess
    import sys

    case = _existing_case(tmp_path / "out")
    before = {p: p.read_bytes() for p in case.iterdir()}
    proc = subprocess.run(
        [sys.executable, "-c", _WRITE_UNDER_A_SIZE_LIMIT, str(case), str(Path(__file__).parent)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{case}" in proc.stdout and "gating.nii.gz: writing failed" in proc.stdout
    assert "the previous results of" in proc.stdout and "Traceback" not in proc.stderr
    assert {p: p.read_bytes() for p in case.iterdir()} == before
    assert _listing(tmp_path / "out") == ["case", "case/my-notes.txt", "case/segmentation.nii.gz"]


@pytest.fixture
def small_disk(tmp_path):
    """A 256 kB file system (tmpfs; needs the right to mount, so root on Linux)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small file system here (needs root on Linux)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_an_error_and_keeps_the_old_results(small_disk):
    case = _existing_case(small_disk / "out")
    before = {p: p.read_bytes() for p in case.iterdir()}
    result = _result((8, 128, 128))
    result.gating = np.random.default_rng(0).random((2, 8, 128, 128)).astype(np.float32)  # ~1 MB, incompressible
    with pytest.raises(OutputError) as err:
        write_case(case, result, np.zeros((8, 128, 128), np.float32), "ct.nii.gz", overwrite=True)
    text = str(err.value)
    assert "writing" in text and "failed" in text and "unchanged" in text
    assert {p: p.read_bytes() for p in case.iterdir()} == before
    assert _listing(small_disk / "out") == ["case", "case/my-notes.txt", "case/segmentation.nii.gz"]
