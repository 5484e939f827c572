"""Dataset readers on synthetic folders written in tmp_path: nnU-Net v2, MSD, TransUNet Synapse, file lists."""

from __future__ import annotations

import json
import locale

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from morse.data import synapse8
from morse.data.readers import (
    Case,
    dataset_format,
    dataset_labels,
    load_case,
    read_dataset,
    read_filelist,
    read_nnunet,
    read_synapse,
    select_split,
)
from morse.errors import DataError

SPACING = (0.8, 0.9, 2.5)  # i, j, k (mm)
ORIGIN = (10.0, -20.0, 30.0)  # LPS


def _write(path, array, spacing=SPACING, origin=ORIGIN, direction=None):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def _volume(seed: int, shape=(6, 7, 8)):
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 100, shape).astype(np.int16)
    label = rng.integers(0, 3, shape).astype(np.uint8)
    return image, label


def _nnunet(tmp_path, channels=1, ending=".nii.gz"):
    root = tmp_path / "Dataset001_Test"
    meta = {
        "channel_names": {str(c): f"mod{c}" for c in range(channels)},
        "labels": {"background": 0, "liver": 1, "spleen": 2},
        "numTraining": 2,
        "file_ending": ending,
        "morse": {"subjects": {"c1": "P1", "c2": "P1", "t1": "P2"}},
    }
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps(meta))
    for name, split in (("c1", "Tr"), ("c2", "Tr"), ("t1", "Ts"), ("t2", "Ts")):
        image, label = _volume(sum(map(ord, name)))
        for c in range(channels):
            _write(root / f"images{split}" / f"{name}_{c:04d}{ending}", image + c)
        if name != "t2":
            _write(root / f"labels{split}" / f"{name}{ending}", label)
    return root


