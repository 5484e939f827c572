"""User data is never lost to an output folder: the case folder never contains or equals an input, case names are
never empty, one run at a time writes a case folder, and what a killed run hid is put back by the next one."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
from morse import staging
from morse.cli import main
from morse.errors import InputError
from morse.geometry import ijk_to_ras_from_lps
from morse.imageio import case_name, write_image
from morse.inference.outputs import OUTPUT_FILES
from morse.uncertainty.review import REVIEW_FILES
from synthetic import ring_slices


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _ct(path: Path) -> Path:
    m = ijk_to_ras_from_lps((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3).ravel())
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, ring_slices(3, seed=2)[0], m)


@pytest.fixture
def model(trained_rings):
    return ["--model", str(trained_rings[1]), "--device", "cpu"]


def test_output_folder_equal_to_the_input_folder_is_refused(tmp_path, model, dicom_series, capsys):
    study = tmp_path / "study"
    series = study / "ct"
    dicom_series(series, np.zeros((3, 16, 16), np.int16), [0.0, 2.0, 4.0])
    before = _hashes(study)
    assert main(["segment", str(series), "-o", str(study), "--overwrite", *model]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the output folder {study / 'ct'} would contain the input {series};")
    assert _hashes(study) == before


def test_output_folder_above_the_input_is_refused(tmp_path, model, capsys):
    ct = _ct(tmp_path / "results" / "ct" / "scan" / "ct.nii.gz")  # the input lies inside results/ct
    before = _hashes(tmp_path)
    assert main(["segment", str(ct), "-o", str(tmp_path / "results"), "--overwrite", *model]) == 2
    # results/ct would be the case folder of "ct.nii.gz": replacing it deletes the input
    assert "would contain the input" in capsys.readouterr().err
    assert _hashes(tmp_path) == before


def test_output_folder_holding_the_model_pack_is_refused(tmp_path, trained_rings, capsys):
    pack_copy = tmp_path / "o" / "ct"
    import shutil

    shutil.copytree(trained_rings[1], pack_copy)
    ct = _ct(tmp_path / "in" / "ct.nii.gz")
    before = _hashes(tmp_path)
    argv = ["segment", str(ct), "-o", str(tmp_path / "o"), "--overwrite", "--model", str(pack_copy), "--device", "cpu"]
    assert main(argv) == 2
    assert "would contain the model pack" in capsys.readouterr().err
    assert _hashes(tmp_path) == before


@pytest.mark.parametrize("spelling", [".", "..", "./"])
def test_dot_inputs_are_named_after_their_folder(tmp_path, spelling, monkeypatch):
    folder = tmp_path / "patient7" / "inner"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    expected = "inner" if spelling != ".." else "patient7"
    assert case_name(spelling) == expected


def test_dot_input_never_replaces_the_whole_results_folder(tmp_path, model, dicom_series, monkeypatch, capsys):
    series = tmp_path / "ct7"
    dicom_series(series, np.zeros((3, 16, 16), np.int16), [0.0, 2.0, 4.0])
    results = tmp_path / "results"
    (results / "other-case").mkdir(parents=True)
    (results / "other-case" / "summary.json").write_text("{}", encoding="utf-8")
    monkeypatch.chdir(series)
    before = _hashes(series)
    assert main(["segment", ".", "-o", "../results", "--overwrite", *model]) == 0
    assert (results / "other-case" / "summary.json").read_text(encoding="utf-8") == "{}"
    assert sorted(p.name for p in (results / "ct7").iterdir()) == sorted(OUTPUT_FILES + REVIEW_FILES)
    assert _hashes(series) == before


def test_hidden_or_empty_case_names_are_refused():
    with pytest.raises(InputError, match="cannot name an output folder"):
        case_name(".nii.gz")
    with pytest.raises(InputError, match="cannot name an output folder"):
        case_name("/")


def _hold_lock(case_dir: str, ready, release) -> None:
    with staging.CaseLock(Path(case_dir)):
        ready.set()
        release.wait(30)


def test_a_case_folder_locked_by_another_run_is_refused(tmp_path, model, capsys):
    ct = _ct(tmp_path / "in" / "ct.nii.gz")
    out = tmp_path / "o"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(out / "ct"), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        assert main(["segment", str(ct), "-o", str(out), *model]) == 2
        assert capsys.readouterr().err == (
            f"error: another MORSE run is writing {out / 'ct'} right now; wait for it to finish or choose another "
            f"-o folder\n"
        )
        assert not (out / "ct").exists()
    finally:
        release.set()
        holder.join(30)
    # released (and the lock file removed): the next run goes through
    assert main(["segment", str(ct), "-o", str(out), *model]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ct"]


def test_lock_released_by_a_killed_holder(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "ct"), ready, release))
    holder.start()
    assert ready.wait(60)
    holder.kill()
    holder.join(30)
    with staging.CaseLock(tmp_path / "ct"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_results_hidden_by_a_kill_between_the_renames_are_put_back(tmp_path, model, capsys):
    ct = _ct(tmp_path / "in" / "ct.nii.gz")
    out = tmp_path / "o"
    old = out / ".ct.old-4242"  # what a run killed between its two renames leaves
    old.mkdir(parents=True)
    (old / "summary.json").write_text('{"previous": true}', encoding="utf-8")
    partial = out / ".ct.partial-abc"
    partial.mkdir()
    (partial / "segmentation.nii.gz").write_bytes(b"half")
    # without --overwrite the recovered folder is the user's result: it is put back, and the run refuses to replace it
    assert main(["segment", str(ct), "-o", str(out), *model]) == 2
    captured = capsys.readouterr()
    assert (
        f"note: an interrupted earlier run had hidden the results in {out / 'ct'}; they were put back" in captured.out
    )
    assert "note: removed .ct.partial-abc, left behind by an interrupted earlier run" in captured.out
    assert "already exists; pass --overwrite" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["ct"]
    assert (out / "ct" / "summary.json").read_text(encoding="utf-8") == '{"previous": true}'


@pytest.mark.parametrize("exchange", [True, False])
def test_publish_replaces_and_leaves_no_leftovers(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    case = tmp_path / "ct"
    case.mkdir()
    (case / "a").write_text("old", encoding="utf-8")
    staged = staging.staging_dir(case)
    (staged / "a").write_text("new", encoding="utf-8")
    staging.publish(staged, case)
    assert (case / "a").read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]


def test_output_that_is_a_file_or_unwritable_is_a_clean_error(tmp_path, model, capsys):
    ct = _ct(tmp_path / "in" / "ct.nii.gz")
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine", encoding="utf-8")
    assert main(["segment", str(ct), "-o", str(a_file), *model]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text(encoding="utf-8") == "mine"
    assert main(["segment", str(ct), "-o", str(a_file / "sub"), *model]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert main(["segment", str(ct), "-o", str(ro / "new"), *model]) == 2
        assert capsys.readouterr().err.startswith("error: ")
