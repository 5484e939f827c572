"""The real registry sample data: checksums, idempotence, case geometry, Synapse-8 reference labels, datasets.

Needs the data fetched (``morse fetch-data``, done by ``make test``); skips only if the registry is unreachable.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from morse.data import cases, convert, datasets, fetch_command, readers, synapse8
from morse.data.fetch import MARKER, fetch, is_fetched, source_dir
from morse.data.sources import REQUIRED_SOURCES, SOURCES
from morse.errors import DataError

pytestmark = pytest.mark.usefixtures("registry_root")

# Voxels per organ of the Synapse-8 references (3 mm CT: example_seg_fast_force_split; DICOM: example_seg_dicom).
COUNTS_A = {"aorta": 1839, "gallbladder": 1319, "kidney_left": 5090, "kidney_right": 7134, "liver": 41692,
            "pancreas": 695, "spleen": 9668, "stomach": 4836}  # fmt: skip
COUNTS_A_SMALL = {"aorta": 997, "gallbladder": 1333, "kidney_left": 3676, "kidney_right": 3947, "liver": 38634,
                  "pancreas": 644, "spleen": 9452, "stomach": 4675}  # fmt: skip
COUNTS_B = {"aorta": 672, "gallbladder": 1121, "kidney_left": 1442, "kidney_right": 1721, "liver": 18480,
            "pancreas": 1176, "spleen": 1941, "stomach": 4221}  # fmt: skip
COUNTS_C = {"aorta": 11723, "gallbladder": 0, "kidney_left": 0, "kidney_right": 0, "liver": 366708,
            "pancreas": 1327, "spleen": 130634, "stomach": 74102}  # fmt: skip


def _counts(label: np.ndarray) -> dict[str, int]:
    c = np.bincount(label.ravel(), minlength=9)
    return {o: int(c[v]) for o, v in synapse8.VALUES.items()}


def _load(name: str):
    return readers.load_case(readers.Case(name, (cases.case_path(name),), cases.case_label_path(name)))


def test_required_sources_are_verified(registry_root):
    for name in REQUIRED_SOURCES:
        marker = json.loads((source_dir(name, registry_root) / MARKER).read_text())
        assert marker["sha256"] == SOURCES[name].sha256
        assert is_fetched(name, registry_root)
    # Only data members were extracted: no package code besides the (parsed, never imported) id table.
    ts = source_dir("totalsegmentator", registry_root)
    assert sorted(p.name for p in ts.iterdir()) == sorted([MARKER, "LICENSE", "tests", "totalsegmentator"])
    assert [p.name for p in (ts / "totalsegmentator").iterdir()] == ["map_to_binary.py"]


def test_second_fetch_is_a_no_op(registry_root):
    markers = {n: (source_dir(n, registry_root) / MARKER) for n in REQUIRED_SOURCES}
    before = {n: m.stat().st_mtime_ns for n, m in markers.items()}
    fetch()
    assert {n: m.stat().st_mtime_ns for n, m in markers.items()} == before


def test_totalsegmentator_ids_come_from_the_sdist():
    assert cases.totalsegmentator_ids("total") == {
        "aorta": 52, "gallbladder": 4, "kidney_left": 3, "kidney_right": 2, "liver": 5, "pancreas": 7, "spleen": 1,
        "stomach": 6,
    }  # fmt: skip
    assert cases.totalsegmentator_ids("total_mr") == {**cases.totalsegmentator_ids("total"), "aorta": 23}


def test_documented_geometry_of_every_case():
    for case in cases.list_cases():
        img = readers.read_image(cases.case_path(case.name))
        if case.size_ijk is not None:
            assert img.GetSize() == case.size_ijk, case.name
            assert np.allclose(img.GetSpacing(), case.spacing_mm, atol=1e-4), case.name
    a = readers.read_image(cases.case_path("abdomen-ct"))
    assert a.GetSize() == (122, 101, 112) and a.GetSpacing() == (3.0, 3.0, 3.0)
    c = readers.read_image(cases.case_path("abdomen-ct-dicom"))
    assert c.GetSize() == (512, 512, 20)
    assert np.allclose(c.GetSpacing(), (0.9765625, 0.9765625, 2.0))


def test_subjects_make_the_crop_the_same_patient():
    by_name = {c.name: c for c in cases.list_cases()}
    assert by_name["abdomen-ct"].subject == by_name["abdomen-ct-small"].subject == "A"
    assert by_name["abdomen-mr-small"].subject == "B"
    assert by_name["abdomen-ct-dicom"].subject == "C"
    assert by_name["cta-chest-abdomen"].subject == "D"
    # The crop really is the same patient: its voxels are slices 82..111 of the full volume.
    full, _, m_full = _load("abdomen-ct")
    small, _, m_small = _load("abdomen-ct-small")
    assert full.shape == (112, 101, 122) and small.shape == (30, 101, 122)
    assert np.array_equal(full[82:112], small)
    assert np.allclose(m_full, m_small)


def test_dicom_case_reference_label():
    image, label, ijk_to_ras = _load("abdomen-ct-dicom")
    assert image.shape == (20, 512, 512) and label.shape == image.shape and label.dtype == np.uint8
    assert _counts(label) == COUNTS_C
    # Alignment with the anatomy (the stored label is y-flipped relative to the DICOM read): liver parenchyma
    # ~89 HU and contrast-filled aorta > 150 HU here, while the flipped label would put the "liver" at -75 HU.
    assert 70 < image[label == 5].mean() < 110
    assert image[label == 1].mean() > 150
    assert image[label[:, ::-1, :] == 5].mean() < 0
    # Label and image grids are identical (not merely close).
    lab_img = sitk.ReadImage(str(cases.case_label_path("abdomen-ct-dicom")))
    dcm = readers.read_image(cases.case_path("abdomen-ct-dicom"))
    assert readers.same_grid(lab_img, dcm, atol_mm=1e-6)
    assert np.allclose(ijk_to_ras[:3, :3], np.diag([-0.9765625, -0.9765625, 2.0]))


def test_nifti_case_reference_labels():
    for name, expected in (("abdomen-ct", COUNTS_A), ("abdomen-ct-small", COUNTS_A_SMALL),
                           ("abdomen-mr-small", COUNTS_B)):  # fmt: skip
        _, label, _ = _load(name)
        assert _counts(label) == expected, name
        assert set(np.unique(label).tolist()) == set(range(9)), name
    # Cases without a Synapse-8 reference say so.
    for name in ("cta-chest-abdomen", "chest-ct", "lung-ct"):
        assert cases.case_label_path(name) is None
        assert cases.case_path(name).is_file()


def test_label_is_cached_after_the_first_call():
    path = cases.case_label_path("abdomen-ct-dicom")
    stamp = path.stat().st_mtime_ns
    assert cases.case_label_path("abdomen-ct-dicom", fetch=False) == path
    assert path.stat().st_mtime_ns == stamp


def test_unknown_case_name():
    with pytest.raises(DataError, match="unknown sample case 'liver'; known cases: abdomen-ct-dicom"):
        cases.case_path("liver")


def test_fetch_data_path_prints_only_the_path(capsys):
    args = type("A", (), {"names": [], "path": "abdomen-ct-dicom", "list": False})()
    assert fetch_command.run(args) == 0
    out = capsys.readouterr().out
    assert out == f"{cases.case_path('abdomen-ct-dicom')}\n"
    args = type("A", (), {"names": [], "path": None, "list": True})()
    assert fetch_command.run(args) == 0
    listing = capsys.readouterr().out
    for name in ("totalsegmentator", "mricron-data", "abdomen-ct-dicom", "lung-ct", "abdomen-ct-synapse8"):
        assert name in listing


def test_registry_ct_dataset_passes_the_nnunet_reader():
    folder = convert.resolve_dataset("registry:abdomen-ct-synapse8")
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "aorta": 1, "gallbladder": 2, "kidney_left": 3, "kidney_right": 4,
                              "liver": 5, "pancreas": 6, "spleen": 7, "stomach": 8}  # fmt: skip
    assert meta["numTraining"] == 1 and meta["file_ending"] == ".nii.gz"
    assert meta["morse"]["subjects"] == {"abdomen-ct": "A", "abdomen-ct-dicom": "C"}
    assert meta["morse"]["organs_present"]["abdomen-ct-dicom"] == ["aorta", "liver", "pancreas", "spleen", "stomach"]
    assert meta["morse"]["provenance"]["sources_sha256"] == {"totalsegmentator": SOURCES["totalsegmentator"].sha256}

    found = readers.read_nnunet(folder)
    assert [(c.name, c.subject, c.split) for c in found] == [("abdomen-ct", "A", "train"),
                                                             ("abdomen-ct-dicom", "C", "test")]  # fmt: skip
    train = {c.subject for c in readers.select_split(found, "train")}
    test = {c.subject for c in readers.select_split(found, "test")}
    assert not train & test
    image, label, m = readers.load_case(found[1])
    assert image.shape == (20, 512, 512) and _counts(label) == COUNTS_C
    # The NIfTI copy of the DICOM series keeps the HU values and the grid of the DICOM read.
    dicom, _, m_dicom = _load("abdomen-ct-dicom")
    assert np.array_equal(image, dicom) and np.allclose(m, m_dicom, atol=1e-4)
    image_a, label_a, _ = readers.load_case(found[0])
    assert image_a.shape == (112, 101, 122) and _counts(label_a) == COUNTS_A


def test_registry_dataset_is_built_once():
    folder = convert.build_registry_dataset("abdomen-ct-synapse8")
    stamp = (folder / "dataset.json").stat().st_mtime_ns
    assert convert.build_registry_dataset("abdomen-ct-synapse8") == folder
    assert (folder / "dataset.json").stat().st_mtime_ns == stamp


def test_registry_mr_dataset():
    found = datasets.read_dataset("registry:abdomen-mr-synapse8")
    assert [(c.name, c.subject, c.split) for c in found] == [("abdomen-mr-small", "B", "train")]
    _, label, m = readers.load_case(found[0])
    assert _counts(label) == COUNTS_B
    # example_mr_sm is stored LPS: i runs to patient left, so the RAS x column is negative.
    assert np.allclose(m[:3, :3], np.diag([-3.0, -3.0, 3.0]))


def test_unknown_registry_dataset():
    with pytest.raises(DataError, match="unknown registry dataset 'nope'; known: abdomen-ct-synapse8"):
        convert.resolve_dataset("registry:nope")
    with pytest.raises(DataError, match="does not exist"):
        convert.resolve_dataset("/no/such/dataset/folder")