def test_nnunet_v2_folder(tmp_path):
    root = _nnunet(tmp_path)
    cases = read_nnunet(root)
    assert [(c.name, c.split, c.subject, c.label is not None) for c in cases] == [
        ("c1", "train", "P1", True),
        ("c2", "train", "P1", True),
        ("t1", "test", "P2", True),
        ("t2", "test", "t2", False),
    ]
    assert dataset_format(root) == "nnunet"
    assert dataset_labels(root) == {"background": 0, "liver": 1, "spleen": 2}
    assert [c.name for c in select_split(cases, "test")] == ["t1", "t2"]
    assert [c.name for c in select_split(cases, "t2,c1")] == ["t2", "c1"]
    with pytest.raises(DataError, match="no case named zz"):
        select_split(cases, "zz")

    image, label, m = load_case(cases[0])
    ref_img, ref_lab = _volume(sum(map(ord, "c1")))
    assert image.dtype == np.float32 and image.shape == (6, 7, 8)
    assert np.array_equal(image, ref_img.astype(np.float32)) and np.array_equal(label, ref_lab)
    # LPS origin/spacing → Slicer IJK→RAS: x and y flip sign.
    expected = np.array([[-0.8, 0, 0, -10.0], [0, -0.9, 0, 20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    assert np.allclose(m, expected)


def test_nnunet_multichannel_and_nrrd(tmp_path):
    cases = read_nnunet(_nnunet(tmp_path, channels=2, ending=".nrrd"))
    assert len(cases[0].images) == 2 and cases[0].images[1].name == "c1_0001.nrrd"
    image, _, _ = load_case(cases[0])
    assert image.shape == (2, 6, 7, 8)
    assert np.array_equal(image[1] - image[0], np.ones((6, 7, 8), np.float32))


def test_nnunet_errors(tmp_path):
    root = _nnunet(tmp_path)
    (root / "labelsTr" / "c2.nii.gz").unlink()
    with pytest.raises(DataError, match=r"training case c2 has no label labelsTr/c2.nii.gz"):
        read_nnunet(root)
    (root / "dataset.json").unlink()
    with pytest.raises(DataError, match=r"has no dataset\.json"):
        read_nnunet(root)
    with pytest.raises(DataError, match=r"has imagesTr/ but no dataset\.json"):
        dataset_format(root)
    with pytest.raises(DataError, match="does not exist"):
        read_nnunet(tmp_path / "missing")


def test_label_on_another_grid_is_refused(tmp_path):
    image, label = _volume(1)
    img = _write(tmp_path / "img.nii.gz", image)
    lab = _write(tmp_path / "lab.nii.gz", label, origin=(10.0, -20.0, 32.5))  # one slice off
    with pytest.raises(DataError, match=r"(?s)label lab.nii.gz is not on the image grid.*Resample the label"):
        load_case(Case("x", (img,), lab))
    small = _write(tmp_path / "small.nii.gz", label[:, :, :5])
    with pytest.raises(DataError, match="not on the image grid"):
        load_case(Case("x", (img,), small))


def test_bad_label_values_are_refused(tmp_path):
    image, _ = _volume(2)
    img = _write(tmp_path / "img.nii.gz", image)
    frac = _write(tmp_path / "frac.nii.gz", np.full(image.shape, 0.5, np.float32))
    with pytest.raises(DataError, match="non-integer values"):
        load_case(Case("x", (img,), frac))
    big = _write(tmp_path / "big.nii.gz", np.full(image.shape, 300, np.int16))
    with pytest.raises(DataError, match=r"values in \[300, 300\]"):
        load_case(Case("x", (img,), big))
    ok = _write(tmp_path / "ok.nii.gz", np.full(image.shape, 7.0, np.float32))
    assert load_case(Case("x", (img,), ok))[1].max() == 7


def test_msd_training_list(tmp_path):
    root = tmp_path / "Task09_Spleen"
    image, label = _volume(3)
    _write(root / "imagesTr" / "spleen_2.nii.gz", image)
    _write(root / "labelsTr" / "spleen_2.nii.gz", label)
    _write(root / "imagesTs" / "spleen_1.nii.gz", image)
    meta = {
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "spleen"},
        "training": [{"image": "./imagesTr/spleen_2.nii.gz", "label": "./labelsTr/spleen_2.nii.gz"}],
        "test": ["./imagesTs/spleen_1.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    cases = read_nnunet(root)
    assert [(c.name, c.split, c.label is not None) for c in cases] == [("spleen_2", "train", True),
                                                                       ("spleen_1", "test", False)]  # fmt: skip
    assert dataset_labels(root) == {"background": 0, "spleen": 1}
    assert np.array_equal(load_case(cases[0])[1], label)


def _synapse(tmp_path, with_lists=True):
    root = tmp_path / "Synapse"
    (root / "train_npz").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for case in ("case0005", "case0006"):
        for s in range(3):
            np.savez(root / "train_npz" / f"{case}_slice{s:03d}.npz",
                     image=rng.random((16, 16)).astype(np.float32),
                     label=rng.integers(0, 9, (16, 16)).astype(np.float32))  # fmt: skip
    import h5py

    (root / "test_vol_h5").mkdir()
    for case in ("case0001", "case0002"):
        with h5py.File(root / "test_vol_h5" / f"{case}.npy.h5", "w") as f:
            f["image"] = rng.random((4, 16, 16)).astype(np.float32)
            f["label"] = rng.integers(0, 9, (4, 16, 16)).astype(np.float32)
    if with_lists:
        lists = root / "lists" / "lists_Synapse"
        lists.mkdir(parents=True)
        (lists / "train.txt").write_text("case0006_slice001\ncase0005_slice002\n")
        (lists / "test_vol.txt").write_text("case0002\n")
    return root


def test_synapse_layout_with_lists(tmp_path):
    root = _synapse(tmp_path)
    cases = read_synapse(root)
    assert [(c.name, c.subject, c.split, c.format) for c in cases] == [
        ("case0006_slice001", "case0006", "train", "synapse_npz"),
        ("case0005_slice002", "case0005", "train", "synapse_npz"),
        ("case0002", "case0002", "test", "synapse_h5"),
    ]
    image, label, m = load_case(cases[0])
    assert image.shape == (1, 16, 16) and label.dtype == np.uint8 and label.max() <= 8
    vol, vlab, _ = load_case(cases[2])
    assert vol.shape == (4, 16, 16) and vlab.shape == (4, 16, 16)
    assert np.allclose(m, np.diag([-1.0, -1.0, 1.0, 1.0]))
    assert dataset_format(root) == "synapse"


def test_synapse_layout_without_lists_and_errors(tmp_path):
    root = _synapse(tmp_path, with_lists=False)
    cases = read_synapse(root)
    assert len(cases) == 8 and sum(c.split == "test" for c in cases) == 2
    lists = root / "lists"
    lists.mkdir()
    (lists / "test_vol.txt").write_text("case0001\ncase0099\n")
    with pytest.raises(DataError, match=r"lists 1 case\(s\) with no file in .*test_vol_h5: case0099"):
        read_synapse(root)
    with pytest.raises(DataError, match="neither train_npz/ nor test_vol_h5/"):
        read_synapse(tmp_path / "empty")


def test_synapse_npz_without_label_key(tmp_path):
    (tmp_path / "train_npz").mkdir()
    np.savez(tmp_path / "train_npz" / "case1_slice000.npz", image=np.zeros((4, 4)))
    with pytest.raises(DataError, match="lacks the 'image'/'label' arrays"):
        load_case(read_synapse(tmp_path)[0])


def test_filelist_csv_with_header_and_text(tmp_path):
    image, label = _volume(4)
    _write(tmp_path / "a" / "image.nii.gz", image)
    _write(tmp_path / "a" / "label.nii.gz", label)
    _write(tmp_path / "b" / "image.nii.gz", image)
    _write(tmp_path / "c.mha", image)
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("image,label,subject,split\na/image.nii.gz,a/label.nii.gz,P7,train\nb/image.nii.gz,,P8,test\n")
    cases = read_filelist(csv_path)
    # Same file names in two folders: the parent folder disambiguates.
    assert [(c.name, c.subject, c.split, c.label is not None) for c in cases] == [
        ("a_image", "P7", "train", True),
        ("b_image", "P8", "test", False),
    ]
    assert np.array_equal(load_case(cases[0])[1], label)
    assert dataset_format(csv_path) == "filelist" and read_dataset(csv_path)[0].name == "a_image"

    txt = tmp_path / "list.txt"
    txt.write_text("# comment\n\nc.mha\na/image.nii.gz a/label.nii.gz\n")
    cases = read_filelist(txt)
    assert [(c.name, c.split, c.label is not None) for c in cases] == [("c", None, False), ("image", None, True)]
    assert [c.name for c in select_split(cases, "test")] == ["c", "image"]  # no split column: in every split

    bad = tmp_path / "bad.txt"
    bad.write_text("c.mha\nmissing.nii.gz\n")
    with pytest.raises(DataError, match=r"bad.txt:2: image .*missing.nii.gz does not exist"):
        read_filelist(bad)


def test_filelist_with_dicom_folder(tmp_path):
    """A DICOM series folder in a file list is read as one volume (series written here with SimpleITK)."""
    image = (np.arange(3 * 8 * 8).reshape(3, 8, 8) % 50).astype(np.int16)
    series = tmp_path / "dicom"
    series.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    # GDCM's writer switches the process to the "C" locale (ASCII text I/O) and does not switch back.
    saved_locale = locale.setlocale(locale.LC_ALL)
    for k in range(3):
        sl = sitk.GetImageFromArray(image[k])
        sl.SetSpacing((0.7, 0.7))
        for key, value in {
            "0008|0060": "CT",
            "0020|000d": "1.2.3.4",
            "0020|000e": "1.2.3.4.5",
            "0020|0032": f"0\\0\\{2.0 * k}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k + 1),
            "0018|0050": "2.0",
            "0028|0030": "0.7\\0.7",
        }.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(series / f"s{k}.dcm"))
        try:
            writer.Execute(sl)
        finally:
            locale.setlocale(locale.LC_ALL, saved_locale)
    lst = tmp_path / "list.csv"
    lst.write_text("dicom\n")
    cases = read_filelist(lst)
    vol, lab, m = load_case(cases[0])
    assert cases[0].name == "dicom" and lab is None
    assert vol.shape == (3, 8, 8) and np.array_equal(vol, image.astype(np.float32))
    assert np.allclose(np.diag(m)[:3], (-0.7, -0.7, 2.0))


def test_synapse8_table():
    assert [(i.value, i.name) for i in synapse8.SYNAPSE8] == list(enumerate(synapse8.ORGANS, start=1))
    assert synapse8.ORGANS == ("aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas", "spleen",
                               "stomach")  # fmt: skip
    codes = {i.name: i.type for i in synapse8.SYNAPSE8}
    sides = {i.name: i.modifier for i in synapse8.SYNAPSE8}
    # as 3D Slicer's anatomy list codes them: "Kidney" with a laterality modifier
    assert codes["kidney_left"] == codes["kidney_right"] == ("SCT", "64033007", "Kidney")
    assert sides["kidney_left"] == ("SCT", "7771000", "Left") and sides["kidney_right"] == ("SCT", "24028007", "Right")
    assert sides["liver"] is None
    assert codes["liver"] == ("SCT", "10200004", "Liver") and codes["spleen"] == ("SCT", "78961009", "Spleen")
    assert all(i.category == ("SCT", "123037004", "Anatomical Structure") for i in synapse8.SYNAPSE8)
    assert all(0.0 <= c <= 1.0 for i in synapse8.SYNAPSE8 for c in i.color)
    assert synapse8.SYNAPSE8[4].color == (round(221 / 255, 4), round(130 / 255, 4), round(101 / 255, 4))


def test_to_synapse8_relabels_totalsegmentator_ids():
    ts = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 52, 63]])
    ids = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6,
           "pancreas": 7, "aorta": 52}  # fmt: skip
    out = synapse8.to_synapse8(ts, ids)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 7, 4, 3, 2], [5, 8, 6, 1, 0]]  # IVC (63) is not a Synapse organ → 0
    with pytest.raises(ValueError, match="not Synapse-8 organs"):
        synapse8.to_synapse8(ts, {"heart": 51})
