"""First-use installation of MORSE's Python dependencies inside Slicer, after the user agrees.

Rules (from Slicer's developer guide and from what goes wrong in other AI extensions):

- Nothing is installed at import or startup: :meth:`DependencyInstaller.ensure` runs when the user clicks Apply
  (or calls ``logic.process`` from the console), and only after a confirmation that lists what will be installed.
- PyTorch comes from the PyTorch extension (``PyTorchUtils``), which picks the build that matches the GPU driver.
  Installing ``torch`` from PyPI instead is the classic way to end up with a CPU-only or wrong-CUDA build, so MORSE
  never does that: without the PyTorch extension it stops and says how to get it.
- The installed torch is never replaced. pip gets a constraints file pinning the torch that is there
  (``torch==2.5.1+cu121``), so it picks a MONAI release that works with it (MONAI 1.6 needs torch 2.8, 1.5.2 takes
  2.4.1) instead of upgrading torch to a PyPI build that may not match the GPU driver. Slicer 5.11+ installs through
  ``slicer.packaging.pip_ensure`` (constraints and ``skip_packages=["torch"]``), older ones through
  ``slicer.util.pip_install([..., "-c", constraints])``: one pip command either way (:func:`pipArguments`).
- numpy, scipy and SimpleITK ship with Slicer (5.8+) and are not touched; :data:`REQUIREMENTS` is everything else the
  inference worker imports (a test installs exactly these into a venv holding only Slicer's bundle and runs it).

Everything that talks to Slicer is injectable, so tests run the real flow with fakes (and check that nothing is
installed when the user says no).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from morse.errors import MorseError

log = logging.getLogger(__name__)


class DependencyError(MorseError):
    """A dependency is missing and was not installed (declined, failed, or needs the PyTorch extension)."""


class RestartRequiredError(DependencyError):
    """Packages were updated that this Slicer session had already imported: restart Slicer to use them."""


@dataclass(frozen=True)
class Requirement:
    """A Python package MORSE needs. ``specifier`` uses pip syntax (``>=1.5,<1.7``)."""

    importName: str
    distribution: str
    specifier: str = ""
    viaPyTorch: bool = False
    purpose: str = ""

    @property
    def pipRequirement(self) -> str:
        return f"{self.distribution}{self.specifier}"


# Kept in step with pyproject.toml's runtime dependencies that inference needs.
REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("torch", "torch", ">=2.4.1", viaPyTorch=True, purpose="neural network inference"),
    Requirement("monai", "monai", ">=1.5,<1.7", purpose="network building blocks"),
    Requirement("safetensors", "safetensors", ">=0.4", purpose="reading model weights safely (no pickle)"),
)


def installedVersion(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def isSatisfied(requirement: Requirement) -> bool:
    """Importable, and (when ``packaging`` is there to compare) of a version that meets the specifier."""
    if importlib.util.find_spec(requirement.importName) is None:
        return False
    version = installedVersion(requirement.distribution)
    if not requirement.specifier or version is None:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
    except ImportError:
        return True
    return SpecifierSet(requirement.specifier).contains(Version(version), prereleases=True)


def _slicerConfirm(message: str, details: str) -> bool:
    import slicer

    return bool(slicer.util.confirmOkCancelDisplay(message, "MORSE: install Python packages", detailedText=details))


def _pyTorchUtilsInstall(versionRequirement: str):
    """Install torch through the PyTorch extension; None if the user declined in its dialog."""
    import slicer

    if not hasattr(slicer.modules, "pytorchutils"):
        raise DependencyError(
            "MORSE needs PyTorch, which the 'PyTorch' extension installs (it picks the build that matches your GPU). "
            "Install 'PyTorch' from the Extensions Manager, restart Slicer, and click Apply again."
        )
    import PyTorchUtils

    # PyTorchUtils shows its own confirmation naming the exact build it chose for this computer's GPU driver.
    return PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=True, torchVersionRequirement=versionRequirement
    )


def keptPins(keep: list[str]) -> list[str]:
    """``name==version`` of each installed distribution in ``keep`` (those pip must leave as they are)."""
    pins = []
    for distribution in keep:
        version = installedVersion(distribution)
        if version is not None:
            pins.append(f"{distribution}=={version}")
    return pins


def writeConstraints(keep: list[str], folder: str | Path | None = None) -> Path | None:
    """A pip constraints file pinning the installed ``keep`` distributions, or None when none is installed."""
    pins = keptPins(keep)
    if not pins:
        return None
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="morse-pip-"))
    path = folder / "constraints.txt"
    path.write_text("".join(pin + "\n" for pin in pins), encoding="utf-8")
    return path


def pipArguments(requirements: list[str], constraints: Path | None) -> list[str]:
    """What follows ``pip install``: the requirements, and ``-c constraints`` when there is a file."""
    return [*requirements, *(["-c", str(constraints)] if constraints is not None else [])]


def _slicerPipInstall(requirements: list[str], keep: list[str]) -> None:
    import slicer

    constraints = writeConstraints(keep)
    packaging = getattr(slicer, "packaging", None)
    pipEnsure = getattr(packaging, "pip_ensure", None) if packaging is not None else None
    if pipEnsure is not None:
        from packaging.requirements import Requirement as PipRequirement

        pipEnsure(
            [PipRequirement(r) for r in requirements],
            constraints=constraints,
            skip_packages=keep or None,
            prompt_install=False,  # MORSE already asked, listing these packages
            requester="MORSE",
        )
    else:
        slicer.util.pip_install(pipArguments(requirements, constraints))


def localPipInstall(requirements: list[str], keep: list[str]) -> None:
    """The same pip command, run by this interpreter (outside Slicer: scripts and the environment test)."""
    import subprocess

    constraints = writeConstraints(keep)
    subprocess.run([sys.executable, "-m", "pip", "install", *pipArguments(requirements, constraints)], check=True)


class DependencyInstaller:
    """Check and (after confirmation) install :data:`REQUIREMENTS`.

    Injected callables (defaults talk to Slicer):

    - ``confirm(message, details) -> bool``: ask the user.
    - ``installTorch(versionRequirement) -> module | None``: None when declined there.
    - ``pipInstall(requirements: list[str], keep: list[str])``: install pip requirements, leaving the installed
      ``keep`` distributions (torch) exactly as they are.
    - ``isSatisfied(requirement) -> bool``.
    - ``isImported(importName) -> bool``: already loaded in this session (then a restart is needed after updating).
    """

    def __init__(
        self,
        requirements: tuple[Requirement, ...] = REQUIREMENTS,
        confirm: Callable[[str, str], bool] | None = None,
        installTorch: Callable[[str], object] | None = None,
        pipInstall: Callable[[list[str], list[str]], None] | None = None,
        isSatisfied: Callable[[Requirement], bool] = isSatisfied,
        isImported: Callable[[str], bool] = lambda name: name in sys.modules,
    ):
        self.requirements = requirements
        self.confirm = confirm or _slicerConfirm
        self.installTorch = installTorch or _pyTorchUtilsInstall
        self.pipInstall = pipInstall or _slicerPipInstall
        self.isSatisfied = isSatisfied
        self.isImported = isImported

    def missing(self) -> list[Requirement]:
        return [r for r in self.requirements if not self.isSatisfied(r)]

    def describeMissing(self, missing: list[Requirement]) -> str:
        lines = []
        for r in missing:
            have = installedVersion(r.distribution)
            state = f"installed {have}, needs {r.specifier}" if have else "not installed"
            how = "by the PyTorch extension" if r.viaPyTorch else "with pip"
            lines.append(f"• {r.pipRequirement} ({r.purpose}; {state}; {how})")
        return "\n".join(lines)

    def ensure(self, askConfirmation: bool = True) -> list[Requirement]:
        """Make every requirement available; return what was installed (empty when nothing was missing).

        Raises :class:`DependencyError` when the user declines (nothing is installed then) or an installation
        fails, and :class:`RestartRequiredError` when an already-imported package was replaced.
        """
        missing = self.missing()
        if not missing:
            return []
        details = self.describeMissing(missing)
        if askConfirmation:
            message = (
                f"MORSE needs {len(missing)} Python package(s) that are not installed yet. Install them now? "
                "This downloads several hundred MB (PyTorch is the largest) and can take a few minutes."
            )
            if not self.confirm(message, details):
                raise DependencyError(
                    "MORSE cannot run without these Python packages; nothing was installed. Click Apply again to "
                    f"install them, or install them from the Python console:\n{details}"
                )
        importedBefore = {r.importName for r in missing if self.isImported(r.importName)}
        torchReqs = [r for r in missing if r.viaPyTorch]
        pipReqs = [r for r in missing if not r.viaPyTorch]
        for r in torchReqs:  # first, so that pip never resolves torch itself
            log.info("Installing %s through the PyTorch extension", r.pipRequirement)
            if self.installTorch(r.specifier) is None:
                raise DependencyError("PyTorch was not installed (declined in the PyTorch extension's dialog).")
        if pipReqs:
            log.info("Installing %s", ", ".join(r.pipRequirement for r in pipReqs))
            try:
                self.pipInstall([r.pipRequirement for r in pipReqs], ["torch"])
            except Exception as exc:
                raise DependencyError(
                    f"Installing {', '.join(r.pipRequirement for r in pipReqs)} failed: {exc}. Check the network "
                    "connection (or proxy settings) and try again; the Python console shows pip's full output."
                ) from exc
        stillMissing = self.missing()
        if stillMissing:
            raise DependencyError(
                "These packages are still not usable after installation:\n"
                + self.describeMissing(stillMissing)
                + "\nRestart Slicer and try again."
            )
        if importedBefore:
            raise RestartRequiredError(
                f"Updated {', '.join(sorted(importedBefore))}, which this Slicer session had already loaded. "
                "Restart Slicer to use the new version(s), then click Apply again."
            )
        return missing
