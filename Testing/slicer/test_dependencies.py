"""First-use dependency installation, run for real with fake installers: it asks first, installs nothing on "no",
installs torch through the PyTorch extension before anything from pip, and never at import time."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import slicer
import slicerSyntheticVolumes as syntheticVolumes
from morse.errors import InputError
from MORSESegmentationLib import dependencies
from MORSESegmentationLib.dependencies import DependencyError, DependencyInstaller, Requirement, RestartRequiredError
from MORSESegmentationLib.logic import RunOptions
from MORSESegmentationLib.volumeArrays import addVolumeFromArray
from slicerFakes import Recorder

from MORSESegmentation import MORSESegmentationLogic

HERE = Path(__file__).resolve().parent


def test_nothing_missing_asks_nothing():
    fake = Recorder(missing=[])
    assert fake.installer().ensure() == []
    assert fake.calls == []


def test_declining_installs_nothing_and_says_how_to_install():
    fake = Recorder(missing=["torch", "monai"], answer=False)
    with pytest.raises(DependencyError) as caught:
        fake.installer().ensure()
    assert [c[0] for c in fake.calls] == ["confirm"]  # asked, then nothing else
    assert "nothing was installed" in str(caught.value)
    assert "torch>=2.4.1" in str(caught.value) and "monai>=1.5,<1.7" in str(caught.value)
    assert "torch>=2.4.1" in fake.calls[0][2] and "PyTorch extension" in fake.calls[0][2]


def test_accepting_installs_torch_first_through_pytorch_then_the_rest_with_pip_skipping_torch():
    fake = Recorder(missing=["torch", "monai", "safetensors"])
    installed = fake.installer().ensure()
    assert [c[0] for c in fake.calls] == ["confirm", "torch", "pip"]
    assert fake.calls[1] == ("torch", ">=2.4.1")
    assert fake.calls[2] == ("pip", ["monai>=1.5,<1.7", "safetensors>=0.4"], ["torch"])
    assert [r.distribution for r in installed] == ["torch", "monai", "safetensors"]
    assert fake.installer().missing() == []


def test_without_confirmation_when_asked_not_to():
    fake = Recorder(missing=["safetensors"])
    fake.installer().ensure(askConfirmation=False)
    assert [c[0] for c in fake.calls] == ["pip"]


def test_declined_in_the_pytorch_dialog_stops_before_pip():
    fake = Recorder(missing=["torch", "monai"], torchAnswer=False)
    with pytest.raises(DependencyError, match="PyTorch was not installed"):
        fake.installer().ensure()
    assert [c[0] for c in fake.calls] == ["confirm", "torch"]


def test_pip_failure_is_reported_with_what_to_do():
    fake = Recorder(missing=["monai"], pipFails=True)
    with pytest.raises(DependencyError, match="network connection"):
        fake.installer().ensure()


def test_still_missing_after_install_is_an_error():
    fake = Recorder(missing=["monai"])
    fake.pipInstall = lambda requirements, skip: None  # "succeeds" but installs nothing
    with pytest.raises(DependencyError, match="still not usable"):
        fake.installer().ensure()


def test_updating_an_imported_package_asks_for_a_restart():
    fake = Recorder(missing=["numpy"], imported=["numpy"])
    installer = fake.installer()
    installer.requirements = (Requirement("numpy", "numpy", ">=1"),)
    with pytest.raises(RestartRequiredError, match="Restart Slicer"):
        installer.ensure()


def test_real_version_checks():
    assert dependencies.isSatisfied(Requirement("torch", "torch", ">=2.4.1"))
    assert dependencies.isSatisfied(Requirement("numpy", "numpy"))
    assert not dependencies.isSatisfied(Requirement("numpy", "numpy", ">=999"))
    assert not dependencies.isSatisfied(Requirement("morse_no_such_package", "morse-no-such-package"))
    assert DependencyInstaller().missing() == []  # this test environment has everything


def test_pytorch_extension_missing_is_explained(monkeypatch):
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(segmentations=slicer.modules.segmentations))
    with pytest.raises(DependencyError, match="Extensions Manager"):
        dependencies._pyTorchUtilsInstall(">=2.4.1")


def test_pytorch_utils_is_called_with_its_own_confirmation(monkeypatch):
    calls = []

    class FakePyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
            calls.append((askConfirmation, torchVersionRequirement))
            return "torch-module"

    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(pytorchutils=object()))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=FakePyTorchUtilsLogic))
    assert dependencies._pyTorchUtilsInstall(">=2.4.1") == "torch-module"
    assert calls == [(True, ">=2.4.1")]


def test_pip_uses_pip_ensure_when_slicer_has_it_with_torch_pinned(monkeypatch):
    calls = []

    def pip_ensure(
        requirements,
        constraints=None,
        skip_packages=None,
        prompt_install=True,
        prompt_restart=True,
        requester=None,
        skip_in_testing=True,
        show_progress=True,
    ):
        text = Path(constraints).read_text() if constraints else ""
        calls.append(([str(r) for r in requirements], text, skip_packages, prompt_install, requester))

    monkeypatch.setattr(slicer, "packaging", types.SimpleNamespace(pip_ensure=pip_ensure), raising=False)
    dependencies._slicerPipInstall(["monai>=1.5,<1.7"], ["torch"])
    torchVersion = importlib.metadata.version("torch")
    assert calls == [(["monai<1.7,>=1.5"], f"torch=={torchVersion}\n", ["torch"], False, "MORSE")]


def test_pip_install_on_older_slicer_gets_a_constraint_that_keeps_torch(monkeypatch):
    """Slicer 5.8-5.10: pip_install has no skip list; the constraints file is what keeps pip off torch."""
    calls = []
    monkeypatch.delattr(slicer, "packaging", raising=False)
    monkeypatch.setattr(slicer.util, "pip_install", lambda requirements: calls.append(requirements))
    dependencies._slicerPipInstall(["monai>=1.5,<1.7", "safetensors>=0.4"], ["torch"])
    [arguments] = calls
    assert arguments[:2] == ["monai>=1.5,<1.7", "safetensors>=0.4"] and arguments[2] == "-c"
    assert not any(a.split("=")[0].split(">")[0] == "torch" for a in arguments[:2])  # torch is never requested
    assert Path(arguments[3]).read_text().splitlines() == [f"torch=={importlib.metadata.version('torch')}"]


def test_constraints_pin_only_what_is_installed(tmp_path):
    pins = dependencies.keptPins(["torch", "morse-no-such-package"])
    assert pins == [f"torch=={importlib.metadata.version('torch')}"]
    assert dependencies.writeConstraints(["morse-no-such-package"], tmp_path) is None
    assert dependencies.pipArguments(["a"], None) == ["a"]


def test_installer_keeps_torch_even_when_it_installed_it_first():
    fake = Recorder(missing=["torch", "monai"], answer=True)
    fake.installer().ensure()
    pipCall = next(c for c in fake.calls if c[0] == "pip")
    assert pipCall[2] == ["torch"]


def test_process_checks_dependencies_before_touching_anything(tinyPack):
    volume, ijkToRas, _, _ = syntheticVolumes.brightObjectVolume(shape=(8, 32, 32))
    node = addVolumeFromArray(volume, ijkToRas, "CT")
    fake = Recorder(missing=["monai"], answer=False)
    logic = MORSESegmentationLogic(dependencies=fake.installer())
    count = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(DependencyError):
        logic.process(node, model=str(tinyPack))
    assert slicer.mrmlScene.GetNumberOfNodes() == count
    assert [c[0] for c in fake.calls] == ["confirm"]


def test_importing_the_module_installs_and_imports_nothing_heavy():
    """Loading the module (what Slicer does at startup) must not import torch or install anything."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parents[1] / "MORSESegmentation")!r}]
        import slicerHarness, slicerStandIns
        slicerHarness.makeHeadlessSlicer(); slicerStandIns.install()
        import subprocess
        def refuse(*args, **kwargs):
            raise AssertionError("a process was started at import time: " + repr(args))
        subprocess.Popen = refuse
        import MORSESegmentation
        import MORSESegmentationLib.backgroundRun, MORSESegmentationLib.dependencies, MORSESegmentationLib.logic
        import MORSESegmentationLib.modelCatalog, MORSESegmentationLib.outputNodes, MORSESegmentationLib.parameters
        import MORSESegmentationLib.sampleData, MORSESegmentationLib.volumeArrays, MORSESegmentationLib.widget
        heavy = sorted(m for m in ("torch", "monai", "safetensors") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout


def test_no_input_is_reported_before_anything_is_installed():
    """The 'no input' self-test: the input is checked first, so nothing is offered for installation."""
    fake = Recorder(missing=["monai"], answer=True)
    logic = MORSESegmentationLogic(dependencies=fake.installer())
    with pytest.raises(InputError, match="No input volume"):
        logic.process(None)
    with pytest.raises(InputError, match="No input volume"):
        logic.startRun(RunOptions())
    assert fake.calls == []
