"""``morse segment`` on real files: every output of DESIGN §4 on the input grid, Slicer-readable, no data lost."""

from __future__ import annotations

import json

import numpy as np
import pytest
from morse.cli import main
from morse.geometry import ijk_to_ras_from_lps
from morse.imageio import read_image, write_image
from morse.inference.outputs import OUTPUT_FILES
from morse.uncertainty.review import REVIEW_FILES
from synthetic import ring_slices


@pytest.fixture
def ct_file(tmp_path):
    image, label = ring_slices(6, seed=21)
    direction = np.diag([-1.0, -1.0, 1.0])  # stored RAS, like many NIfTI files
    m = ijk_to_ras_from_lps((40.0, 30.0, -5.0), (1.0, 1.0, 2.0), direction.ravel())
    return write_image(tmp_path / "case01.nii.gz", image, m), label, m


def test_writes_every_output_on_the_input_grid(trained_rings, ct_file, tmp_path, capsys):
    _, pack = trained_rings
    path, label, m = ct_file
    out = tmp_path / "out"
    # the ring task's disc has several pieces: post-processing (tested in test_anatomy.py) would keep one
    assert main(["segment", str(path), "-o", str(out), "--model", str(pack), "--device", "cpu", "--no-postprocess"]) \
        == 0  # fmt: skip
    case = out / "case01"
    assert sorted(p.name for p in case.iterdir()) == sorted(OUTPUT_FILES + REVIEW_FILES)
    for name in OUTPUT_FILES:
        if name.endswith((".nii.gz", ".nrrd")):
            img = read_image(case / name)
            assert np.allclose(img.ijk_to_ras, m, atol=1e-5), name
            assert img.array.shape[:3] == label.shape, name
    seg = read_image(case / "segmentation.nii.gz").array
    assert ((seg == 1) & (label == 1)).sum() / (label == 1).sum() > 0.9
    gating = read_image(case / "gating.nii.gz").array
    assert gating.shape == (*label.shape, 5) and np.allclose(gating.sum(-1), 1, atol=0.02)
    summary = json.loads((case / "summary.json").read_text())
    assert summary["model"]["id"] == "rings" and summary["volumes_ml"]["disc"] > 0
    assert "total" in summary["timings_s"]
    assert "segmentation.seg.nrrd" in capsys.readouterr().out


def test_seg_nrrd_is_a_slicer_segmentation(trained_rings, ct_file, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    _, pack = trained_rings
    path, _, _ = ct_file
    main(["segment", str(path), "-o", str(tmp_path / "o"), "--model", str(pack), "--no-gating", "--no-uncertainty"])
    seg = slicerio.read_segmentation(str(tmp_path / "o" / "case01" / "segmentation.seg.nrrd"))
    names = [s["name"] for s in seg["segments"]]
    assert names == ["disc", "ring"]
    assert [s["labelValue"] for s in seg["segments"]] == [1, 2]
    assert not (tmp_path / "o" / "case01" / "gating.nii.gz").exists()


def test_existing_output_is_not_overwritten_without_permission(trained_rings, ct_file, tmp_path, capsys):
    _, pack = trained_rings
    path, _, _ = ct_file
    case = tmp_path / "o" / "case01"
    case.mkdir(parents=True)
    (case / "my-notes.txt").write_text("keep me")
    code = main(["segment", str(path), "-o", str(tmp_path / "o"), "--model", str(pack)])
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (case / "my-notes.txt").read_text() == "keep me"
    assert main(["segment", str(path), "-o", str(tmp_path / "o"), "--model", str(pack), "--overwrite"]) == 0
    assert (case / "segmentation.nii.gz").exists() and not (case / "my-notes.txt").exists()
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_unreadable_input_and_pickle_model_fail_cleanly(trained_rings, tmp_path, capsys):
    _, pack = trained_rings
    bogus = tmp_path / "scan.nii.gz"
    bogus.write_bytes(b"not an image")
    assert main(["segment", str(bogus), "-o", str(tmp_path / "o"), "--model", str(pack)]) == 2
    assert "could not be read" in capsys.readouterr().err
    evil = tmp_path / "model.pth"
    evil.write_bytes(b"\x80\x04")
    assert main(["segment", str(bogus), "-o", str(tmp_path / "o"), "--model", str(evil)]) == 2
    assert "pickle" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_outputs_and_packs_get_ordinary_permissions(trained_rings, ct_file, tmp_path):
    import os
    import stat

    _, pack = trained_rings
    path, _, _ = ct_file
    old = os.umask(0o022)
    try:
        main(["segment", str(path), "-o", str(tmp_path / "o"), "--model", str(pack), "--no-gating"])
    finally:
        os.umask(old)
    case = tmp_path / "o" / "case01"
    assert stat.S_IMODE(case.stat().st_mode) == 0o755  # not mkdtemp's private 0700
    assert {stat.S_IMODE(p.stat().st_mode) for p in case.iterdir()} == {0o644}
    assert {stat.S_IMODE(p.stat().st_mode) for p in pack.iterdir()} == {0o644}


@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_gating_stride_must_be_a_positive_whole_number(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["segment", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "o"), "--gating-stride", value])
    assert exit_.value.code == 2
    assert f"argument --gating-stride: must be a whole number of at least 1, got '{value}'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, expected", [([], 4), (["--gating-stride", "3"], 3)])
def test_gating_stride_is_the_packs_unless_given(trained_rings, ct_file, tmp_path, monkeypatch, flag, expected):
    import shutil

    from morse.inference import pipeline

    _, pack = trained_rings
    path, _, _ = ct_file
    own = tmp_path / "pack"
    shutil.copytree(pack, own)
    meta = json.loads((own / "model.json").read_text())
    meta["inference"] = {**meta.get("inference", {}), "gating_stride": 4}
    (own / "model.json").write_text(json.dumps(meta))
    seen = []
    plan = pipeline.plan_inference

    def spy(*args, **kwargs):
        seen.append(kwargs["gating_stride"])
        return plan(*args, **kwargs)

    monkeypatch.setattr(pipeline, "plan_inference", spy)
    out = tmp_path / "o"
    assert main(["segment", str(path), "-o", str(out), "--model", str(own), "--device", "cpu", *flag]) == 0
    assert seen == [expected]
